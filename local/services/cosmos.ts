/**
 * A Cosmos DB emulator-compatible server (@vercel/cosmosdb-server), in-process, over plain HTTP.
 *
 * HTTP because the package's bundled TLS certificate expired in 2021. The server advertises
 * https locations in its account document, so clients must turn endpoint discovery off:
 * `connectionPolicy: { enableEndpointDiscovery: false }`. Data lives in memory only.
 */
import { spawn } from 'child_process';
import type * as http from 'http';
import * as path from 'path';

import { cosmosEmulatorConnectionString } from '../emulators';
import { closeServer, listen } from '../net';
import { stopChildProcess } from './childProcess';
import { applyLinearScanFix } from './cosmosLinearScan';

export interface CosmosServerOptions {
  host?: string;
  /** 0 picks a free port; default 8081 (the emulator's). */
  port?: number;
  /**
   * Compile scans in O(n) per page instead of the package's O(n²) (local/services/cosmosLinearScan.ts).
   * Default true: the stack's catalog grows to thousands of documents in the tests and in `npm start`;
   * false gives the package's own behaviour.
   */
  linearScans?: boolean;
}

export interface CosmosServerHandle {
  port: number;
  /** `http://<host>:<port>/` */
  endpoint: string;
  /** Connection string with the emulator's well-known key. */
  connectionString: string;
  /** The server's child process; absent when it runs in this process. */
  pid?: number;
  /** Closes the server and its connections. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the server in a child process (the default: it then has a core of its own), or in
 * this process with `inProcess`. Throws with the port in the message when it is in use.
 */
export async function startCosmosServer(options: CosmosServerOptions & { inProcess?: boolean } = {}): Promise<CosmosServerHandle> {
  if (options.inProcess) return startCosmosServerInProcess(options);
  const host = options.host ?? '127.0.0.1';
  const script = path.join(__dirname, `cosmosProcess${path.extname(__filename)}`);
  // From TypeScript sources (ts-jest) the child needs the compiled script.
  const runnable = script.endsWith('.ts') ? script.replace(`${path.sep}local${path.sep}`, `${path.sep}dist${path.sep}local${path.sep}`).replace(/\.ts$/, '.js') : script;
  const child = spawn(process.execPath, [runnable, host, String(options.port ?? 8081), ...(options.linearScans !== false ? ['linear-scans'] : [])], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch {
          reject(new Error(`Cosmos DB emulator server printed an unexpected line: ${line}`));
        }
      }
    });
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code, signal) => reject(new Error(`Cosmos DB emulator server exited (${signal ?? code}) before listening: ${err.trim()}`)));
    child.once('error', reject);
  });
  // A child ended by a signal (SIGKILL, SIGSEGV) has no exit code and emits no more 'exit':
  // waiting for one would hang stop forever.
  return { ...handle(host, port, () => stopChildProcess(child)), ...(child.pid !== undefined ? { pid: child.pid } : {}) };
}

/** The handle of a server on host:port; `stop` runs once, however often it is called. */
function handle(host: string, port: number, stop: () => Promise<void>): CosmosServerHandle {
  let stopping: Promise<void> | undefined;
  return {
    port,
    endpoint: `http://${host}:${port}/`,
    connectionString: cosmosEmulatorConnectionString(port, host),
    stop() {
      stopping ??= stop();
      return stopping;
    },
  };
}

/** The server in this process. */
export async function startCosmosServerInProcess(options: CosmosServerOptions = {}): Promise<CosmosServerHandle> {
  const host = options.host ?? '127.0.0.1';
  if (options.linearScans !== false) applyLinearScanFix();
  // Loaded lazily: only the stack needs it, and it costs a few hundred ms.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHttpServer } = require('@vercel/cosmosdb-server') as { createHttpServer(opts?: http.ServerOptions & { keepAlive?: boolean }): http.Server };
  // Kept-alive connections, as Cosmos DB serves them: without this the server answers every
  // request with `Connection: close`, and each SDK request pays a new TCP connection on both ends.
  const server = createHttpServer({ keepAlive: true });
  // Longer than any client's idle socket, so that the server never closes a socket the client is
  // about to reuse (the SDK's agent keeps sockets without an idle limit).
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  const port = await listen(server, options.port ?? 8081, host, 'Cosmos DB emulator server');
  return handle(host, port, () => closeServer(server));
}
