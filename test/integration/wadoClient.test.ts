/**
 * A real DICOMweb client against the running stack: dicomweb-client (the library OHIF's
 * DICOMweb data source uses), with xhr2 as its XMLHttpRequest in Node. It reads study
 * metadata, instances, frames and bulk data of research copies ingested here, and each answer
 * is compared with the research blob in Azurite.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import { api as dicomweb } from 'dicomweb-client';

import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import type { DicomJson } from '../../shared/dicom/json';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { asCtWithFreshUids } from './relabel';
import { testStack, waitForEvents } from './stackEnv';

// eslint-disable-next-line @typescript-eslint/no-require-imports
(globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest = require('xhr2');

const FIXTURES = join(__dirname, '..', 'fixtures', 'dicom');
const PREFIX = `wado-client-${randomUUID()}`;
// Files whose SOP Instance UID no other fixture shares (the emri_small files of pydicom-data share one:
// the research side keeps one of them, by rank, and the others' uploads could replace it mid-test).
// The multi-frame sample is microscopy with JPEG-LS frames, held by the burned-in policy as it is: relabelled (relabel.ts).
const FILES = { native: 'pydicom-deb/test_files__MR_small.dcm', multiFrame: 'highdicom/sm_image_jpegls.dcm' };

interface Uids { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }

/** The calls used here, as the library documents them (its generated .d.ts marks every option required). */
interface Client {
  retrieveStudyMetadata(options: { studyInstanceUID: string }): Promise<unknown>;
  retrieveInstance(options: Uids): Promise<unknown>;
  retrieveInstanceFrames(options: Uids & { frameNumbers: number[] }): Promise<unknown>;
  retrieveBulkData(options: { BulkDataURI: string }): Promise<unknown>;
}

let research: ContainerClient;
let client: Client;
const uids: Record<string, Uids> = {};
const blobs: Record<string, string> = {};

beforeAll(async () => {
  const stack = testStack();
  const settings = loadSettings(stack.env);
  const service = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!);
  const landing = service.getContainerClient(settings.sourceContainers[0]!);
  research = service.getContainerClient(settings.researchContainer);
  for (const [name, file] of Object.entries(FILES)) await landing.getBlockBlobClient(`${PREFIX}/${name}.dcm`).uploadData(name === 'multiFrame' ? await asCtWithFreshUids(readFileSync(join(FIXTURES, file))) : readFileSync(join(FIXTURES, file)));
  await waitForEvents(120_000);
  const index = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.indexContainer);
  for (const name of Object.keys(FILES)) {
    const { resources } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.blobName = @b', parameters: [{ name: '@b', value: `${PREFIX}/${name}.dcm` }] }).fetchAll();
    const r = resources[0]?.research;
    if (!r) throw new Error(`${name} was not cataloged`);
    uids[name] = { studyInstanceUID: r.studyInstanceUid, seriesInstanceUID: r.seriesInstanceUid, sopInstanceUID: r.sopInstanceUid };
    blobs[name] = r.blob;
  }
  const Constructor = dicomweb.DICOMwebClient as unknown as new (options: { url: string; headers: Record<string, string> }) => Client;
  client = new Constructor({ url: `${stack.hostUrl}/api/dicomweb`, headers: { Authorization: `Bearer ${stack.tokens.research}` } });
}, 180_000);

const blob = async (name: string) => research.getBlobClient(blobs[name]!).downloadToBuffer();

describe('dicomweb-client against the service', () => {
  test('given retrieveStudyMetadata, then the DICOM JSON of the study, its PixelData as a BulkDataURI that retrieveBulkData reads', async () => {
    const metadata = (await client.retrieveStudyMetadata({ studyInstanceUID: uids.native!.studyInstanceUID })) as DicomJson[];
    const mine = metadata.find((m) => m['00080018']?.Value?.[0] === uids.native!.sopInstanceUID);
    expect(mine).toBeDefined();
    const uri = mine!['7FE00010']!.BulkDataURI!;
    const parts = (await client.retrieveBulkData({ BulkDataURI: uri })) as ArrayBuffer[];
    const pixels = (await parseDicomBuffer(await blob('native'))).pixelValue!;
    expect(Buffer.from(parts[0]!).equals(pixels)).toBe(true);
  });

  test('given retrieveInstance, then the research blob byte for byte', async () => {
    for (const name of Object.keys(FILES)) {
      const instance = (await client.retrieveInstance(uids[name]!)) as ArrayBuffer;
      expect(Buffer.from(instance).equals(await blob(name))).toBe(true);
    }
  });

  test('given a QIDO-RS search at each level, then each match\'s Retrieve URL (0008,1190) is the WADO-RS resource that answers its bytes', async () => {
    const stack = testStack();
    const { studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop } = uids.native!;
    const auth = { authorization: `Bearer ${stack.tokens.research}` };
    const root = `${stack.hostUrl}/api/dicomweb`;
    const search = async (path: string) => (await (await fetch(`${root}${path}`, { headers: auth })).json()) as DicomJson[];
    const url = (matches: DicomJson[], tag: string, uid: string) => matches.find((m) => m[tag]?.Value?.[0] === uid)?.['00081190'];
    expect(url(await search(`/studies?StudyInstanceUID=${study}`), '0020000D', study)).toEqual({ vr: 'UR', Value: [`${root}/studies/${study}`] });
    expect(url(await search(`/studies/${study}/series`), '0020000E', series)).toEqual({ vr: 'UR', Value: [`${root}/studies/${study}/series/${series}`] });
    const instanceUrl = url(await search(`/studies/${study}/series/${series}/instances`), '00080018', sop)?.Value?.[0] as string;
    expect(instanceUrl).toBe(`${root}/studies/${study}/series/${series}/instances/${sop}`);
    const res = await fetch(instanceUrl, { headers: { ...auth, accept: 'application/dicom; transfer-syntax=*' } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(await blob('native'))).toBe(true);
  });

  test('given retrieveInstanceFrames on a JPEG-LS multi-frame instance (25 frames), then each frame is its fragment', async () => {
    const value = (await parseDicomBuffer(await blob('multiFrame'))).pixelValue!;
    const fragments: Buffer[] = [];
    for (let o = 8 + value.readUInt32LE(4); o + 8 <= value.length && value.readUInt32LE(o) === 0xe000fffe; o += 8 + value.readUInt32LE(o + 4)) {
      fragments.push(value.subarray(o + 8, o + 8 + value.readUInt32LE(o + 4)));
    }
    expect(fragments).toHaveLength(25);
    const frames = (await client.retrieveInstanceFrames({ ...uids.multiFrame!, frameNumbers: [1, 13, 25] })) as ArrayBuffer[];
    expect(frames.map((f) => Buffer.from(f))).toEqual([fragments[0], fragments[12], fragments[24]]);
  });
});
