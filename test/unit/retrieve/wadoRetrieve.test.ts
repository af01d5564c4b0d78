import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ResearchCatalogReader, SqlQuery } from '../../../shared/catalog/researchCatalog';
import type { DicomJson } from '../../../shared/dicom/json';
import { DEFAULT_LIMITS } from '../../../shared/dicom/limits';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { ErrorCodes, isPipelineError } from '../../../shared/errors';
import type { FrameIndexSource } from '../../../shared/retrieve/frameIndex';
import { buildFrameIndexFromCopy, expandFrameIndex } from '../../../shared/retrieve/frameIndexBuilder';
import { MetadataCache } from '../../../shared/retrieve/instanceMetadata';
import { type ResearchInstance, ResearchInstanceCache } from '../../../shared/retrieve/researchInstances';
import { retrieve, type WadoDeps, type WadoRequest } from '../../../shared/retrieve/wado';
import { MemoryResearchStore } from '../fakes';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const ROOT = 'http://host/api/dicomweb';
const STUDY = '2.25.1';
const SERIES = '2.25.1.1';

/** The research catalog as the retrieve reads it: instance documents filtered by the query's parameters. */
class FakeCatalog implements ResearchCatalogReader {
  queries = 0;
  constructor(readonly docs: ResearchInstance[]) {}
  async *query<T>(spec: SqlQuery): AsyncIterable<T> {
    this.queries++;
    const p = new Map(spec.parameters.map((x) => [x.name, x.value]));
    for (const d of this.docs) {
      if (p.get('@study') !== d.studyInstanceUid) continue;
      if (p.has('@series') && p.get('@series') !== d.seriesInstanceUid) continue;
      if (p.has('@instance') && p.get('@instance') !== d.sopInstanceUid) continue;
      yield d as unknown as T;
    }
  }
}

async function collect(body: AsyncIterable<Uint8Array> | string): Promise<Buffer> {
  if (typeof body === 'string') return Buffer.from(body);
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

function partsOf(contentType: string, body: Buffer): Buffer[] {
  const boundary = /boundary=([^;]+)/.exec(contentType)![1]!;
  return body
    .toString('latin1')
    .split(`--${boundary}`)
    .slice(1, -1)
    .map((p) => Buffer.from(p.slice(p.indexOf('\r\n\r\n') + 4, -2), 'latin1'));
}

const FILES = {
  native: 'pydicom-deb/test_files__MR_small.dcm',
  jpegLsMultiFrame: 'pydicom-data/emri_small_jpeg_ls_lossless.dcm',
};

let deps: WadoDeps;
let catalog: FakeCatalog;
const bytes: Record<string, Buffer> = {};
const request = (over: Partial<WadoRequest> & Pick<WadoRequest, 'resource'>): WadoRequest => ({
  scope: { study: STUDY, series: SERIES, instance: '2.25.1.1.1' },
  accept: null,
  range: null,
  root: ROOT,
  ...over,
});

beforeAll(async () => {
  const research = new MemoryResearchStore();
  const docs: ResearchInstance[] = [];
  let n = 1;
  for (const [name, file] of Object.entries(FILES)) {
    const data = readFileSync(join(FIXTURES, file));
    bytes[name] = data;
    const blob = `${STUDY}/${SERIES}/${name}.dcm`;
    research.blobs.set(blob, { data, version: { etag: 'e', rank: 'r' } });
    const parsed = await parseDicomBuffer(data);
    docs.push({ studyInstanceUid: STUDY, seriesInstanceUid: SERIES, sopInstanceUid: `2.25.1.1.${n++}`, sopClassUid: '1.2', transferSyntaxUid: parsed.transferSyntaxUid, size: data.length, researchBlob: blob, updatedAt: 't' });
  }
  catalog = new FakeCatalog(docs);
  // The index as the service builds it for an instance cataloged without one: from the copy.
  const frameIndex: FrameIndexSource = {
    frameIndex: async (instance) => expandFrameIndex(await buildFrameIndexFromCopy(research, instance.researchBlob, research.blobs.get(instance.researchBlob)!.data.length)),
  };
  deps = { catalog, research, frameIndex, headerLimits: DEFAULT_LIMITS, metadataCache: new MetadataCache() };
});

async function codeOfCall(f: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await f();
    return 'resolved';
  } catch (e) {
    return isPipelineError(e) ? e.code : 'not a PipelineError';
  }
}

