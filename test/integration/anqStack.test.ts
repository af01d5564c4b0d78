/**
 * The local stack with the ANQ path on, as `npm start` runs it: files placed in the replication
 * target and snapshotted are found by the snapshot watcher (a timer the local host fires),
 * published to the host's Event Grid webhook, read through the S3 stand-in and cataloged; the
 * operations view answers for their anq:// URLs; a file deleted in a later snapshot is marked
 * deleted. A stack of its own, started as `npm start` starts it (the shared test stack runs
 * the ANQ path too, with a prefix, for pipeline.test.ts).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { placeAndSnapshot } from '../../local/anqIngest';
import { TEST_DEID_KEY } from './globalSetup';

const projectRoot = path.resolve(__dirname, '..', '..');
const SAMPLE = path.join(projectRoot, 'test', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');

/** What the stack's process reports once it serves. */
interface StackInfo {
  hostUrl: string;
  topic: string;
  baselineTaken: boolean;
  targetDir: string;
  restEndpoint: string;
  restToken: string;
  operationsToken: string;
}

/**
 * The stack runs in a process of its own (built from dist/local), as npm start runs it: the
 * host loads the functions into its process, and their runtime reads that process's settings
 * once, so a second stack in the test's process would reuse the shared test stack's.
 */
const child = (options: object) => `
const { startStack } = require(${JSON.stringify(path.join(projectRoot, 'dist', 'local', 'stack.js'))});
const fs = require('fs');
startStack(${JSON.stringify(options)}).then((stack) => {
  process.stdout.write(JSON.stringify({
    hostUrl: stack.hostUrl, topic: stack.env.ANQ_EVENTS_TOPIC_ENDPOINT, baselineTaken: stack.anq.baselineTaken, targetDir: stack.anq.targetDir,
    restEndpoint: stack.anq.standIn.restEndpoint, restToken: stack.anq.restToken, operationsToken: stack.devIssuer.tokens.operations,
  }) + '\\n');
  process.stdin.on('end', () => stack.stop().then(() => process.exit(0)));
  process.stdin.resume();
}, (err) => { console.error(err.message); process.exit(1); });
`;

let dir: string;
let proc: ChildProcess;
let stack: StackInfo;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'anq-stack-'));
  const options = {
    projectRoot,
    ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 },
    persistence: { inMemory: true },
    localSettings: false,
    dataDir: dir,
    deidKey: TEST_DEID_KEY,
    deidKeyId: 'test',
    anq: { targetDir: path.join(dir, 'anq'), stateDir: path.join(dir, 'anq-state'), prefix: 'dicom/', watchSchedule: '*/1 * * * * *' },
  };
  const log = fs.openSync(path.join(dir, 'stack.log'), 'a');
  proc = spawn(process.execPath, ['-e', child(options)], { cwd: projectRoot, env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', log] });
  stack = await new Promise<StackInfo>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const line = out.split('\n').find((l) => l.startsWith('{"hostUrl"'));
      if (line) resolve(JSON.parse(line) as StackInfo);
    });
    proc.on('exit', (code) => reject(new Error(`the ANQ stack's process exited (${code}): ${fs.readFileSync(path.join(dir, 'stack.log'), 'utf8').slice(-2000)}`)));
  });
}, 120_000);

afterAll(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.stdin?.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 15_000)))]);
    clearTimeout(timer);
    if (proc.exitCode === null) proc.kill();
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function ingestionOf(url: string): Promise<{ status: number; body: { status?: string; source?: string } }> {
  const res = await fetch(`${stack.hostUrl}/api/ingestions?source=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${stack.operationsToken}` } });
  return { status: res.status, body: (await res.json()) as { status?: string; source?: string } };
}

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not reached in ${timeoutMs} ms (the stack's log: ${fs.readFileSync(path.join(dir, 'stack.log'), 'utf8').split('\n').filter((l) => /error|warn/i.test(l)).slice(-5).join(' | ')})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('given a file placed in the replication target and snapshotted, then it is cataloged through the ANQ path, and marked deleted once a later snapshot lacks it', async () => {
  expect(stack.baselineTaken).toBe(true);
  expect(stack.topic).toBe(`${stack.hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`);
  const folder = path.join(dir, 'incoming');
  fs.mkdirSync(path.join(folder, 'site a'), { recursive: true });
  fs.copyFileSync(SAMPLE, path.join(folder, 'site a', 'mr.dcm'));
  const placed = await placeAndSnapshot({ folder, targetDir: path.join(stack.targetDir, 'dicom'), prefix: '', restEndpoint: stack.restEndpoint, restToken: stack.restToken });
  expect(placed.files).toBe(1);

  const url = 'anq://anq-local/replica/dicom/site%20a/mr.dcm';
  const cataloged = await until(async () => {
    const r = await ingestionOf(url);
    return r.status === 200 && r.body.status === 'cataloged' ? r : undefined;
  });
  expect(cataloged.body.source).toBe(url);
  // Outside the prefix: refused by the operations view, as the ingestion refuses its events.
  expect((await ingestionOf('anq://anq-local/replica/elsewhere/mr.dcm')).status).toBe(400);

  fs.rmSync(path.join(stack.targetDir, 'dicom', 'site a', 'mr.dcm'));
  // An empty folder: nothing placed, a snapshot taken, in which the file is gone.
  fs.rmSync(folder, { recursive: true });
  fs.mkdirSync(folder);
  expect((await placeAndSnapshot({ folder, targetDir: stack.targetDir, prefix: '', restEndpoint: stack.restEndpoint, restToken: stack.restToken })).files).toBe(0);
  await until(async () => ((await ingestionOf(url)).body.status === 'deleted' ? true : undefined));
}, 120_000);
