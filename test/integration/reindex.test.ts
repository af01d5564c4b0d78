/**
 * Re-index on the real local services (issue 18): an archive ingested by a backfill, the
 * functions' key rotated (their settings), and the backfill run again with the same checkpoint:
 * every research UID changes, no copy or document of the old key is left, and the counts are
 * those of the first pass. A third run skips everything.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { BackfillStack, BackfillStackInfo, runAsync, startBackfillStack } from './backfillStackProcess';

const projectRoot = path.resolve(__dirname, '..', '..');
const FILES = 30;
const NEW_KEY = 'reindex-test-rotated-key-0123456789abcdef';

let dir: string;
let stack: BackfillStack;
let info: BackfillStackInfo;

const runBackfill = (args: string[], runEnv: NodeJS.ProcessEnv, timeoutMs: number) => runAsync(process.execPath, [path.join(projectRoot, 'dist', 'tools', 'backfill.js'), ...args], runEnv, timeoutMs);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-reindex-'));
  stack = await startBackfillStack(dir, FILES);
  info = stack.info;
}, 300_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Instance { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string; researchBlob: string; deidentification: { keyId: string } }
interface Study { studyInstanceUid: string; numberOfStudyRelatedInstances: number }

async function researchSide(): Promise<{ instances: Instance[]; studies: Study[]; blobs: string[]; records: { status: string; keyId?: string }[] }> {
  const db = stack.cosmos().database(info.cosmosDatabase);
  const catalog = db.container(info.env.COSMOS_RESEARCH_CONTAINER ?? 'research-catalog');
  const { resources: instances } = await catalog.items.query<Instance>("SELECT * FROM c WHERE c.type = 'instance'").fetchAll();
  const { resources: studies } = await catalog.items.query<Study>("SELECT * FROM c WHERE c.type = 'study'").fetchAll();
  const { resources: records } = await db.container(info.indexContainer).items.query<{ status: string; keyId?: string }>('SELECT c.status, c.deidentification.keyId AS keyId FROM c').fetchAll();
  const research = BlobServiceClient.fromConnectionString(info.env.ResearchStorage ?? info.env.SourceStorage ?? '').getContainerClient(info.env.RESEARCH_CONTAINER ?? 'research');
  const blobs: string[] = [];
  for await (const b of research.listBlobsFlat()) if (b.name.endsWith('.dcm')) blobs.push(b.name);
  return { instances, studies, blobs: blobs.sort(), records };
}

test('given an archive ingested under one key, when the key is rotated and the backfill run again, then every research UID changes, no old copy or document is left, and the counts are equal', async () => {
  const checkpoint = path.join(dir, 'backfill.json');
  const args = ['--rate', '0', '--batch-size', '2', '--concurrency', '8', '--page-size', '50', '--checkpoint', checkpoint];
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    ...info.env,
    ANQ_EVENTS_TOPIC_ENDPOINT: `${info.hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`,
    ANQ_EVENTS_TOPIC_KEY: 'local-topic-key',
    TELEMETRY_CAPTURE_FILE: path.join(dir, 'backfill-telemetry.jsonl'),
  };

  const first = await runBackfill(args, env, 600_000);
  expect({ status: first.status, err: first.status === 0 ? '' : first.stderr }).toEqual({ status: 0, err: '' });
  const before = await researchSide();
  expect(before.instances).toHaveLength(FILES);
  expect(before.blobs).toEqual(before.instances.map((i) => i.researchBlob).sort());
  expect(new Set(before.records.map((r) => `${r.status}/${r.keyId}`))).toEqual(new Set(['cataloged/bf']));

  stack.process.stdin?.write(`rotate bf2 ${NEW_KEY}\n`);
  await stack.waitForLine(/^rotated bf2$/, 30_000);
  // The backfill is given the functions' settings, the new key id with them; same checkpoint file.
  const rotated = { ...env, DEID_KEY: NEW_KEY, DEID_KEY_ID: 'bf2' };
  const second = await runBackfill(args, rotated, 600_000);
  expect({ status: second.status, err: second.status === 0 ? '' : second.stderr }).toEqual({ status: 0, err: '' });
  expect(second.stderr).toMatch(new RegExp(`backfill: done: ${FILES} emitted, 0 already cataloged, ${FILES} listed; ${FILES} of the emitted re-indexed under key bf2`));

  const after = await researchSide();
  expect(after.instances).toHaveLength(FILES);
  expect(after.instances.every((i) => i.deidentification.keyId === 'bf2')).toBe(true);
  const old = { studies: new Set(before.instances.map((i) => i.studyInstanceUid)), series: new Set(before.instances.map((i) => i.seriesInstanceUid)), sops: new Set(before.instances.map((i) => i.sopInstanceUid)) };
  for (const i of after.instances) {
    expect(old.studies.has(i.studyInstanceUid)).toBe(false);
    expect(old.series.has(i.seriesInstanceUid)).toBe(false);
    expect(old.sops.has(i.sopInstanceUid)).toBe(false);
  }
  // No old copy left: the research container holds exactly the new instances' copies.
  expect(after.blobs).toEqual(after.instances.map((i) => i.researchBlob).sort());
  // Counts equal: as many studies, with the same sizes, and every record cataloged under the new key.
  expect(after.studies.map((s) => s.numberOfStudyRelatedInstances).sort()).toEqual(before.studies.map((s) => s.numberOfStudyRelatedInstances).sort());
  expect(after.studies.every((s) => !old.studies.has(s.studyInstanceUid))).toBe(true);
  expect(after.records).toHaveLength(FILES);
  expect(new Set(after.records.map((r) => `${r.status}/${r.keyId}`))).toEqual(new Set(['cataloged/bf2']));

  // Done under the new key: a third run (a new checkpoint) skips every file.
  const third = await runBackfill([...args.slice(0, -1), path.join(dir, 'again.json')], rotated, 300_000);
  expect(third.status).toBe(0);
  expect(third.stderr).toMatch(new RegExp(`backfill: done: 0 emitted, ${FILES} already cataloged, ${FILES} listed\\n`));
}, 900_000);
