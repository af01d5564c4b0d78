/**
 * The frame index through the running stack: files uploaded to the landing container are
 * ingested by the functions host; the index kept with each research instance gives frames equal
 * to the frames pydicom extracts from the research copy; a large multi-frame instance keeps its
 * index in a sidecar blob with a small document; an instance whose document lacks the index
 * gets one on first use. Each file is given fresh UIDs, so that no other test's copy of the same
 * sample shares its research instance.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Container } from '@azure/cosmos';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { catalogContainer as catalogOf, CosmosResearchCatalog, createCosmosClient, createDocumentClient } from '../../shared/catalog/cosmosCatalog';
import { CosmosResearchCatalogReader } from '../../shared/catalog/cosmosResearchReader';
import type { IngestionDocument, InstanceDocument } from '../../shared/catalog/documents';
import { loadSettings, Settings } from '../../shared/config/settings';
import { asciiValue } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import type { FrameIndex } from '../../shared/retrieve/frameIndex';
import { bitPackedFrameRange, repackBitFrame } from '../../shared/retrieve/frameIndexBits';
import { frameIndexSidecarName } from '../../shared/retrieve/frameIndexCodec';
import { CatalogFrameIndexSource } from '../../shared/retrieve/frameIndexSource';
import { findResearchInstances } from '../../shared/retrieve/researchInstances';
import { AzureResearchStore } from '../../shared/storage/blobStores';
import { independentFrameHashes, sha256 } from '../unit/retrieve/independentFrames';
import { syntheticEncapsulated } from '../unit/retrieve/syntheticFrames';
import { asCtWithFreshUids } from './relabel';
import { authHeader, testStack, waitForEvents } from './stackEnv';

const FIXTURES = join(__dirname, '..', 'fixtures', 'dicom');

/** One of each kind the index handles (native, one bit, RLE, JPEG baseline, lossless, JPEG-LS, JPEG 2000; multi-frame, fragmented, with and without offset tables). */
const SAMPLES = [
  'highdicom/sm_image.dcm',
  'ms-anonymizer/samples__lung.dcm',
  'pydicom-deb/test_files__rtdose_expb.dcm',
  'pydicom-data/liver_nonbyte_aligned.dcm',
  'pydicom-deb/test_files__rtdose_rle.dcm',
  'pydicom-data/emri_small_RLE.dcm',
  'fo-dicom/JPEGwithIcon.dcm',
  'dicomParser/encapsulated__multi-frame__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm',
  'fo-dicom/GH610.dcm',
  'highdicom/sm_image_jpegls.dcm',
  'dicomParser/encapsulated__single-frame__CT1_UNC.fragmented_bot_jpeg_ls.80.dcm',
  'pydicom-data/emri_small_jpeg_2k_lossless.dcm',
  'pydicom-data/liver_nonbyte_aligned_j2k.dcm',
];
/**
 * Number of Frames "1A", not a valid IS, over the 15 frames of pydicom's rtdose sample (6,000
 * bytes of 10 x 10 32-bit samples): dcmtk and gdcm read one frame.
 */
const BAD_FRAME_COUNT = 'pydicom-deb/test_files__badVR.dcm';
/** Cosmos DB's limit on one document. */
const COSMOS_DOCUMENT_LIMIT = 2 * 1024 * 1024;

let settings: Settings;
let research: ContainerClient;
let index: Container;
let catalogContainer: Container;
let source: CatalogFrameIndexSource;
const prefix = `frame-index-${randomBytes(4).toString('hex')}`;


async function cataloged(name: string): Promise<{ doc: InstanceDocument; etag: string; copy: Buffer }> {
  const { resources } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.blobName = @n', parameters: [{ name: '@n', value: name }] }).fetchAll();
  const record = resources[0];
  expect(record?.status).toBe('cataloged');
  const r = record!.research!;
  const { resource } = await catalogContainer.item(`instance:${r.sopInstanceUid}`, r.studyInstanceUid).read<InstanceDocument & { _etag: string }>();
  const copy = await research.getBlobClient(resource!.researchBlob).downloadToBuffer();
  return { doc: resource!, etag: resource!._etag, copy };
}

function framesOf(copy: Buffer, idx: FrameIndex): Buffer[] {
  switch (idx.kind) {
    case 'none':
      return [];
    case 'native':
      return Array.from({ length: idx.count }, (_, i) => copy.subarray(idx.offset + i * idx.frameLength, idx.offset + (i + 1) * idx.frameLength));
    case 'bitPacked':
      return Array.from({ length: idx.count }, (_, i) => {
        const r = bitPackedFrameRange(idx, i);
        return repackBitFrame(copy.subarray(r.offset, r.offset + r.length), r.shift, idx.frameBits);
      });
    case 'encapsulated':
      return idx.frames.map((ranges) => Buffer.concat(ranges.map(([o, n]) => copy.subarray(o, o + n))));
  }
}

