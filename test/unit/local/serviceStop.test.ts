/**
 * Stopping a local service whose child process is already gone, or will not go: stop must
 * resolve promptly in every case, or `npm start`'s Ctrl+C and the test run's teardown hang.
 * The Cosmos DB server child runs the compiled script (dist/local/services/cosmosProcess.js):
 * run `npm run build` first (npm test does).
 */
import { spawn } from 'child_process';

import { startAzurite } from '../../../local/services/azurite';
import { stopChildProcess } from '../../../local/services/childProcess';
import { startCosmosServer } from '../../../local/services/cosmos';

const STOP_BOUND_MS = 3000;

/** How long `promise` took to settle, or Infinity when it did not settle within `boundMs`. */
async function settleTime(promise: Promise<unknown>, boundMs: number): Promise<number> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), boundMs);
  });
  const outcome = await Promise.race([promise.then(() => 'done' as const), timedOut]);
  clearTimeout(timer);
  return outcome === 'timeout' ? Infinity : Date.now() - started;
}

/** Resolves once the process with this pid no longer exists (signal 0 fails). */
async function gone(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('stopping a local service whose child died from a signal', () => {
  test.each(['SIGKILL', 'SIGSEGV'] as const)('given the Cosmos DB server child killed by %s, then stop resolves within 3 s', async (signal) => {
    const cosmos = await startCosmosServer({ port: 0 });
    const pid = cosmos.pid as number;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, signal);
    await gone(pid);
    expect(await settleTime(cosmos.stop(), STOP_BOUND_MS)).toBeLessThan(STOP_BOUND_MS);
  });

  test('given the Azurite child killed by SIGKILL, then stop resolves within 3 s', async () => {
    const azurite = await startAzurite({ blobPort: 0, queuePort: 0 });
    const pid = azurite.pid as number;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    await gone(pid);
    expect(await settleTime(azurite.stop(), STOP_BOUND_MS)).toBeLessThan(STOP_BOUND_MS);
  });
});

describe('stopChildProcess', () => {
  const node = (script: string) => spawn(process.execPath, ['-e', script], { stdio: 'ignore' });

  test('given a child that ignores SIGTERM, then it is killed after the grace period and stop resolves', async () => {
    const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); console.log('ready')"], { stdio: ['ignore', 'pipe', 'ignore'] });
    // Only once its SIGTERM handler is installed does the child ignore SIGTERM.
    await new Promise((r) => child.stdout?.once('data', r));
    expect(await settleTime(stopChildProcess(child, { graceMs: 200 }), STOP_BOUND_MS)).toBeLessThan(STOP_BOUND_MS);
    expect(child.signalCode).toBe('SIGKILL');
  });

  test('given a child that already exited by itself, then stop resolves at once', async () => {
    const child = node('process.exit(3)');
    await new Promise((r) => child.once('exit', r));
    expect(await settleTime(stopChildProcess(child), 500)).toBeLessThan(500);
  });

  test('given a running child, then SIGTERM stops it and stop resolves once it exited', async () => {
    const child = node('setInterval(() => {}, 1000)');
    await stopChildProcess(child);
    expect(child.signalCode).toBe('SIGTERM');
  });
});
