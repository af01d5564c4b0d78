import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { ctSliceBytes, ENHANCED_CT_IMAGE_STORAGE, FRAME_BYTES, mulberry32, multiFrameHeader, writeCtSeries, writeMultiFrame } from '../../../bench/generate';
import { BENCH_DEID_KEY, runCore, runHeaderDcmjs, runNaiveDcmjs } from '../../../bench/modes';
import { moduleOf, summarise } from '../../../bench/profileSummary';
import { classifyBlobRequest, classifyCosmosRequest, createRequestCounter } from '../../../bench/requestCounter';
import { medianFloor } from '../../../bench/stackScenario';
import { floorRunsLabel, formatTable, modeResult, percentile, ratio } from '../../../bench/stats';
import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';

const MF_NUMBER_OF_FRAMES = 0x00280008;

describe('bench generator', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-bench-test-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('given a seed, then the same sequence every time, and another seed gives another', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const c = mulberry32(43);
    const first = [a(), a(), a()];
    expect([b(), b(), b()]).toEqual(first);
    expect([c(), c(), c()]).not.toEqual(first);
  });

  it('given a CT slice, then it parses as 512x512 16-bit CT with 512 KB of pixel data', async () => {
    const bytes = ctSliceBytes({ seed: 1, study: 0, instance: 7 });
    const parsed = await parseDicomBuffer(bytes);
    expect(parsed.part10).toBe(true);
    expect(asciiValue(parsed.dataset.get(Tags.SOPClassUID))).toBe('1.2.840.10008.5.1.4.1.1.2');
    expect(asciiValue(parsed.dataset.get(0x00080060))).toBe('CT');
    expect(asciiValue(parsed.dataset.get(0x00100010))).toMatch(/^[A-Z]+\^[A-Z]+$/);
    expect(Buffer.from(parsed.dataset.get(0x00280010)?.value ?? []).readUInt16LE(0)).toBe(512);
    expect(parsed.pixelValue?.length).toBe(FRAME_BYTES);
  });

  it('given the same options, then byte-identical slices; another instance gets another SOP Instance UID', () => {
    const a = ctSliceBytes({ seed: 5, study: 1, instance: 2 });
    expect(ctSliceBytes({ seed: 5, study: 1, instance: 2 }).equals(a)).toBe(true);
    expect(ctSliceBytes({ seed: 5, study: 1, instance: 3 }).equals(a)).toBe(false);
  });

  it('given a series request, then the files are spread over the studies and their sizes add up', async () => {
    const set = writeCtSeries(path.join(dir, 'ct'), { seed: 3, count: 6, studies: 2 });
    expect(set.files).toHaveLength(6);
    expect(set.files.reduce((n, f) => n + fs.statSync(f).size, 0)).toBe(set.bytes);
    const studyOf = async (f: string) => asciiValue((await parseDicomBuffer(fs.readFileSync(f))).dataset.get(Tags.StudyInstanceUID));
    const studies = new Set(await Promise.all(set.files.map(studyOf)));
    expect(studies.size).toBe(2);
  });

  it('given a frame count, then the multi-frame file has that many frames and the size it reports', async () => {
    const file = path.join(dir, 'mf.dcm');
    const size = writeMultiFrame(file, { seed: 9, frames: 3 });
    expect(fs.statSync(file).size).toBe(size);
    const parsed = await parseDicomBuffer(fs.readFileSync(file));
    expect(asciiValue(parsed.dataset.get(Tags.SOPClassUID))).toBe(ENHANCED_CT_IMAGE_STORAGE);
    expect(asciiValue(parsed.dataset.get(MF_NUMBER_OF_FRAMES))).toBe('3');
    expect(parsed.dataset.get(0x52009230)?.items).toHaveLength(3);
    expect(parsed.pixelValue?.length).toBe(3 * FRAME_BYTES);
  });

  it('given 400 frames, then the header stays small next to the ~200 MB of pixel data', () => {
    expect(multiFrameHeader(1, 400).length).toBeLessThan(256 * 1024);
  });
});

