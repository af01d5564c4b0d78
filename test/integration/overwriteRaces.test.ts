/**
 * Abuse of one source on the running stack: rapid overwrites of one file name (each write a
 * file with another SOP instance), its deletion, and a file whose UID holds a backslash. The
 * research side must end holding the current version's instance only, nothing once the source
 * is deleted, and the bad file must end quarantined with its own code, not dead-lettered. The
 * same assertions run on both sources (sourceDrivers.ts): on the ANQ path each overwrite is
 * followed by a snapshot, so the watcher publishes a burst of versions of the one file.
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Container } from '@azure/cosmos';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings, Settings } from '../../shared/config/settings';
import { asciiValue } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { ErrorCodes } from '../../shared/errors';
import { SOURCE_KINDS, SourceDriver, sourceDriver } from './sourceDrivers';
import { apiGet, eventStats, testStack } from './stackEnv';

const FIXTURE = readFileSync(join(__dirname, '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const STUDY = 0x0020000d;
const SOP = 0x00080018;

let settings: Settings;
let research: ContainerClient;
let quarantine: ContainerClient;
let index: Container;

beforeAll(async () => {
  const stack = testStack();
  settings = loadSettings(stack.env);
  const blobs = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!);
  research = blobs.getContainerClient(settings.researchContainer);
  quarantine = blobs.getContainerClient(settings.quarantineContainer);
  index = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.indexContainer);
});

/** Replaces every occurrence of a UID of the fixture with another of the same length. */
async function replaceUid(data: Buffer, tag: number, make: (uid: string) => string): Promise<Buffer> {
  const uid = asciiValue((await parseDicomBuffer(FIXTURE)).dataset.get(tag))!;
  const next = make(uid);
  expect(next).toHaveLength(uid.length);
  const out = Buffer.from(data);
  for (let at = out.indexOf(uid); at >= 0; at = out.indexOf(uid, at + 1)) out.write(next, at, 'latin1');
  return out;
}

/** Same-length digits at the end of a UID: a study or instance no other test uses. */
const digits = (uid: string, suffix: string) => `${uid.slice(0, -suffix.length)}${suffix}`;

async function recordOf(url: string): Promise<IngestionDocument | undefined> {
  const { resources } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.sourceUrl = @u', parameters: [{ name: '@u', value: url }] }).fetchAll();
  return resources[0];
}

async function researchBlobsOfStudy(study: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of research.listBlobsFlat({ prefix: `${study}/` })) names.push(b.name);
  return names;
}

async function qidoInstances(study: string): Promise<unknown[]> {
  const res = await apiGet(`/api/dicomweb/studies/${study}/instances`, 'research');
  if (res.status === 204) return [];
  expect(res.status).toBe(200);
  return (await res.json()) as unknown[];
}

describe.each(SOURCE_KINDS)('abuse of one source on the running stack, on the %s path', (kind) => {
  let driver: SourceDriver;
  beforeAll(() => {
    driver = sourceDriver(kind);
  });
  const indexRecord = (name: string) => recordOf(driver.sourceUrl(name));

  it('given twenty writes of one file name in a few seconds, each another instance, then QIDO shows one instance, the index records the last version, and nothing stays once it is deleted', async () => {
    const run = String(randomInt(1e9, 1e10 - 1));
    const name = `overwrites/${run}.dcm`;
    const base = await replaceUid(FIXTURE, STUDY, (uid) => digits(uid, run));
    for (let i = 0; i < 20; i++) {
      const version = await replaceUid(base, SOP, (uid) => digits(uid, `${run.slice(0, 7)}${String(i).padStart(3, '0')}`));
      await driver.put(name, version);
      await driver.publish();
    }
    await driver.settle(120_000);
    const record = await indexRecord(name);
    expect(record?.status).toBe('cataloged');
    expect(record?.eTag).toBe(await driver.currentEtag(name));
    expect(record?.original?.sopInstanceUid?.endsWith(`${run.slice(0, 7)}019`)).toBe(true);
    const study = record!.research!.studyInstanceUid;
    expect(await researchBlobsOfStudy(study)).toEqual([record!.research!.blob]);
    expect(await qidoInstances(study)).toHaveLength(1);
    // The copy can be found from its source without the catalog: by its index tag.
    const { tags } = await research.getBlobClient(record!.research!.blob).getTags();
    expect(tags.sourcekey).toMatch(/^[0-9a-f]{32}$/);
    const found: string[] = [];
    for await (const b of research.findBlobsByTags(`sourcekey = '${tags.sourcekey}'`)) found.push(b.name);
    expect(found).toEqual([record!.research!.blob]);

    await driver.remove(name);
    await driver.settle(60_000);
    expect((await indexRecord(name))?.status).toBe('deleted');
    expect(await researchBlobsOfStudy(study)).toEqual([]);
    expect(await qidoInstances(study)).toHaveLength(0);
  }, 180_000);

  it('given a SOP Instance UID with a backslash, then the file is quarantined as DICOM_INVALID_UID, not retried to the dead letter, and nothing reaches the research side', async () => {
    const run = String(randomInt(1e9, 1e10 - 1));
    const name = `bad-uid/${run}.dcm`;
    const withStudy = await replaceUid(FIXTURE, STUDY, (uid) => digits(uid, run));
    const bad = await replaceUid(withStudy, SOP, (uid) => `${uid.slice(0, 4)}\\${uid.slice(5)}`);
    const before = await eventStats();
    await driver.put(name, bad);
    await driver.settle(60_000);
    expect((await eventStats()).deadLettered).toBe(before.deadLettered);
    const record = await indexRecord(name);
    expect(record).toMatchObject({ status: 'quarantined', errorCode: ErrorCodes.DICOM_INVALID_UID });
    expect(record?.research).toBeUndefined();
    expect(await quarantine.getBlobClient(record!.quarantineBlob!).exists()).toBe(true);
  }, 120_000);
});