describe('WADO-RS retrieve on the unit fakes', () => {
  test('given a series retrieve, then one application/dicom part per instance, each its blob byte for byte', async () => {
    const answer = await retrieve(deps, request({ resource: 'instances', scope: { study: STUDY, series: SERIES } }));
    expect(answer.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
    const parts = partsOf(answer.headers['content-type']!, await collect(answer.body));
    expect(parts).toEqual([bytes.native, bytes.jpegLsMultiFrame]);
    expect(answer.returned.map((i) => i.sopInstanceUid)).toEqual(['2.25.1.1.1', '2.25.1.1.2']);
  });

  test('given native frames, then each is the slice of the pixel data', async () => {
    const parsed = await parseDicomBuffer(bytes.native!);
    const frame = parsed.pixelValue!;
    const answer = await retrieve(deps, request({ resource: 'frames', frames: '1' }));
    const body = await collect(answer.body);
    const [part] = partsOf(answer.headers['content-type']!, body);
    expect(part!.equals(frame)).toBe(true);
    expect(answer.headers['content-length']).toBe(String(body.length));
  });

  test('given JPEG-LS multi-frame frames in any order, then each is its fragment, typed image/jls', async () => {
    const parsed = await parseDicomBuffer(bytes.jpegLsMultiFrame!);
    // The fragments, as the parser reads them: item header (8 bytes) then value, after the basic offset table.
    const value = parsed.pixelValue!;
    const fragments: Buffer[] = [];
    for (let o = 8 + value.readUInt32LE(4); value.readUInt32LE(o) === 0xe000fffe; o += 8 + value.readUInt32LE(o + 4)) fragments.push(value.subarray(o + 8, o + 8 + value.readUInt32LE(o + 4)));
    expect(fragments.length).toBe(10);
    const answer = await retrieve(deps, request({ resource: 'frames', scope: { study: STUDY, series: SERIES, instance: '2.25.1.1.2' }, frames: '10,1,5' }));
    expect(answer.headers['content-type']).toContain('type="image/jls"');
    const body = await collect(answer.body);
    expect(partsOf(answer.headers['content-type']!, body)).toEqual([fragments[9], fragments[0], fragments[4]]);
    expect(answer.headers['content-length']).toBe(String(body.length));
    expect(await codeOfCall(() => retrieve(deps, request({ resource: 'frames', scope: { study: STUDY, series: SERIES, instance: '2.25.1.1.2' }, frames: '11' })))).toBe(ErrorCodes.NOT_FOUND);
  });

  test('given metadata, then the copy data set with a PixelData BulkDataURI, cached for the next request', async () => {
    const answer = await retrieve(deps, request({ resource: 'metadata', scope: { study: STUDY } }));
    const json = JSON.parse(answer.body as string) as DicomJson[];
    expect(json).toHaveLength(2);
    expect(json[0]!['7FE00010']).toEqual({ vr: 'OW', BulkDataURI: `${ROOT}/studies/${STUDY}/series/${SERIES}/instances/2.25.1.1.1/bulkdata/7FE00010` });
    expect(json[0]!['00083002']).toEqual({ vr: 'UI', Value: ['1.2.840.10008.1.2.1'] });
    const research = deps.research as MemoryResearchStore;
    const spy = jest.spyOn(research, 'readRange');
    await retrieve(deps, request({ resource: 'metadata', scope: { study: STUDY } }));
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
  });

  test('given a bulk data Range, then 206 with that slice of the value and its Content-Range', async () => {
    const pixels = (await parseDicomBuffer(bytes.native!)).pixelValue!;
    const told: number[] = [];
    const answer = await retrieve(deps, request({ resource: 'bulkdata', path: '7FE00010', range: 'bytes=10-19', disclosing: async (status) => void told.push(status) }));
    expect(answer.status).toBe(206);
    // The access audit is told the status the answer will have.
    expect(told).toEqual([206]);
    expect(answer.headers['content-range']).toBe(`bytes 10-19/${pixels.length}`);
    expect((await collect(answer.body)).equals(pixels.subarray(10, 20))).toBe(true);
    expect(await codeOfCall(() => retrieve(deps, request({ resource: 'bulkdata', path: '00420011' })))).toBe(ErrorCodes.NOT_FOUND);
    expect(await codeOfCall(() => retrieve(deps, request({ resource: 'bulkdata', path: '../x' })))).toBe(ErrorCodes.QUERY_INVALID);
  });

  test('given unknown or malformed UIDs, then 404 and 400 naming the parameter, without a catalog read for the malformed one', async () => {
    expect(await codeOfCall(() => retrieve(deps, request({ resource: 'instances', scope: { study: '2.25.999' } })))).toBe(ErrorCodes.NOT_FOUND);
    const before = catalog.queries;
    await expect(retrieve(deps, request({ resource: 'instances', scope: { study: STUDY, series: '1..2' } }))).rejects.toThrow(/series/);
    expect(catalog.queries).toBe(before);
  });

  test('given an instance cache, then a second request within its time asks the catalog nothing, an unknown UID is asked again', async () => {
    const cached: WadoDeps = { ...deps, instanceCache: new ResearchInstanceCache(60_000) };
    const before = catalog.queries;
    await retrieve(cached, request({ resource: 'metadata' }));
    await retrieve(cached, request({ resource: 'metadata' }));
    expect(catalog.queries).toBe(before + 1);
    await codeOfCall(() => retrieve(cached, request({ resource: 'metadata', scope: { study: '2.25.404' } })));
    await codeOfCall(() => retrieve(cached, request({ resource: 'metadata', scope: { study: '2.25.404' } })));
    expect(catalog.queries).toBe(before + 3);
  });

  test('given a copy gone from storage, then its status before any byte is sent', async () => {
    const research = deps.research as MemoryResearchStore;
    const saved = research.blobs.get(`${STUDY}/${SERIES}/native.dcm`)!;
    research.blobs.delete(`${STUDY}/${SERIES}/native.dcm`);
    try {
      expect(await codeOfCall(() => retrieve(deps, request({ resource: 'instances' })))).toBe(ErrorCodes.NOT_FOUND);
    } finally {
      research.blobs.set(`${STUDY}/${SERIES}/native.dcm`, saved);
    }
  });
});
