/**
 * Small network helpers shared by the local services: free ports, waiting for a listener,
 * closing servers without waiting for idle keep-alive clients.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';

/** Listens on `port` (0: any) and closes again: the port it got, or undefined when it could not listen. */
function probePort(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen(port, host, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/** Asks the OS for a port that is free right now (used where a child process cannot report its own). */
export async function findFreePort(host = '127.0.0.1'): Promise<number> {
  const port = await probePort(0, host);
  if (port === undefined) throw new Error(`cannot listen on ${host}`);
  return port;
}

/** Where the kernel takes ports for outgoing connections and `listen(0)`; undefined where it cannot be read. */
export function ephemeralPortRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): { low: number; high: number } | undefined {
  try {
    const [low = NaN, high = NaN] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) && Number.isInteger(high) && low > 0 && high >= low ? { low, high } : undefined;
  } catch {
    return undefined;
  }
}

/** The lowest port {@link findReusablePort} picks: above the registered services most hosts run. */
const REUSABLE_PORT_FLOOR = 20000;

/**
 * A free port for a listener that must come back on the same port after a restart (a stack
 * whose blob URLs name it). {@link findFreePort}'s ports come from the ephemeral range, where
 * any outgoing connection on the machine may take the port in the meantime; this one is picked
 * at random below that range, where only a listener that asks for it by number can.
 * Where the range cannot be read, or leaves no room below it, it falls back to findFreePort.
 */
export async function findReusablePort(host = '127.0.0.1', range = ephemeralPortRange()): Promise<number> {
  if (!range || range.low - REUSABLE_PORT_FLOOR < 1000) return findFreePort(host);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = REUSABLE_PORT_FLOOR + Math.floor(Math.random() * (range.low - REUSABLE_PORT_FLOOR));
    if ((await probePort(port, host)) === port) return port;
  }
  throw new Error(`no free port below ${range.low} on ${host} after 50 tries`);
}

/** Resolves once a TCP connection to host:port succeeds; rejects after timeoutMs. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing answered on ${host}:${port} within ${timeoutMs} ms`);
    await delay(100);
  }
}

export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Listens and returns the bound port; a busy port fails with a message naming it. */
export async function listen(server: http.Server | net.Server, port: number, host: string, what: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new Error(`${what} cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error(`${what} has no TCP address`);
  return address.port;
}

/**
 * Closes a server and its open connections: `close()` alone waits for keep-alive clients
 * (SDK agents keep sockets open), which would make every stop take seconds.
 */
export async function closeServer(server: http.Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const force = setTimeout(() => server.closeAllConnections(), 2000);
  force.unref();
  await closed;
  clearTimeout(force);
}
