/**
 * `vna-research download` (the package's bin, as a separate process) against the running
 * stack: generated CT studies are ingested, a download of them is killed (SIGKILL) once some
 * files are written and one is being written, then run again with the same arguments under a pseudo-terminal (`script`,
 * Debian's bsdutils, as the backfill test does). It must end with every file byte-equal to its
 * research blob read from Azurite, each once, the files complete at the kill left untouched,
 * and its progress bar drawn. An instance ingested into the cohort's study between the runs is
 * not part of the resumed cohort (the listing is kept) until `--relist`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';

import { ctSliceBytes } from '../../bench/generate';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { CHECKSUMS_FILE, JOURNAL_FILE, STATE_FILE } from '../../tools/cohortState';
import { testStack, waitForEvents } from './stackEnv';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'tools', 'vnaResearch.js');
const RUN = `cohort-${process.pid}-${Date.now() % 1_000_000}`;
const SEED = 800_000 + (Date.now() % 100_000);
const STUDIES = 2;
const PER_STUDY = 20;
/** Files complete when the first run is killed. */
const KILL_AFTER = 6;

interface ResearchCopy {
  study: string;
  series: string;
  instance: string;
  blob: string;
}

let landing: ContainerClient;
let research: ContainerClient;
let out: string;

async function ingest(names: [string, Buffer][]): Promise<void> {
  const queue = [...names];
  await Promise.all(Array.from({ length: 6 }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await landing.getBlockBlobClient(next[0]).uploadData(next[1]);
  }));
  await waitForEvents(300_000);
}

/** The research copies this run's sources produced, from the restricted index. */
async function copies(): Promise<ResearchCopy[]> {
  const settings = loadSettings(testStack().env);
  const index = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.indexContainer);
  const { resources } = await index.items
    .query<IngestionDocument>({ query: "SELECT * FROM c WHERE STARTSWITH(c.blobName, @p) AND c.status = 'cataloged'", parameters: [{ name: '@p', value: `${RUN}/` }] })
    .fetchAll();
  return resources.map((d) => ({ study: d.research!.studyInstanceUid, series: d.research!.seriesInstanceUid, instance: d.research!.sopInstanceUid, blob: d.research!.blob }));
}

const fileOf = (c: ResearchCopy) => path.join(out, c.study, c.series, `${c.instance}.dcm`);

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.relative(dir, path.join(d.parentPath, d.name))).sort();
}

function cliArgs(studies: string[], ...extra: string[]): string[] {
  const stack = testStack();
  return [CLI, 'download', out, ...studies.flatMap((s) => ['--study', s]), '--concurrency', '1', '--api', `${stack.hostUrl}/api`, '--token', stack.tokens.research, ...extra];
}

