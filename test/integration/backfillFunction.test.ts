/**
 * The backfill as a function on the local host: an archive put in the landing container with no
 * event, a job started over HTTP (Operations.Manage), and the `backfillSlice` timer (every second
 * here, 1 s slices) running it from the checkpoint in its blob until done. Every file must be
 * cataloged once.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BackfillStack, BackfillStackInfo, startBackfillStack } from './backfillStackProcess';

const FILES = 150;

let dir: string;
let stack: BackfillStack;
let info: BackfillStackInfo & { operatorToken: string };

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-backfill-fn-'));
  // Its own stack process (tools/backfillStack.ts): the timers and settings stay out of the shared test stack.
  stack = await startBackfillStack(dir, FILES, 'function');
  info = { ...stack.info, operatorToken: stack.info.operatorToken ?? '' };
}, 300_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function indexDocuments(): Promise<{ status: string }[]> {
  const { resources } = await stack.cosmos().database(info.cosmosDatabase).container(info.indexContainer).items.query<{ status: string }>('SELECT c.status FROM c').fetchAll();
  return resources;
}

function cataloged(): number {
  if (!fs.existsSync(info.telemetryFile)) return 0;
  return fs.readFileSync(info.telemetryFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { kind: string; status: string }).filter((r) => r.kind === 'ingestion' && r.status === 'cataloged').length;
}

const api = (method: string, body?: unknown) =>
  fetch(`${info.hostUrl}/api/backfill`, { method, headers: { authorization: `Bearer ${info.operatorToken}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

test('given an archive no event announced, when a job is started over HTTP, then the timer runs it in slices to the end and every file is cataloged once', async () => {
  expect(await indexDocuments()).toHaveLength(0);
  expect((await api('GET')).status).toBe(404);

  // 50 events/s: the 150 files take at least 3 s, so 1 s slices cannot finish in one, however fast ingestion is.
  const started = await api('POST', { container: 'anq-replica', rate: 50 });
  expect(started.status).toBe(202);
  expect(await started.json()).toMatchObject({ state: 'pending', source: { kind: 'blob', container: 'anq-replica' }, ratePerSecond: 50 });
  // One job at a time.
  expect((await api('POST', { container: 'anq-replica' })).status).toBe(409);

  let status: { state: string; slices: number; counts: { listed: number; emitted: number; skipped: number }; lastError?: unknown } | undefined;
  const deadline = Date.now() + 240_000;
  while (Date.now() < deadline) {
    status = (await (await api('GET')).json()) as typeof status;
    if (status?.state === 'done') break;
    await new Promise((r) => setTimeout(r, 500));
  }
  expect(status).toMatchObject({ state: 'done', counts: { listed: FILES, emitted: FILES, skipped: 0 } });
  // 1 s slices at 50/s: resumed from the checkpoint at least once.
  expect(status?.slices).toBeGreaterThan(1);
  expect(JSON.stringify(status)).not.toMatch(/\.dcm|devstoreaccount1/);

  // The events were accepted before the checkpoint moved; their ingestion may still be running.
  const until = Date.now() + 120_000;
  while (cataloged() < FILES && Date.now() < until) await new Promise((r) => setTimeout(r, 500));
  const docs = await indexDocuments();
  expect(docs).toHaveLength(FILES);
  expect(docs.filter((d) => d.status !== 'cataloged')).toEqual([]);
  expect(cataloged()).toBe(FILES);
  const problems = fs.existsSync(info.problems) ? fs.readFileSync(info.problems, 'utf8') : '';
  expect(problems).not.toMatch(/backfillSlice/);
}, 600_000);
