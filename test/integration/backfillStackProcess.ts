/**
 * The stack of the backfill tests (backfill, re-index, backfill function) in a process of its
 * own (tools/backfillStack.ts): seeded with `files` generated files that no event announced,
 * then serving. The child gets the system's environment only: the worker's holds the shared
 * test stack's settings (sources, ANQ, timers), which would start sources and timers of their
 * own in the child.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

import { CosmosClient } from '@azure/cosmos';

export interface BackfillStackInfo {
  /** The functions' settings (connection strings and names). */
  env: Record<string, string>;
  hostUrl: string;
  telemetryFile: string;
  problems: string;
  cosmosDatabase: string;
  indexContainer: string;
  cosmosEndpoint: string;
  /** With `function`: a development token with Operations.Manage and Operations.Read. */
  operatorToken?: string;
}

export interface BackfillStack {
  info: BackfillStackInfo;
  process: ChildProcess;
  /** Every line the child has printed on stdout so far (the first is the JSON of `info`). */
  lines: string[];
  /** Waits for a line matching `pattern`, failing after `timeoutMs` or if the child exits. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** A Cosmos DB client on the child's catalog. */
  cosmos(): CosmosClient;
  /** SIGTERM, and waits for the child to exit. */
  stop(): Promise<void>;
}

const projectRoot = path.resolve(__dirname, '..', '..');

export function systemEnv(): Record<string, string> {
  return Object.fromEntries(['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL'].flatMap((k) => (process.env[k] !== undefined ? [[k, process.env[k] as string]] : [])));
}

export async function startBackfillStack(dir: string, files: number, mode?: 'function'): Promise<BackfillStack> {
  const child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'tools', 'backfillStack.js'), dir, String(files), ...(mode ? [mode] : [])], { env: systemEnv(), stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter(Boolean));
  });
  const waitForLine = (pattern: RegExp, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const until = Date.now() + timeoutMs;
      const poll = () => {
        const line = lines.find((l) => pattern.test(l));
        if (line) resolve(line);
        else if (Date.now() > until || child.exitCode !== null) reject(new Error(`no line ${pattern} from the stack within ${timeoutMs} ms (exit ${child.exitCode})`));
        else setTimeout(poll, 50);
      };
      poll();
    });
  const info = JSON.parse(await waitForLine(/^\{/, 300_000)) as BackfillStackInfo;
  return {
    info,
    process: child,
    lines,
    waitForLine,
    cosmos: () => new CosmosClient({ endpoint: info.cosmosEndpoint, key: info.env.CosmosDb?.match(/AccountKey=([^;]+)/)?.[1] ?? '', connectionPolicy: { enableEndpointDiscovery: false } }),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Runs a command without blocking this process (a spawnSync would stop the stack's event source
 * and host in it from answering the child), killing it after `timeoutMs`.
 */
export function runAsync(command: string, args: string[], runEnv: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${command} did not end within ${timeoutMs} ms: ${stdout}${stderr}`)); }, timeoutMs);
    child.on('exit', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}
