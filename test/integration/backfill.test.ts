/**
 * The backfill on the real local services: an archive already in the landing container (put
 * there with no stack running, so no event announces it), a backfill killed half way and run
 * again, under a pseudo-terminal (`script` from Debian's bsdutils), then a third run. Every file
 * must be cataloged once: none missed, none ingested twice.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import type { BackfillCheckpoint } from '../../shared/backfill/backfill';
import { BackfillStack, BackfillStackInfo, runAsync, startBackfillStack } from './backfillStackProcess';

const projectRoot = path.resolve(__dirname, '..', '..');
const FILES = 240;

let dir: string;
let env: Record<string, string>;
const checkpointFile = () => path.join(dir, 'backfill.json');
const telemetryFile = () => info.telemetryFile;

function readCheckpoint(): BackfillCheckpoint | undefined {
  try {
    return JSON.parse(fs.readFileSync(checkpointFile(), 'utf8')) as BackfillCheckpoint;
  } catch {
    return undefined;
  }
}

const backfillArgs = ['--rate', '0', '--batch-size', '2', '--concurrency', '8', '--page-size', '50', '--checkpoint'];

let stack: BackfillStack;
let info: BackfillStackInfo;

beforeAll(async () => {
  expect(spawnSync('script', ['--version']).status).toBe(0);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-backfill-'));
  // The stack runs in its own process: one in this worker would share its environment with the shared test stack's.
  stack = await startBackfillStack(dir, FILES);
  info = stack.info;
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
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function indexDocuments(): Promise<{ status: string; eventIds: string[] }[]> {
  const { resources } = await stack.cosmos().database(info.cosmosDatabase).container(info.indexContainer).items.query<{ status: string; eventIds: string[] }>('SELECT c.status, c.eventIds FROM c').fetchAll();
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
  // Cataloged once: one record each (above). An event the killed run had in flight is emitted
  // again on resume; when its first ingestion is still running, both finish as 'cataloged', on the
  // same record, copy and event id. At most the events in flight at the kill (8 batches of 2).
  const outcomes = ingestionTelemetry();
  const cataloged = outcomes.filter((o) => o.status === 'cataloged').length;
  expect(cataloged).toBeGreaterThanOrEqual(FILES);
  expect(cataloged).toBeLessThanOrEqual(FILES + 16);
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
