/**
 * Azurite (blob and queue) as a child process started from the project's own dependencies.
 *
 * A child process rather than in-process servers: `require('azurite')` pulls in its VS Code
 * extension, and the deep requires of its server classes are not a public API. The CLI reports
 * the ports it bound, so port 0 works without guessing a free port.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { waitForPort } from '../net';
import { stopChildProcess } from './childProcess';

export interface AzuriteOptions {
  host?: string;
  /** 0 picks a free port. */
  blobPort?: number;
  /** 0 picks a free port. */
  queuePort?: number;
  /** `{ inMemory: true }` (default), or a folder that keeps the data across restarts. */
  persistence?: { inMemory: true } | { location: string };
  /** Start-up limit; default 30 s. */
  timeoutMs?: number;
  /**
   * Most selective indexed property first in Azurite's metadata queries (azuriteQueryOrder.ts):
   * default true. Without it every blob operation scans every blob the emulator holds.
   */
  queryOrder?: boolean;
  /**
   * How often Azurite reclaims the space of deleted and overwritten blobs (azuriteGcInterval.ts);
   * default Azurite's own, ten minutes. Each reclaim holds every blob request for a time that
   * grows with what was deleted: a stack whose data lives for one run sets this past the run.
   */
  spaceReclaimIntervalMs?: number;
  /** Azurite's own debug log (`--debug`): every request and its internal steps, space reclaim included. */
  debugLog?: string;
  /**
   * Serves HTTPS with this certificate and key (PEM files), and with `oauth` accepts bearer
   * tokens too: Azurite checks their form, lifetime, issuer and audience (`--oauth basic`), not
   * a signature. For tests of the managed-identity path.
   */
  tls?: { cert: string; key: string; oauth?: boolean };
}

export interface AzuriteHandle {
  host: string;
  blobPort: number;
  queuePort: number;
  /** The Azurite child process. */
  pid?: number;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
}

const READY = /Azurite (Blob|Queue) service (?:is successfully listening at|successfully listens on) https?:\/\/[^\s]*:(\d+)/;

/** From TypeScript sources (ts-jest), a child process needs the compiled script. */
function compiled(script: string): string {
  return script.endsWith('.ts') ? script.replace(`${path.sep}local${path.sep}`, `${path.sep}dist${path.sep}local${path.sep}`).replace(/\.ts$/, '.js') : script;
}

function azuriteCli(): string {
  const pkg = require.resolve('azurite/package.json');
  const cli = path.join(path.dirname(pkg), 'dist', 'src', 'azurite.js');
  if (!fs.existsSync(cli)) throw new Error(`Azurite CLI not found at ${cli}: run npm install`);
  return cli;
}

/**
 * Starts Azurite and resolves once both ports answer.
 * Throws with Azurite's own output when it exits or does not become ready in time.
 */
export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteHandle> {
  const host = options.host ?? '127.0.0.1';
  const persistence = options.persistence ?? { inMemory: true };
  const queryOrder = options.queryOrder !== false;
  const args = [
    ...(queryOrder ? ['--require', compiled(path.join(__dirname, `azuriteQueryOrder${path.extname(__filename)}`))] : []),
    ...(options.spaceReclaimIntervalMs !== undefined ? ['--require', compiled(path.join(__dirname, `azuriteGcInterval${path.extname(__filename)}`))] : []),
    azuriteCli(),
    '--blobHost', host, '--blobPort', String(options.blobPort ?? 10000),
    '--queueHost', host, '--queuePort', String(options.queuePort ?? 10001),
    // The table service cannot be left out of this CLI; an ephemeral port keeps it out of the way.
    '--tableHost', host, '--tablePort', '0',
    // Newer SDKs send API versions Azurite does not know; without this every call is a 400.
    '--skipApiVersionCheck',
    // Without it Azurite probes the cloud metadata address and ignores SIGTERM.
    '--disableTelemetry',
    '--loose',
    '--silent',
  ];
  if (options.debugLog !== undefined) args.push('--debug', options.debugLog);
  if (options.tls) args.push('--cert', options.tls.cert, '--key', options.tls.key, ...(options.tls.oauth ? ['--oauth', 'basic'] : []));
  if ('location' in persistence) {
    fs.mkdirSync(persistence.location, { recursive: true });
    args.push('--location', persistence.location);
  } else {
    args.push('--inMemoryPersistence');
  }

  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: 'location' in persistence ? persistence.location : undefined,
    env: {
      ...process.env,
      AZURITE_ACCOUNTS: undefined,
      VNA_AZURITE_QUERY_ORDER: queryOrder ? '1' : undefined,
      VNA_AZURITE_GC_INTERVAL_MS: options.spaceReclaimIntervalMs !== undefined ? String(Math.max(1, Math.round(options.spaceReclaimIntervalMs))) : undefined,
    },
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let output = '';
  const ports: { Blob?: number; Queue?: number } = {};
  const timeoutMs = options.timeoutMs ?? 30000;

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not report ready within ${timeoutMs} ms`)), timeoutMs);
      const onData = (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-8000);
        for (const line of output.split('\n')) {
          const m = READY.exec(line);
          if (m) ports[m[1] as 'Blob' | 'Queue'] = Number(m[2]);
        }
        if (ports.Blob && ports.Queue) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-8000);
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`exited early (code ${code}, signal ${signal})`));
      });
    });
    await waitForPort(ports.Blob as number, host);
    await waitForPort(ports.Queue as number, host);
  } catch (err) {
    child.kill('SIGKILL');
    process.off('exit', killOnExit);
    throw new Error(
      `Azurite could not start on ${host} (blob port ${options.blobPort ?? 10000}, queue port ${options.queuePort ?? 10001}): ` +
        `${(err as Error).message}\n--- Azurite output ---\n${output.trim()}`,
    );
  }
  // Keep reading so a full pipe never blocks the child.
  child.stdout?.resume();
  child.stderr?.resume();

  let stopping: Promise<void> | undefined;
  return {
    host,
    blobPort: ports.Blob as number,
    queuePort: ports.Queue as number,
    ...(child.pid !== undefined ? { pid: child.pid } : {}),
    stop() {
      stopping ??= stopChildProcess(child).finally(() => process.off('exit', killOnExit));
      return stopping;
    },
  };
}