const sourceOf = (doc: InstanceDocument) => ({ studyInstanceUid: doc.studyInstanceUid, sopInstanceUid: doc.sopInstanceUid, researchBlob: doc.researchBlob });

const large = syntheticEncapsulated({ frames: 4100, fragmentsPerFrame: 2, frameBytes: 64, basicOffsetTable: true });

beforeAll(async () => {
  const stack = testStack();
  settings = loadSettings(stack.env);
  const blobs = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!);
  const landing = blobs.getContainerClient(settings.sourceContainers[0]!);
  research = blobs.getContainerClient(settings.researchContainer);
  const db = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase);
  index = db.container(settings.indexContainer);
  catalogContainer = db.container(settings.researchCatalogContainer);
  source = new CatalogFrameIndexSource({ research: new AzureResearchStore(blobs, settings.researchContainer), catalog: new CosmosResearchCatalog(catalogOf(catalogContainer, createDocumentClient(settings.cosmos))) });
  for (const s of SAMPLES) await landing.getBlockBlobClient(`${prefix}/${s}`).uploadData(await asCtWithFreshUids(readFileSync(join(FIXTURES, s))));
  await landing.getBlockBlobClient(`${prefix}/large.dcm`).uploadData(await asCtWithFreshUids(large.file));
  await landing.getBlockBlobClient(`${prefix}/${BAD_FRAME_COUNT}`).uploadData(await asCtWithFreshUids(readFileSync(join(FIXTURES, BAD_FRAME_COUNT))));
  await waitForEvents(180_000);
}, 240_000);

