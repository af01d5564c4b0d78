/**
 * WADO-RS end to end on the running stack (globalSetup): the bundled fixtures are uploaded,
 * ingested as in Azure, and every research instance is retrieved through the local function
 * host with the Research.Read token. Bytes are compared with the research blobs read straight
 * from Azurite; frames with what DCMTK's dcmdump (+W, Debian package dcmtk) writes out of the
 * research copy on its own; metadata is scanned for the sources' identifying values.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { Container } from '@azure/cosmos';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument, InstanceDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { asciiValue, DicomDataset } from '../../shared/dicom/dataset';
import type { DicomJson } from '../../shared/dicom/json';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import { authHeader, hostLog, testStack, waitForEvents } from './stackEnv';

const FIXTURES = join(__dirname, '..', 'fixtures', 'dicom');
const PREFIX = `wado-${randomUUID()}`;
const NATIVE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2']);

function fixtureFiles(dir = FIXTURES): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return fixtureFiles(p);
    return /\.(tsv|md)$/.test(name) ? [] : [p];
  });
}

/** The parts of a multipart/related body: headers (lower-case names) and bytes. */
function multipartParts(contentType: string, body: Buffer): { headers: Record<string, string>; body: Buffer }[] {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) throw new Error(`no boundary in ${contentType}`);
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { headers: Record<string, string>; body: Buffer }[] = [];
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', start);
    const headers: Record<string, string> = {};
    for (const line of body.subarray(start + 2, headerEnd).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) });
    at = next + 2;
  }
  return parts;
}

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${testStack().hostUrl}/api/dicomweb${path}`, { headers: { ...authHeader('research'), ...headers } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** The frames of a research copy as dcmdump +W writes its pixel data: one raw file (native) or one per item (encapsulated). */
function framesByDcmtk(copy: Buffer, frameCount: number, frameLength: number | undefined): Buffer[] | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'wado-dcmtk-'));
  try {
    const file = join(dir, 'copy.dcm');
    writeFileSync(file, copy);
    execFileSync('dcmdump', ['-q', '+W', dir, file], { stdio: ['ignore', 'ignore', 'ignore'] });
    const items = readdirSync(dir).filter((n) => n.endsWith('.raw')).sort((a, b) => Number(a.split('.').at(-2)) - Number(b.split('.').at(-2)));
    const data = items.map((n) => readFileSync(join(dir, n)));
    if (frameLength !== undefined) {
      const all = data[0];
      if (!all) return undefined;
      return Array.from({ length: frameCount }, (_, i) => all.subarray(i * frameLength, (i + 1) * frameLength));
    }
    const fragments = data.slice(1); // item 0 is the basic offset table
    if (frameCount === 1) return [Buffer.concat(fragments)];
    return fragments.length === frameCount ? fragments : undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Number of Frames as dcmtk reads it: the leading digits, so that an invalid IS such as "1A" (in
 * pydicom's badVR sample, which shares its SOP Instance UID with the rtdose samples) counts 1;
 * 1 when absent, empty or without digits.
 */
function numberOfFrames(ds: DicomDataset): number {
  const n = /^\s*\+?(\d+)/.exec(asciiValue(ds.get(Tags.NumberOfFrames)) ?? '');
  return n && Number(n[1]) > 0 ? Number(n[1]) : 1;
}

/** A US value. */
function intOf(ds: DicomDataset, tag: number, le = true): number | undefined {
  const v = ds.get(tag)?.value;
  if (!v) return undefined;
  return le ? Buffer.from(v).readUInt16LE(0) : Buffer.from(v).readUInt16BE(0);
}

let research: ContainerClient;
let catalog: Container;
const sources = new Map<string, string>();
/** The source blob names of each research SOP instance UID. */
const sourcesOf = new Map<string, string[]>();
let instances: InstanceDocument[] = [];

beforeAll(async () => {
  const stack = testStack();
  const settings = loadSettings(stack.env);
  const blobs = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!);
  const landing = blobs.getContainerClient(settings.sourceContainers[0]!);
  research = blobs.getContainerClient(settings.researchContainer);
  const db = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase);
  const index = db.container(settings.indexContainer);
  catalog = db.container(settings.researchCatalogContainer);

  for (const f of fixtureFiles()) sources.set(`${PREFIX}/${relative(FIXTURES, f)}`, f);
  const queue = [...sources.entries()];
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await landing.getBlockBlobClient(next[0]).uploadData(readFileSync(next[1]));
  }));
  await waitForEvents(240_000);

  const { resources: docs } = await index.items
    .query<IngestionDocument>({ query: "SELECT * FROM c WHERE STARTSWITH(c.blobName, @p) AND c.status = 'cataloged'", parameters: [{ name: '@p', value: `${PREFIX}/` }] })
    .fetchAll();
  const seen = new Set<string>();
  for (const d of docs) {
    const r = d.research!;
    sourcesOf.set(r.sopInstanceUid, [...(sourcesOf.get(r.sopInstanceUid) ?? []), d.blobName]);
    if (seen.has(r.sopInstanceUid)) continue;
    seen.add(r.sopInstanceUid);
    const { resource } = await catalog.item(`instance:${r.sopInstanceUid}`, r.studyInstanceUid).read<InstanceDocument>();
    if (resource) instances.push(resource);
  }
  instances = instances.sort((a, b) => a.sopInstanceUid.localeCompare(b.sopInstanceUid));
}, 300_000);

/** Asserts the status; a failure shows the error body the host answered (it names the code and the cause). */
function expectStatus(res: { status: number; body: Buffer }, want: number, what = ''): void {
  const shown = (r: { status: number; body: Buffer }) => (r.status === want ? String(want) : `${r.status} ${what} ${r.body.subarray(0, 400).toString('utf8')}`);
  expect(shown(res)).toBe(String(want));
}

const path = (i: InstanceDocument) => `/studies/${i.studyInstanceUid}/series/${i.seriesInstanceUid}/instances/${i.sopInstanceUid}`;
const blobOf = (i: InstanceDocument) => research.getBlobClient(i.researchBlob).downloadToBuffer();

describe('WADO-RS over the research copies of the bundled samples', () => {
  test('given every research instance retrieved alone, then each answer is one part equal to its research blob', async () => {
    expect(instances.length).toBeGreaterThan(30);
    let equal = 0;
    const syntaxes = new Map<string, number>();
    for (const i of instances) {
      const res = await get(path(i));
      expectStatus(res, 200);
      const parts = multipartParts(res.headers.get('content-type')!, res.body);
      expect(parts).toHaveLength(1);
      expect(parts[0]!.headers['content-type']).toBe(`application/dicom; transfer-syntax=${i.transferSyntaxUid}`);
      if (parts[0]!.body.equals(await blobOf(i))) equal++;
      syntaxes.set(i.transferSyntaxUid, (syntaxes.get(i.transferSyntaxUid) ?? 0) + 1);
    }
    console.log(`WADO-RS instance retrieve: ${equal} of ${instances.length} research instances byte-equal to their blobs; by transfer syntax ${JSON.stringify(Object.fromEntries(syntaxes))}`);
    expect(equal).toBe(instances.length);
  });

  test('given Accept application/dicom on an instance, then one bare body equal to the blob', async () => {
    const i = instances[0]!;
    const res = await get(path(i), { accept: 'application/dicom; transfer-syntax=*' });
    expectStatus(res, 200);
    expect(res.headers.get('content-type')).toBe(`application/dicom; transfer-syntax=${i.transferSyntaxUid}`);
    expect(res.body.equals(await blobOf(i))).toBe(true);
  });

  test('given every study and series retrieved, then each answers all its research instances, byte-equal', async () => {
    const studies = new Map<string, InstanceDocument[]>();
    const series = new Map<string, InstanceDocument[]>();
    for (const i of instances) {
      studies.set(i.studyInstanceUid, [...(studies.get(i.studyInstanceUid) ?? []), i]);
      series.set(`${i.studyInstanceUid}/series/${i.seriesInstanceUid}`, [...(series.get(`${i.studyInstanceUid}/series/${i.seriesInstanceUid}`) ?? []), i]);
    }
    let parts = 0;
    for (const [where, expected] of [...[...studies].map(([s, e]) => [s, e] as const), ...[...series].map(([s, e]) => [s, e] as const)]) {
      const { resources: all } = await catalog.items
        .query<InstanceDocument>({ query: "SELECT * FROM c WHERE c.type = 'instance' AND c.studyInstanceUid = @s", parameters: [{ name: '@s', value: expected[0]!.studyInstanceUid }] })
        .fetchAll();
      const inScope = where.includes('/series/') ? all.filter((d) => d.seriesInstanceUid === expected[0]!.seriesInstanceUid) : all;
      const res = await get(`/studies/${where}`, { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' });
      expectStatus(res, 200);
      const got = multipartParts(res.headers.get('content-type')!, res.body);
      expect(got).toHaveLength(inScope.length);
      const byLocation = new Map(got.map((p) => [p.headers['content-location']!.split('/instances/')[1], p.body]));
      for (const d of inScope) expect(byLocation.get(d.sopInstanceUid)?.equals(await research.getBlobClient(d.researchBlob).downloadToBuffer())).toBe(true);
      parts += got.length;
    }
    console.log(`WADO-RS study/series retrieve: ${studies.size} studies and ${series.size} series, ${parts} parts, all byte-equal`);
  });

  test('given metadata at each level, then DICOM JSON of the copies, with a PixelData BulkDataURI the bulkdata route answers, also by Range', async () => {
    let withPixels = 0;
    for (const i of instances) {
      const res = await get(`${path(i)}/metadata`);
      expectStatus(res, 200);
      expect(res.headers.get('content-type')).toContain('application/dicom+json');
      const [json] = JSON.parse(res.body.toString('utf8')) as DicomJson[];
      expect(json!['00080018']!.Value).toEqual([i.sopInstanceUid]);
      expect(json!['0020000D']!.Value).toEqual([i.studyInstanceUid]);
      const parsed = await parseDicomBuffer(await blobOf(i));
      const pixel = json!['7FE00010'];
      if (!parsed.pixelValue || parsed.pixelData?.tag !== Tags.PixelData) continue;
      expect(pixel?.BulkDataURI).toBeDefined();
      const uri = new URL(pixel!.BulkDataURI!);
      const whole = await fetch(uri, { headers: authHeader('research') });
      expect(whole.status).toBe(200);
      expect(Buffer.from(await whole.arrayBuffer()).equals(parsed.pixelValue)).toBe(true);
      const part = await fetch(uri, { headers: { ...authHeader('research'), range: 'bytes=2-101' } });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes 2-${Math.min(101, parsed.pixelValue.length - 1)}/${parsed.pixelValue.length}`);
      expect(Buffer.from(await part.arrayBuffer()).equals(parsed.pixelValue.subarray(2, 102))).toBe(true);
      withPixels++;
    }
    const study = instances[0]!;
    const all = await get(`/studies/${study.studyInstanceUid}/metadata`);
    const count = instances.filter((i) => i.studyInstanceUid === study.studyInstanceUid).length;
    expect((JSON.parse(all.body.toString('utf8')) as DicomJson[]).length).toBeGreaterThanOrEqual(count);
    const series = await get(`/studies/${study.studyInstanceUid}/series/${study.seriesInstanceUid}/metadata`);
    expectStatus(series, 200);
    console.log(`WADO-RS metadata: ${instances.length} instances, ${withPixels} PixelData BulkDataURIs answered whole and by Range`);
    expect(withPixels).toBeGreaterThan(20);
  });

  test('given every frame of every instance with pixel data, then each equals the frame dcmdump writes out of the copy', async () => {
    const kinds = new Map<string, number>();
    let frames = 0;
    let instancesCompared = 0;
    for (const i of instances) {
      const copy = await blobOf(i);
      const parsed = await parseDicomBuffer(copy);
      if (!parsed.pixelData || parsed.pixelData.tag !== Tags.PixelData) continue;
      // dcmdump writes big endian OW data in its own byte order: those frames are not compared.
      if (i.transferSyntaxUid === '1.2.840.10008.1.2.2') continue;
      const ds = parsed.dataset;
      const count = numberOfFrames(ds);
      const native = NATIVE.has(i.transferSyntaxUid);
      const bits = (intOf(ds, Tags.Rows)! * intOf(ds, Tags.Columns)! * (intOf(ds, Tags.SamplesPerPixel) ?? 1) * intOf(ds, Tags.BitsAllocated)!);
      if (native && bits % 8 !== 0) continue;
      const expected = framesByDcmtk(copy, count, native ? bits / 8 : undefined);
      if (!expected) continue;
      const list = Array.from({ length: count }, (_, k) => k + 1).join(',');
      const res = await get(`${path(i)}/frames/${list}`, { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' });
      expectStatus(res, 200, `(frames 1-${count} of ${i.transferSyntaxUid}, index ${i.frames?.kind ?? 'none'})`);
      const parts = multipartParts(res.headers.get('content-type')!, res.body);
      expect(parts).toHaveLength(count);
      parts.forEach((p, k) => {
        expect(p.headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${i.transferSyntaxUid}`);
        expect(p.body.equals(expected[k]!)).toBe(true);
      });
      // The stored syntax's own media type, as asked for by a client that knows it.
      const natural = await get(`${path(i)}/frames/1`);
      expectStatus(natural, 200);
      frames += count;
      instancesCompared++;
      const kind = `${native ? 'native' : natural.headers.get('content-type')!.match(/type="([^"]+)"/)![1]}${count > 1 ? ' multi-frame' : ''}`;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    console.log(`WADO-RS frames: ${frames} frames of ${instancesCompared} instances equal to dcmdump's; instances by kind ${JSON.stringify(Object.fromEntries(kinds))}`);
    expect([...kinds.keys()].some((k) => k.startsWith('native'))).toBe(true);
    for (const type of ['image/jpeg', 'image/jls', 'image/jp2', 'image/dicom-rle']) expect([...kinds.keys()].some((k) => k.startsWith(type))).toBe(true);
    expect([...kinds.keys()].some((k) => k.endsWith('multi-frame'))).toBe(true);
  });

  test('given bad requests, then 404 for unknown UIDs and frames, 400 naming the bad parameter, 406 for what is not stored, 401 and 403 without the role', async () => {
    const native = instances.find((i) => NATIVE.has(i.transferSyntaxUid))!;
    expect((await get('/studies/1.2.3.4.5.6.7.8.9')).status).toBe(404);
    expect((await get(`/studies/${native.studyInstanceUid}/series/1.2.3.999/metadata`)).status).toBe(404);
    const badUid = await get('/studies/not-a-uid');
    expect(badUid.status).toBe(400);
    expect(badUid.body.toString()).toContain('study');
    const badFrames = await get(`${path(native)}/frames/1,x`);
    expect(badFrames.status).toBe(400);
    expect(badFrames.body.toString()).toContain('frames');
    expect((await get(`${path(native)}/frames/100000`)).status).toBe(404);
    expect((await get(path(native), { accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50' })).status).toBe(406);
    expect((await get(path(native), { accept: 'text/html' })).status).toBe(406);
    expect((await get(`${path(native)}/metadata`, { accept: 'application/dicom' })).status).toBe(406);
    expect((await get(`${path(native)}/frames/1`, { accept: 'multipart/related; type="image/jpeg"' })).status).toBe(406);
    expect((await get(`${path(native)}/bulkdata/7FE00010`, { range: 'bytes=999999999-' })).status).toBe(416);
    expect((await fetch(`${testStack().hostUrl}/api/dicomweb${path(native)}`)).status).toBe(401);
    expect((await fetch(`${testStack().hostUrl}/api/dicomweb${path(native)}`, { headers: authHeader('operations') })).status).toBe(403);
  });

  test('given every metadata answer and the host log, then no identifying value of any source appears', async () => {
    // As in pipeline.test.ts: placeholders that identify no one; each answer is checked against its own
    // sources (a description may rightly hold a word that is another file's patient name), the log against all.
    const generic = /^(anonymous|anonymized|anonymised|unknown|none|test|patient|name|first|last|phantom|[0-9])$|^(.)\2+$/i;
    const identifying = async (file: string): Promise<string[]> => {
      let ds: DicomDataset;
      try {
        ds = (await parseDicomBuffer(readFileSync(file))).dataset;
      } catch {
        return [];
      }
      const out = new Set<string>();
      for (const tag of [0x00100010, 0x00100020, 0x00100030, 0x00080050, 0x00080090, Tags.StudyInstanceUID, Tags.SeriesInstanceUID, Tags.SOPInstanceUID]) {
        const v = asciiValue(ds.get(tag));
        if (!v) continue;
        if (tag === 0x00100010 || tag === 0x00080090) for (const part of v.split(/[\^= ]/)) if (part.trim().length >= 4 && !generic.test(part.trim())) out.add(part.trim());
        if (v.length >= 6 && !/^\d{1,7}$/.test(v) && !generic.test(v)) out.add(v);
      }
      return [...out];
    };
    const leaks: string[] = [];
    const scan = (where: string, text: string, values: Iterable<string>) => {
      const lower = text.toLowerCase();
      for (const v of values) if (lower.includes(v.toLowerCase())) leaks.push(`${where}: a source value of ${v.length} characters${process.env.DEBUG_PHI ? ` ${v}` : ''}`);
    };
    const all = new Set<string>();
    for (const f of sources.values()) for (const v of await identifying(f)) all.add(v);
    let answers = 0;
    for (const i of instances) {
      const own = new Set<string>();
      for (const name of sourcesOf.get(i.sopInstanceUid) ?? []) for (const v of await identifying(sources.get(name)!)) own.add(v);
      scan(`metadata of ${i.sopInstanceUid}`, (await get(`${path(i)}/metadata`)).body.toString('utf8'), own);
      answers++;
    }
    scan('host log', hostLog(), all);
    console.log(`WADO-RS PHI scan: ${all.size} identifying values; ${answers} metadata answers checked against their own sources, the host log against all`);
    expect(all.size).toBeGreaterThan(20);
    expect(leaks).toEqual([]);
  });
});
