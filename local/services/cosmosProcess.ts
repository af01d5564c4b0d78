/**
 * Runs the Cosmos DB emulator-compatible server in a process of its own, so that its query
 * engine (a JavaScript interpreter that scans documents) does not share a core with the
 * function host. Prints one JSON line with the port once it listens; exits on SIGTERM.
 * Usage: node cosmosProcess.js <host> <port> [linear-scans]
 */
import { startCosmosServerInProcess } from './cosmos';

async function main(): Promise<void> {
  const host = process.argv[2] ?? '127.0.0.1';
  const port = Number(process.argv[3] ?? 8081);
  const server = await startCosmosServerInProcess({ host, port, linearScans: process.argv[4] === 'linear-scans' });
  process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
  const stop = () => void server.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent going away (crash, kill -9) must not leave the server running.
  process.on('disconnect', stop);
}

main().catch((e: Error) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