describe('bench core', () => {
  /** The de-identified output of one file, computed in memory from the whole file. */
  async function inMemoryOutput(file: string): Promise<Buffer> {
    const buf = fs.readFileSync(file);
    const prepared = await prepareDeidentifiedInstance(bufferReader(buf), {
      deid: { profile: defaultProfile(), key: BENCH_DEID_KEY, keyId: 'bench' },
      maxHeaderBytes: 64 * 1024 * 1024,
      totalSize: buf.length,
      burnedIn: { mode: 'allow' },
    });
    const chunks: Uint8Array[] = [];
    for await (const chunk of prepared.output()) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  it('given small and multi-chunk files, then every output equals the in-memory pipeline output, read buffers reused or not', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-bench-core-'));
    try {
      const ct = writeCtSeries(path.join(dir, 'ct'), { seed: 5, count: 6, studies: 2 });
      // 30 frames: 15 MB, several 4 MiB read chunks, the last one partial.
      const mfA = path.join(dir, 'mf-a.dcm');
      const mfB = path.join(dir, 'mf-b.dcm');
      writeMultiFrame(mfA, { seed: 11, frames: 30 });
      writeMultiFrame(mfB, { seed: 12, frames: 17 });
      const files = [...ct.files, mfA, mfB, mfA];
      const outDir = path.join(dir, 'out');
      fs.mkdirSync(outDir);
      const report = await runCore({ files, outDir, manifest: true });
      expect(report.files).toBe(files.length);
      const places = report.outputs ?? [];
      expect(places).toHaveLength(files.length);
      // The slices' outputs are joined in one file, and it holds nothing else; each multi-frame
      // file's output is a file of its own; the warm-up's files are gone.
      const slices = places.slice(0, ct.files.length);
      const joinedFile = slices[0]?.file ?? '';
      expect(slices.every((p) => p.file === joinedFile)).toBe(true);
      expect(slices.reduce((n, p) => n + p.length, 0)).toBe(fs.statSync(joinedFile).size);
      expect(new Set(places.slice(ct.files.length).map((p) => p.file)).size).toBe(3);
      expect(fs.readdirSync(outDir)).toHaveLength(1 + 3);
      let bytesOut = 0;
      for (const [i, place] of places.entries()) {
        const whole = fs.readFileSync(place.file);
        const got = whole.subarray(place.offset, place.offset + place.length);
        bytesOut += got.length;
        expect(got.equals(await inMemoryOutput(files[i] as string))).toBe(true);
      }
      expect(report.bytesOut).toBe(bytesOut);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // The core warms its large-file path with five 10.5 MB multi-frame files first.
  }, 60_000);

  it('given slices, then the naive dcmjs baseline joins its outputs as the core does, each a DICOM file with the name and ID blanked', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-bench-naive-'));
    try {
      const ct = writeCtSeries(path.join(dir, 'ct'), { seed: 6, count: 3, studies: 1 });
      const outDir = path.join(dir, 'out');
      fs.mkdirSync(outDir);
      // The sources have a name and an ID to blank.
      const source = await parseDicomBuffer(fs.readFileSync(ct.files[0] as string));
      expect(asciiValue(source.dataset.get(0x00100010))).toBeTruthy();
      expect(asciiValue(source.dataset.get(0x00100020))).toBeTruthy();
      const report = await runNaiveDcmjs({ files: ct.files, outDir, manifest: true });
      const places = report.outputs ?? [];
      expect(places).toHaveLength(3);
      expect(fs.readdirSync(outDir)).toHaveLength(1);
      for (const place of places) {
        const out = fs.readFileSync(place.file).subarray(place.offset, place.offset + place.length);
        const parsed = await parseDicomBuffer(out);
        expect(asciiValue(parsed.dataset.get(0x00100010)) ?? '').toBe('');
        expect(asciiValue(parsed.dataset.get(0x00100020)) ?? '').toBe('');
        expect(asciiValue(parsed.dataset.get(Tags.SOPClassUID))).toBeTruthy();
      }
      expect(report.bytesOut).toBe(fs.statSync(places[0]?.file ?? '').size);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
  it('given slices and a multi-frame file, then the dcmjs header baseline keeps every attribute but the blanked name and ID, and the pixel data byte for byte', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-bench-dcmjs-header-'));
    try {
      const ct = writeCtSeries(path.join(dir, 'ct'), { seed: 7, count: 2, studies: 1 });
      // 17 frames: 8.9 MB, past the one-read limit, so copied in chunks.
      const mf = path.join(dir, 'mf.dcm');
      writeMultiFrame(mf, { seed: 13, frames: 17 });
      const files = [...ct.files, mf];
      const outDir = path.join(dir, 'out');
      fs.mkdirSync(outDir);
      const report = await runHeaderDcmjs({ files, outDir, manifest: true });
      const places = report.outputs ?? [];
      expect(places).toHaveLength(3);
      expect(fs.readdirSync(outDir)).toHaveLength(2);
      for (const [i, place] of places.entries()) {
        const source = await parseDicomBuffer(fs.readFileSync(files[i] as string));
        const out = await parseDicomBuffer(fs.readFileSync(place.file).subarray(place.offset, place.offset + place.length));
        expect(asciiValue(source.dataset.get(0x00100010))).toBeTruthy();
        expect(asciiValue(out.dataset.get(0x00100010)) ?? '').toBe('');
        expect(asciiValue(out.dataset.get(0x00100020)) ?? '').toBe('');
        expect(out.pixelValue?.equals(source.pixelValue ?? Buffer.alloc(0))).toBe(true);
        for (const tag of source.dataset.keys()) if (tag !== 0x00100010 && tag !== 0x00100020) expect(out.dataset.has(tag)).toBe(true);
        expect(asciiValue(out.dataset.get(Tags.SOPInstanceUID))).toBe(asciiValue(source.dataset.get(Tags.SOPInstanceUID)));
      }
      expect(report.bytesOut).toBe(places.reduce((n, p) => n + p.length, 0));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('bench arithmetic', () => {
  it('given 100 values, then nearest-rank percentiles pick observed values', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 95)).toBe(95);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
  });

  it('given no values or an out-of-range p, then percentile throws', () => {
    expect(() => percentile([], 50)).toThrow('no values');
    expect(() => percentile([1], 101)).toThrow('0..100');
  });

  it('given a missing side or a zero baseline, then the ratio is null', () => {
    expect(ratio(50, 200)).toBe(0.25);
    expect(ratio(null, 200)).toBeNull();
    expect(ratio(50, undefined)).toBeNull();
    expect(ratio(50, 0)).toBeNull();
  });

  it('given bytes, files, seconds and KiB, then MB/s, files/s and MiB', () => {
    expect(modeResult(200e6, 2, 0.5, 2048)).toEqual({ seconds: 0.5, MBps: 400, filesPerSecond: 4, peakRssMB: 2 });
  });

  it('given rows, then aligned columns', () => {
    expect(formatTable([['a', 'bb'], ['ccc', 'd']])).toBe('a    bb\nccc   d');
  });
});

describe('bench request classification', () => {
  it('given blob REST calls, then Azure billing classes and what each does', () => {
    expect(classifyBlobRequest('GET', '/devstoreaccount1/c/b.dcm?timeout=60')).toEqual({ operation: 'GetBlob', cls: 'read', kind: 'read' });
    expect(classifyBlobRequest('HEAD', '/devstoreaccount1/c/b.dcm')).toEqual({ operation: 'GetBlobProperties', cls: 'other', kind: 'head' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c/b.dcm?comp=block&blockid=x')).toEqual({ operation: 'PutBlock', cls: 'write', kind: 'write' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c/b.dcm?comp=blocklist')).toEqual({ operation: 'PutBlockList', cls: 'write', kind: 'write' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c/b.dcm')).toEqual({ operation: 'PutBlob', cls: 'write', kind: 'write' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c/b.dcm?comp=metadata')).toEqual({ operation: 'SetBlobMetadata', cls: 'other', kind: 'properties' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c/b.dcm?comp=properties')).toEqual({ operation: 'SetBlobProperties', cls: 'other', kind: 'properties' });
    expect(classifyBlobRequest('GET', '/devstoreaccount1/c/b.dcm?comp=tags')).toEqual({ operation: 'GetBlobTags', cls: 'other', kind: 'tags' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c/b.dcm?comp=tags')).toEqual({ operation: 'SetBlobTags', cls: 'other', kind: 'tags' });
    expect(classifyBlobRequest('GET', '/devstoreaccount1/c?restype=container&comp=list&prefix=a')).toEqual({ operation: 'ListBlobs', cls: 'write', kind: 'list' });
    expect(classifyBlobRequest('PUT', '/devstoreaccount1/c?restype=container')).toEqual({ operation: 'CreateContainer', cls: 'write', kind: 'container' });
    expect(classifyBlobRequest('DELETE', '/devstoreaccount1/c/b.dcm')).toEqual({ operation: 'DeleteBlob', cls: 'delete', kind: 'delete' });
  });

  it('given Cosmos REST calls, then point reads, creates, upserts, replaces, patches, queries, query plans, batches and metadata', () => {
    const headers = (h: Record<string, string> = {}) => (name: string) => h[name];
    const docs = '/dbs/vna/colls/research-catalog/docs';
    expect(classifyCosmosRequest('GET', '/dbs/vna/colls/ingestions/docs/abc', headers())).toEqual({ container: 'ingestions', cls: 'read', kind: 'pointRead' });
    expect(classifyCosmosRequest('POST', '/dbs/vna/colls/ingestions/docs', headers())).toEqual({ container: 'ingestions', cls: 'write', kind: 'create' });
    expect(classifyCosmosRequest('POST', docs, headers({ 'x-ms-documentdb-is-upsert': 'True' }))).toEqual({ container: 'research-catalog', cls: 'write', kind: 'upsert' });
    expect(classifyCosmosRequest('PUT', `${docs}/x`, headers())).toEqual({ container: 'research-catalog', cls: 'write', kind: 'replace' });
    expect(classifyCosmosRequest('PATCH', `${docs}/x`, headers()).kind).toBe('patch');
    expect(classifyCosmosRequest('DELETE', `${docs}/x`, headers()).kind).toBe('delete');
    expect(classifyCosmosRequest('POST', docs, headers({ 'x-ms-documentdb-isquery': 'true' }))).toEqual({ container: 'research-catalog', cls: 'query', kind: 'query' });
    expect(classifyCosmosRequest('POST', docs, headers({ 'x-ms-cosmos-is-query-plan-request': 'True' })).kind).toBe('queryPlan');
    expect(classifyCosmosRequest('POST', docs, headers({ 'x-ms-cosmos-is-batch-request': 'True' })).kind).toBe('batch');
    expect(classifyCosmosRequest('GET', docs, headers()).kind).toBe('readFeed');
    expect(classifyCosmosRequest('GET', '/dbs/vna/colls/research-catalog', headers())).toEqual({ container: 'research-catalog', cls: 'metadata', kind: 'metadata' });
  });
});

describe('bench request counter', () => {
  const servers: http.Server[] = [];
  const listen = async (): Promise<number> => {
    const server = http.createServer((req, res) => req.resume().on('end', () => res.end('{}')));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  };
  const send = (port: number, method: string, path: string, headers: Record<string, string> = {}) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => res.resume().on('end', resolve));
      req.on('error', reject);
      req.end();
    });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('given responses from the watched ports, then the snapshot counts them by kind, and a reset forgets those not yet read', async () => {
    const [blob, cosmos, other] = [await listen(), await listen(), await listen()];
    const counter = createRequestCounter();
    try {
      counter.watch({ blob, cosmos });
      await send(blob, 'GET', '/devstoreaccount1/c/a.dcm');
      await send(blob, 'PUT', '/devstoreaccount1/c/b.dcm');
      await send(cosmos, 'POST', '/dbs/vna/colls/research-catalog/docs', { 'x-ms-documentdb-isquery': 'True' });
      await send(cosmos, 'POST', '/dbs/vna/colls/research-catalog/docs', { 'x-ms-cosmos-is-query-plan-request': 'True' });
      await send(cosmos, 'POST', '/dbs/vna/colls/ingestions/docs');
      await send(other, 'GET', '/devstoreaccount1/c/a.dcm');
      const first = counter.snapshot();
      expect(first.blobOperations).toEqual({ GetBlob: 1, PutBlob: 1 });
      expect(first.cosmosContainerKinds).toEqual({ 'research-catalog query': 1, 'research-catalog queryPlan': 1, 'ingestions create': 1 });
      // Counts add up across snapshots until a reset.
      await send(blob, 'GET', '/devstoreaccount1/c/a.dcm');
      expect(counter.snapshot().blobOperations).toEqual({ GetBlob: 2, PutBlob: 1 });
      await send(blob, 'GET', '/devstoreaccount1/c/a.dcm');
      counter.reset();
      expect(counter.snapshot().blobOperations).toEqual({});
    } finally {
      counter.dispose();
    }
  });
});

describe('bench profile summary', () => {
  it('given script URLs, then npm packages (scoped too), project folders, Node internals and V8 pseudo-frames', () => {
    expect(moduleOf('file:///app/node_modules/@azure/cosmos/dist/commonjs/request/request.js', 'f')).toBe('@azure/cosmos');
    expect(moduleOf('file:///app/node_modules/chrono-node/dist/cjs/chrono.js', 'f')).toBe('chrono-node');
    expect(moduleOf('file:///app/dist/shared/dicom/parser.js', 'f')).toBe('shared/dicom');
    expect(moduleOf('file:///app/dist/local/host.js', 'f')).toBe('local');
    expect(moduleOf('node:internal/streams/writable', 'f')).toBe('node internals');
    expect(moduleOf('', '(garbage collector)')).toBe('(garbage collector)');
    expect(moduleOf('', 'writev')).toBe('(native)');
  });

  it('given samples, then self time by module and function, inclusive time by module, idle left out', () => {
    const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url, lineNumber: 0 }, children });
    const profile = {
      nodes: [
        frame(1, '(root)', '', [2, 4, 5]),
        frame(2, 'ingest', 'file:///app/dist/shared/ingest/ingestSourceFile.js', [3]),
        frame(3, 'httpRequest', 'file:///app/node_modules/@azure/cosmos/dist/r.js'),
        frame(4, '(garbage collector)', ''),
        frame(5, '(idle)', ''),
      ],
      startTime: 0,
      endTime: 10_000,
      // Each sample's time is the delta to the next one (ms * 1000).
      samples: [3, 3, 2, 4, 5, 3],
      timeDeltas: [0, 1000, 1000, 2000, 1000, 5000],
    };
    const summary = summarise(profile);
    // Samples: cosmos 1 + 1 ms (the last sample has no next delta), ingest 2 ms, GC 1 ms, idle 5 ms left out.
    expect(summary.totalMs).toBe(5);
    expect(summary.modules.map((m) => [m.name, m.ms])).toEqual([['@azure/cosmos', 2], ['shared/ingest', 2], ['(garbage collector)', 1]]);
    expect(summary.inclusiveModules.find((m) => m.name === 'shared/ingest')?.ms).toBe(4);
    expect(summary.functions[0]?.name).toMatch(/^(httpRequest|ingest) /);
  });
});

describe('the storage floor of the stack bench', () => {
  it('given three floor runs, then the floor is the run with the median rate, its CPU with it, and every run\'s rate is kept', () => {
    const run = (instancesPerSecond: number, azurite: number) => ({ instances: 500, instancesPerSecond, cpuMsPerInstance: { azurite, client: 6 } });
    expect(medianFloor([run(88, 12), run(129, 8), run(104, 10)])).toEqual({ ...run(104, 10), runRates: [88, 129, 104], runsBeforeBurst: 3 });
    expect(medianFloor([run(90, 11)])).toEqual({ ...run(90, 11), runRates: [90], runsBeforeBurst: 1 });
    expect(medianFloor([])).toBeNull();
  });

  it('given three runs before the burst and two after, then the median is taken of all five and the table tells the two groups apart', () => {
    const run = (instancesPerSecond: number) => ({ instances: 500, instancesPerSecond, cpuMsPerInstance: { azurite: 10, client: 6 } });
    // The machine slowed down during the bench: the runs after the burst pull the median down.
    const floor = medianFloor([run(99), run(97), run(110), run(70), run(68)], 3);
    expect(floor).toEqual({ ...run(97), runRates: [99, 97, 110, 70, 68], runsBeforeBurst: 3 });
    expect(floorRunsLabel(floor as NonNullable<typeof floor>)).toBe('99, 97, 110 before the burst, 70, 68 after');
    expect(floorRunsLabel({ runRates: [90], runsBeforeBurst: 1 })).toBe('90 before the burst');
    expect(floorRunsLabel({})).toBe('one run');
  });
});