/** Runs a command without blocking this process (the stack may answer from it). */
function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${command} did not end in time: ${stdout}${stderr}`)); }, 300_000);
    child.on('exit', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

let cohort: ResearchCopy[];
let studies: string[];

beforeAll(async () => {
  const settings = loadSettings(testStack().env);
  const blobs = BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!);
  landing = blobs.getContainerClient(settings.sourceContainers[0]!);
  research = blobs.getContainerClient(settings.researchContainer);
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-cohort-'));
  const names: [string, Buffer][] = [];
  for (let study = 0; study < STUDIES; study++) {
    for (let instance = 1; instance <= PER_STUDY; instance++) names.push([`${RUN}/s${study}/${instance}.dcm`, ctSliceBytes({ seed: SEED, study, instance })]);
  }
  await ingest(names);
  cohort = await copies();
  expect(cohort).toHaveLength(STUDIES * PER_STUDY);
  studies = [...new Set(cohort.map((c) => c.study))];
  expect(studies).toHaveLength(STUDIES);
}, 600_000);

afterAll(() => {
  if (out) fs.rmSync(out, { recursive: true, force: true });
});

test('given a download killed mid-way and run again, then every file is byte-equal to its research blob, once; the listing is kept until --relist', async () => {
  // 1. Killed (no chance to clean up) once KILL_AFTER files have their final names.
  const first: ChildProcess = spawn(process.execPath, cliArgs(studies), { stdio: ['ignore', 'ignore', 'pipe'] });
  let firstErr = '';
  first.stderr?.on('data', (d: Buffer) => { firstErr += d.toString(); });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => first.on('exit', (_code, signal) => resolve(signal)));
  const complete = () => (fs.existsSync(out) ? filesUnder(out).filter((f) => f.endsWith('.dcm')) : []);
  const partial = () => (fs.existsSync(out) ? filesUnder(out).some((f) => f.endsWith('.part')) : false);
  // Killed while a file is being written, so that the resume meets a partial file too.
  for (;;) {
    if (complete().length >= KILL_AFTER && partial()) break;
    if (first.exitCode !== null) throw new Error(`the first download ended (${first.exitCode}) before it was killed: ${firstErr}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  first.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  const atKill = complete();
  let partsAtKill = filesUnder(out).filter((f) => f.endsWith('.part')).length;
  // The kill can land between two files (a .part just renamed, the next not yet opened; seen in
  // CI). The resume must then still meet a partial file: the one a kill mid-write leaves is made
  // here, for the next instance not yet complete.
  if (partsAtKill === 0) {
    const next = cohort.find((c) => !fs.existsSync(fileOf(c)));
    if (!next) throw new Error('every file was complete at the kill');
    fs.mkdirSync(path.dirname(fileOf(next)), { recursive: true });
    fs.writeFileSync(`${fileOf(next)}.part`, Buffer.alloc(1000, 0x41));
    partsAtKill = 1;
  }
  expect(atKill.length).toBeGreaterThanOrEqual(KILL_AFTER);
  expect(atKill.length).toBeLessThan(cohort.length);
  expect(partsAtKill).toBe(1);
  expect(fs.existsSync(path.join(out, STATE_FILE))).toBe(true);
  const untouched = new Map(atKill.map((f) => [f, fs.statSync(path.join(out, f), { bigint: true })]));

  // 2. An instance joins the cohort's first study in the catalog between the runs.
  await ingest([[`${RUN}/s0/${PER_STUDY + 1}.dcm`, ctSliceBytes({ seed: SEED, study: 0, instance: PER_STUDY + 1 })]]);
  const added = (await copies()).find((c) => !cohort.some((k) => k.instance === c.instance));
  expect(added).toBeDefined();
  expect(studies).toContain(added!.study);

  // 3. The same command again, under a pseudo-terminal: the bar is drawn in place.
  const command = [process.execPath, ...cliArgs(studies)].map((a) => `'${a}'`).join(' ');
  const second = await run('script', ['-q', '-e', '-c', command, '/dev/null'], { ...process.env, COLUMNS: '160' });
  expect({ status: second.status, out: second.status === 0 ? '' : second.stdout + second.stderr }).toEqual({ status: 0, out: '' });
  const frames = second.stdout.split('\r\x1b[2K').map((f) => f.trim()).filter(Boolean);
  expect(frames.some((f) => /^\[[#.]+\] +\d+\.\d% [\d,]+\/40 files +[\d.]+ [kMG]?B +[\d.]+ [kMG]?B\/s +ETA/.test(f))).toBe(true);
  expect(frames.find((f) => f.includes('100.0%'))).toMatch(/40\/40 files .* done/);
  console.log(`cohort download: killed with ${atKill.length} of ${cohort.length} files complete and ${partsAtKill} .part; resumed: ${/download: .*/.exec(second.stdout)?.[0] ?? ''}`);
  expect(second.stdout).toContain(`download: ${cohort.length - atKill.length} fetched, ${atKill.length} already here, of ${cohort.length} instances`);

  // Every file of the first listing, byte-equal to its research blob; nothing else, nothing twice.
  for (const c of cohort) expect((await research.getBlobClient(c.blob).downloadToBuffer()).equals(fs.readFileSync(fileOf(c)))).toBe(true);
  const expected = [...cohort.map((c) => path.relative(out, fileOf(c))), STATE_FILE, JOURNAL_FILE, CHECKSUMS_FILE].sort();
  expect(filesUnder(out)).toEqual(expected);
  expect(fs.readFileSync(path.join(out, CHECKSUMS_FILE), 'utf8').trim().split('\n')).toHaveLength(cohort.length);
  // The files complete at the kill were not fetched again.
  for (const [f, before] of untouched) {
    const after = fs.statSync(path.join(out, f), { bigint: true });
    expect([after.ino, after.mtimeNs]).toEqual([before.ino, before.mtimeNs]);
  }

  // 4. --relist takes the catalog's listing: the added instance is fetched; progress as plain lines (no TTY).
  const third = await run(process.execPath, cliArgs(studies, '--relist'));
  expect({ status: third.status, err: third.status === 0 ? '' : third.stderr }).toEqual({ status: 0, err: '' });
  expect(third.stderr).toContain('relisted: 1 instance(s) added to the cohort, 0 removed');
  expect(third.stderr).not.toContain('\r');
  expect(third.stderr).toMatch(/^\[#+\] 100\.0% 41\/41 files .* done {2}\(fetched 1, already here 40\)$/m);
  expect(third.stdout).toContain('download: 1 fetched, 40 already here, of 41 instances');
  expect((await research.getBlobClient(added!.blob).downloadToBuffer()).equals(fs.readFileSync(fileOf(added!)))).toBe(true);
}, 600_000);
