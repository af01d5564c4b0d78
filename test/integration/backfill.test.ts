/**
 * The backfill on the real local services: an archive already in the landing container (put
 * there with no stack running, so no event announces it), a backfill killed half way and run
 * again, under a pseudo-terminal (`script` from Debian's bsdutils), then a third run. Every file
 * must be cataloged once: none missed, none ingested twice.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CosmosClient } from '@azure/cosmos';

import type { BackfillCheckpoint } from '../../shared/backfill/backfill';

const projectRoot = path.resolve(__dirname, '..', '..');
const FILES = 240;

let dir: string;
let env: Record<string, string>;
const checkpointFile = () => path.join(dir, 'backfill.json');
const telemetryFile = () => info.telemetryFile;

/**
 * Runs a command without blocking this process: the stack's event source and function host run
 * in it, so a spawnSync would stop them from answering the child.
 */
function runAsync(command: string, args: string[], runEnv: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
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

function readCheckpoint(): BackfillCheckpoint | undefined {
  try {
    return JSON.parse(fs.readFileSync(checkpointFile(), 'utf8')) as BackfillCheckpoint;
  } catch {
    return undefined;
  }
}

const backfillArgs = ['--rate', '0', '--batch-size', '2', '--concurrency', '8', '--page-size', '50', '--checkpoint'];

let stackProcess: ChildProcess;
let info: { env: Record<string, string>; hostUrl: string; telemetryFile: string; problems: string; cosmosDatabase: string; indexContainer: string; cosmosEndpoint: string };

beforeAll(async () => {
  expect(spawnSync('script', ['--version']).status).toBe(0);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-backfill-'));
  // The stack runs in its own process: one in this worker would share its environment with the shared test stack's.
  stackProcess = spawn(process.execPath, [path.join(projectRoot, 'dist', 'tools', 'backfillStack.js'), dir, String(FILES)], { stdio: ['pipe', 'pipe', 'inherit'] });
  info = await new Promise((resolve, reject) => {
    let out = '';
    stackProcess.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(JSON.parse(line) as typeof info);
    });
    stackProcess.on('exit', (code) => reject(new Error(`the backfill stack exited (${code}) before it was ready`)));
  });
  // Only this stack's settings.
  env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    ...info.env,
    ANQ_EVENTS_TOPIC_ENDPOINT: `${info.hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`,
    ANQ_EVENTS_TOPIC_KEY: 'local-topic-key',
    TELEMETRY_CAPTURE_FILE: path.join(dir, 'backfill-telemetry.jsonl'),
  };
}, 300_000);

afterAll(async () => {
  if (stackProcess && stackProcess.exitCode === null) {
    const exited = new Promise((r) => stackProcess.on('exit', r));
    stackProcess.kill('SIGTERM');
    await exited;
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function indexDocuments(): Promise<{ status: string; eventIds: string[] }[]> {
  const client = new CosmosClient({ endpoint: info.cosmosEndpoint, key: info.env.CosmosDb?.match(/AccountKey=([^;]+)/)?.[1] ?? '', connectionPolicy: { enableEndpointDiscovery: false } });
  const { resources } = await client.database(info.cosmosDatabase).container(info.indexContainer).items.query<{ status: string; eventIds: string[] }>('SELECT c.status, c.eventIds FROM c').fetchAll();
  return resources;
}

function ingestionTelemetry(): { status: string }[] {
  if (!fs.existsSync(telemetryFile())) return [];
  return fs.readFileSync(telemetryFile(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { kind: string; status: string }).filter((r) => r.kind === 'ingestion');
}

test('given an archive no event announced, when a backfill is killed half way and run again, then every file is cataloged once, none missed', async () => {
  // Nothing is ingested before the backfill: the files came with no event.
  expect(await indexDocuments()).toHaveLength(0);

  const first = spawn(process.execPath, [path.join(projectRoot, 'dist', 'tools', 'backfill.js'), ...backfillArgs, checkpointFile()], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let firstErr = '';
  first.stderr.on('data', (d: Buffer) => { firstErr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
  // Kill it (no chance to clean up) once a quarter of the archive is checkpointed.
  for (;;) {
    const cp = readCheckpoint();
    if (cp && cp.counts.emitted >= FILES / 4) break;
    if (first.exitCode !== null) throw new Error(`the first backfill ended before it was killed: ${firstErr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  first.kill('SIGKILL');
  expect(await exited).toBeNull();
  const killedAt = readCheckpoint() as BackfillCheckpoint;
  expect(killedAt.done).toBe(false);
  expect(killedAt.counts.emitted).toBeLessThan(FILES);

  // The second run, under a pseudo-terminal: the progress bar is drawn in place.
  const command = [process.execPath, path.join(projectRoot, 'dist', 'tools', 'backfill.js'), ...backfillArgs, checkpointFile()].map((a) => `'${a}'`).join(' ');
  const second = await runAsync('script', ['-q', '-e', '-c', command, '/dev/null'], { ...env, COLUMNS: '160' }, 600_000);
  expect({ status: second.status, out: second.status === 0 ? '' : second.stdout }).toEqual({ status: 0, out: '' });
  const frames = second.stdout.split('\r\x1b[2K').map((f) => f.trim()).filter(Boolean);
  expect(frames.length).toBeGreaterThan(2);
  expect(frames.some((f) => /^\[[#.]+\] +\d+\.\d% [\d,]+\/240 files +[\d,]+\/s +ETA \d+:\d\d/.test(f))).toBe(true);
  expect(frames.find((f) => f.includes('100.0%'))).toMatch(/240\/240 files/);
  expect(second.stdout).toMatch(/backfill: done: \d+ emitted, \d+ already cataloged, 240 listed/);

  const cp = readCheckpoint() as BackfillCheckpoint;
  expect(cp.done).toBe(true);
  expect(cp.counts.emitted + cp.counts.skipped).toBe(FILES);

  const docs = await indexDocuments();
  if (docs.length !== FILES) throw new Error(`${docs.length} index documents; ingestion outcomes ${JSON.stringify(ingestionTelemetry().reduce<Record<string, number>>((a, o) => ({ ...a, [o.status]: (a[o.status] ?? 0) + 1 }), {}))}; host problems:\n${fs.existsSync(info.problems) ? fs.readFileSync(info.problems, 'utf8').slice(0, 2000) : ''}`);
  expect(docs.filter((d) => d.status !== 'cataloged')).toEqual([]);
  // Ingested once: one cataloged outcome per file, whatever was in flight at the kill.
  const outcomes = ingestionTelemetry();
  expect(outcomes.filter((o) => o.status === 'cataloged')).toHaveLength(FILES);
  // The backfill's own telemetry: counts only.
  const metrics = fs.readFileSync(path.join(dir, 'backfill-telemetry.jsonl'), 'utf8');
  expect(metrics).toMatch(/"name":"BackfillDone"/);
  expect(metrics).not.toMatch(/backfill\/study|\.dcm/);
}, 600_000);

test('given a finished backfill, when it is started over with a new checkpoint, then every version is skipped as already cataloged', async () => {
  const run = await runAsync(process.execPath, [path.join(projectRoot, 'dist', 'tools', 'backfill.js'), ...backfillArgs, path.join(dir, 'again.json')], env, 300_000);
  expect(run.status).toBe(0);
  expect(run.stderr).toMatch(/backfill: done: 0 emitted, 240 already cataloged, 240 listed/);
});