describe('frame index through the running stack', () => {
  it('given the samples ingested, then every frame at the stored index equals the frame pydicom extracts from the research copy', async () => {
    const docs = await Promise.all(SAMPLES.map((s) => cataloged(`${prefix}/${s}`)));
    const expected = independentFrameHashes(docs.map((d) => d.copy));
    let frames = 0;
    for (const [i, d] of docs.entries()) {
      expect(d.doc.frames).toBeDefined();
      const got = framesOf(d.copy, await source.frameIndex(sourceOf(d.doc))).map(sha256);
      expect({ sample: SAMPLES[i], frames: got }).toEqual({ sample: SAMPLES[i], frames: expected[i] });
      frames += got.length;
    }
    console.log(`frame index: ${frames} frames of ${docs.length} instances equal to pydicom's`);
  });

  it('given a 4,100-frame instance, then its index is in a sidecar next to the copy, its document stays far under the limit, and frame 4,000 is found', async () => {
    const d = await cataloged(`${prefix}/large.dcm`);
    expect(d.doc.frames).toEqual({ kind: 'sidecar', blob: frameIndexSidecarName(d.doc.researchBlob), count: 4100 });
    expect(await research.getBlobClient(frameIndexSidecarName(d.doc.researchBlob)).exists()).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(d.doc))).toBeLessThan(COSMOS_DOCUMENT_LIMIT / 100);
    const frames = framesOf(d.copy, await source.frameIndex(sourceOf(d.doc)));
    expect(frames).toHaveLength(4100);
    expect(frames[3999]).toEqual(large.frames[3999]);
    expect(frames[0]).toEqual(large.frames[0]);
  });

  it('given the 4,100-frame instance as the retrieve\'s catalog lookup finds it, then its index comes from the sidecar without reading the instance document again', async () => {
    const d = await cataloged(`${prefix}/large.dcm`);
    const [found] = await findResearchInstances(new CosmosResearchCatalogReader(catalogContainer), { study: d.doc.studyInstanceUid, series: d.doc.seriesInstanceUid, instance: d.doc.sopInstanceUid });
    const documentRead = jest.fn();
    const lookupOnly = new CatalogFrameIndexSource({
      research: new AzureResearchStore(BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!), settings.researchContainer),
      catalog: { getInstance: async () => documentRead(), putInstance: async () => documentRead() },
    });
    const frames = framesOf(d.copy, await lookupOnly.frameIndex(found!));
    expect(frames[3999]).toEqual(large.frames[3999]);
    expect(documentRead).not.toHaveBeenCalled();
  });

  it('given a Number of Frames that is not a valid IS ("1A"), then it is read by its leading digits as dcmtk reads it: frame 1 is the first 400 bytes through the host, and frame 2 is not found', async () => {
    const d = await cataloged(`${prefix}/${BAD_FRAME_COUNT}`);
    const parsed = await parseDicomBuffer(d.copy);
    expect(asciiValue(parsed.dataset.get(Tags.NumberOfFrames))).toBe('1A');
    expect(parsed.pixelValue).toHaveLength(6000);
    expect(d.doc.frames).toMatchObject({ kind: 'native', count: 1, frameLength: 400 });
    const base = `${testStack().hostUrl}/api/dicomweb/studies/${d.doc.studyInstanceUid}/series/${d.doc.seriesInstanceUid}/instances/${d.doc.sopInstanceUid}/frames`;
    const frame = (list: string) => fetch(`${base}/${list}`, { headers: { ...authHeader('research'), accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' } });
    const one = await frame('1');
    expect(one.status).toBe(200);
    const body = Buffer.from(await one.arrayBuffer());
    expect(body.includes(parsed.pixelValue!.subarray(0, 400))).toBe(true);
    expect(body.includes(parsed.pixelValue!.subarray(400, 800))).toBe(false);
    const two = await frame('1,2');
    expect(two.status).toBe(404);
    expect(Buffer.from(await two.arrayBuffer()).toString('utf8')).toContain('the instance has 1 frame(s)');
  });

  it('given an instance whose document lacks the index (ingested before 0.7.0), then the first use builds it from the copy and keeps it in the document', async () => {
    const d = await cataloged(`${prefix}/${SAMPLES[7]}`);
    const stored = d.doc.frames;
    const { frames: _drop, ...old } = d.doc;
    await catalogContainer.item(old.id, old.studyInstanceUid).replace(old, { accessCondition: { type: 'IfMatch', condition: d.etag } });
    const built = await new CatalogFrameIndexSource({ research: new AzureResearchStore(BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!), settings.researchContainer), catalog: new CosmosResearchCatalog(catalogOf(catalogContainer, createDocumentClient(settings.cosmos))) }).frameIndex(sourceOf(d.doc));
    const after = await cataloged(`${prefix}/${SAMPLES[7]}`);
    expect(after.doc.frames).toEqual(stored);
    expect(framesOf(d.copy, built).map(sha256)).toEqual(independentFrameHashes([d.copy])[0]);
  });
  it('given the copy replaced by another source\'s whose document has not followed, then the host answers 503 with Retry-After, and the new copy\'s own frame once the document follows', async () => {
    const d = await cataloged(`${prefix}/${SAMPLES[0]}`);
    const other = await cataloged(`${prefix}/${SAMPLES[4]}`);
    const url = `${testStack().hostUrl}/api/dicomweb/studies/${d.doc.studyInstanceUid}/series/${d.doc.seriesInstanceUid}/instances/${d.doc.sopInstanceUid}/frames/1`;
    const frame = () => fetch(url, { headers: { ...authHeader('research'), accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' } });
    expect((await frame()).status).toBe(200);

    // Another source's copy committed over it, as a replacing ingestion does before it writes the document.
    const store = new AzureResearchStore(BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!), settings.researchContainer);
    const first = await store.readRange(d.doc.researchBlob, 0, 16);
    expect(first.sourceVersion).toBe(d.doc.sourceVersion);
    await first[Symbol.asyncIterator]().return?.();
    const replacement = { rank: d.doc.sourceRank, keyId: d.doc.deidentification.keyId, sourceKey: 'another-source', sourceVersion: 'another-source-version' };
    const replace = async (bytes: Buffer) => {
      async function* one() {
        yield bytes;
      }
      expect((await store.write(d.doc.researchBlob, one(), { ...replacement, expected: await store.getVersion(d.doc.researchBlob) })).committed).toBe(true);
    };
    // Told apart by its source version alone (the same bytes), then by its size and a frame past its end.
    for (const bytes of [d.copy, other.copy]) {
      await replace(bytes);
      const during = await frame();
      expect(during.status).toBe(503);
      expect(during.headers.get('retry-after')).toBe('5');
      expect(Buffer.from(await during.arrayBuffer()).toString('utf8')).toContain('being replaced');
    }

    // The document follows: the copy's own size, syntax, index and source version.
    const { resource: current } = await catalogContainer.item(d.doc.id, d.doc.studyInstanceUid).read<InstanceDocument>();
    await catalogContainer.item(d.doc.id, d.doc.studyInstanceUid).replace({ ...current!, size: other.doc.size, transferSyntaxUid: other.doc.transferSyntaxUid, frames: other.doc.frames, sourceVersion: replacement.sourceVersion, updatedAt: new Date().toISOString() });
    const after = await frame();
    expect(after.status).toBe(200);
    const expected = framesOf(other.copy, await source.frameIndex(sourceOf(other.doc)))[0]!;
    expect(Buffer.from(await after.arrayBuffer()).includes(expected)).toBe(true);
  });
});
