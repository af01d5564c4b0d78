/**
 * The pipeline end to end on the real local services that globalSetup started: Azurite
 * behind the event source, the Cosmos DB emulator server, the ANQ stand-ins with the snapshot
 * watcher's timer, and the local function host that loaded dist/functions. Every ingestion
 * test runs twice with the same assertions, once per source (sourceDrivers.ts): files uploaded
 * to the landing container with the storage SDK, and files written into the ANQ replication
 * target and snapshotted; events flow as in Azure.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { Container } from '@azure/cosmos';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { FRAME_BYTES, writeMultiFrame } from '../../bench/generate';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument, InstanceDocument, StudyDocument } from '../../shared/catalog/documents';
import { loadSettings, Settings } from '../../shared/config/settings';
import { asciiValue, DicomDataset } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import { OFF_THREAD_HASH_MIN_BYTES } from '../../shared/ingest/chunkHasher';
import { SOURCE_KINDS, SourceDriver, sourceDriver } from './sourceDrivers';
import { apiGet, hostLog, testStack } from './stackEnv';

const FIXTURES = join(__dirname, '..', 'fixtures', 'dicom');
/** A path segment that looks like a patient's name, as real archive paths often do. */
const PHI_PATH = 'site-7/Fictitious^Patientname 1931';

function fixtureFiles(dir = FIXTURES): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return fixtureFiles(p);
    return /\.(tsv|md)$/.test(name) ? [] : [p];
  });
}

function dcmdump(file: string): string | undefined {
  try {
    return execFileSync('dcmdump', ['-q', '-Un', '+L', file], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 * 1024 * 1024 });
  } catch {
    return undefined;
  }
}

/** One attribute's value as dcmdump prints it (the text between brackets), or undefined. */
function dumped(dump: string, tag: string): string | undefined {
  const line = dump.split('\n').find((l) => l.startsWith(`(${tag})`));
  // dcmdump shows attributes stored as UN in hex, without their meaning: nothing to compare.
  if (!line || / UN /.test(line.slice(11, 15))) return undefined;
  const m = /\[([^\]]*)\]/.exec(line);
  if (m) return m[1]!.trim();
  if (line.includes('(no value available)')) return '';
  const n = /^\([0-9a-f,]+\) [A-Z]{2} ([0-9.\\-]+)/.exec(line);
  return n?.[1];
}

let settings: Settings;
let research: ContainerClient;
let index: Container;
let catalog: Container;

async function allIndexDocs(): Promise<IngestionDocument[]> {
  return (await index.items.query<IngestionDocument>('SELECT * FROM c').fetchAll()).resources;
}

async function recordOf(url: string): Promise<IngestionDocument | undefined> {
  const { resources } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.sourceUrl = @u', parameters: [{ name: '@u', value: url }] }).fetchAll();
  return resources[0];
}

beforeAll(async () => {
  const stack = testStack();
  settings = loadSettings(stack.env);
  const blobs = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!);
  research = blobs.getContainerClient(settings.researchContainer);
  const db = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase);
  index = db.container(settings.indexContainer);
  catalog = db.container(settings.researchCatalogContainer);
});

describe.each(SOURCE_KINDS)('on the %s path', (kind) => {
  let driver: SourceDriver;

  async function indexDoc(name: string): Promise<IngestionDocument | undefined> {
    return recordOf(driver.sourceUrl(name));
  }

  async function upload(name: string, data: Buffer): Promise<void> {
    await driver.put(name, data);
  }

  beforeAll(() => {
    driver = sourceDriver(kind);
  });

  describe('every fixture through the running stack', () => {
    const files = fixtureFiles();
    const names = new Map<string, string>();
    /** Source URL → the name the fixture was given. */
    const named = new Map<string, string>();

    beforeAll(async () => {
      for (const f of files) names.set(`${PHI_PATH}/${relative(FIXTURES, f)}`, f);
      for (const name of names.keys()) named.set(driver.sourceUrl(name), name);
      const queue = [...names.entries()];
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await upload(next[0], readFileSync(next[1]));
      }));
      await driver.settle(240_000);
    }, 300_000);

    it('given every fixture uploaded, then each ends cataloged, failed with a code, or quarantined: none lost', async () => {
      const docs = await allIndexDocs();
      const byName = new Map(docs.filter((d) => named.has(d.sourceUrl)).map((d) => [named.get(d.sourceUrl)!, d]));
      const counts: Record<string, number> = {};
      for (const name of names.keys()) {
        const d = byName.get(name);
        expect(d).toBeDefined();
        expect(['cataloged', 'failed', 'quarantined']).toContain(d!.status);
        if (d!.status !== 'cataloged') {
          expect(d!.errorCode).toMatch(/^[A-Z_]+$/);
          expect(d!.errorMessage).toBeTruthy();
          expect(d!.quarantineBlob).toBeTruthy();
        }
        const key = d!.status === 'cataloged' ? 'cataloged' : `${d!.status}:${d!.errorCode}`;
        counts[key] = (counts[key] ?? 0) + 1;
      }
      console.log(`fixtures by outcome (${kind}): ${JSON.stringify(counts)}`);
      expect(counts.cataloged).toBeGreaterThan(names.size / 2);
      // Every failure was copied to quarantine, so nothing is lost.
      const quarantined = new Set<string>();
      for await (const b of BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!).getContainerClient(settings.quarantineContainer).listBlobsFlat()) quarantined.add(b.name);
      for (const d of docs.filter((x) => x.status !== 'cataloged' && named.has(x.sourceUrl))) expect(quarantined.has(d.quarantineBlob!)).toBe(true);
    });

    it('given cataloged instances, then Modality, SOP class, rows, columns and frames agree with dcmdump of the source, and dcmdump reads every research copy', async () => {
      const docs = (await allIndexDocs()).filter((d) => d.status === 'cataloged' && named.has(d.sourceUrl));
      const outDir = mkdtempSync(join(tmpdir(), 'vna-research-'));
      let checked = 0;
      for (const d of docs) {
        const source = names.get(named.get(d.sourceUrl)!)!;
        const dump = dcmdump(source);
        const r = d.research!;
        const { resource: inst } = await catalog.item(`instance:${r.sopInstanceUid}`, r.studyInstanceUid).read<InstanceDocument>();
        // The research side holds another file's copy of this SOP instance: nothing of this file to compare.
        if (!inst || inst.sourceRank !== d.sourceRank) continue;
        const first = (tag: string) => {
          const v = inst.dicom[tag]?.Value?.[0];
          return v === undefined || v === null ? undefined : String(v);
        };
        if (dump) {
          const agree = (ours: string | undefined, tag: string) => {
            const theirs = dumped(dump, tag);
            if (theirs !== undefined) expect({ tag, value: ours }).toEqual({ tag, value: theirs });
          };
          agree(first('00080060'), '0008,0060');
          agree(inst.sopClassUid, '0008,0016');
          agree(first('00280010'), '0028,0010');
          agree(first('00280011'), '0028,0011');
          const frames = dumped(dump, '0028,0008');
          if (frames !== undefined) expect(Number(first('00280008'))).toBe(Number(frames));
          const copy = join(outDir, `${checked}.dcm`);
          writeFileSync(copy, await research.getBlobClient(r.blob).downloadToBuffer());
          expect(dcmdump(copy)).toBeDefined();
          checked++;
        }
      }
      console.log(`metadata checked against dcmdump on ${checked} cataloged instances (${kind})`);
      expect(checked).toBeGreaterThan(50);
    });

    it('given the research side, then QIDO-RS lists exactly the cataloged studies', async () => {
      const studies = (await catalog.items.query<StudyDocument>("SELECT * FROM c WHERE c.type = 'study'").fetchAll()).resources;
      const res = await apiGet('/api/dicomweb/studies?limit=1000', 'research');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('application/dicom+json');
      const body = (await res.json()) as Record<string, { Value?: unknown[] }>[];
      expect(body.length).toBe(studies.length);
      const uids = new Set(body.map((s) => s['0020000D']?.Value?.[0]));
      const known = new Set(studies.map((s) => s.studyInstanceUid));
      expect({ missing: studies.filter((s) => !uids.has(s.studyInstanceUid)).map((s) => s.studyInstanceUid), extra: [...uids].filter((u) => !known.has(u as string)) }).toEqual({ missing: [], extra: [] });
    });

    it('finds no identifying value of any source in logs, telemetry, research documents, research blob names or de-identified files', async () => {
      // Placeholders and vocabulary that test files put where a name or ID would be: they
      // identify no one and occur in standard text (e.g. "Retain Patient Characteristics").
      const generic = /^(anonymous|anonymized|anonymised|unknown|none|test|patient|name|first|last|phantom|[0-9])$|^(.)\2+$/i;
      const identifying = (ds: DicomDataset): string[] => {
        const out = new Set<string>();
        const add = (x: string) => {
          if (!generic.test(x)) out.add(x);
        };
        for (const tag of [0x00100010, 0x00100020, 0x00100030, 0x00080050, 0x00080090, Tags.StudyInstanceUID, Tags.SeriesInstanceUID, Tags.SOPInstanceUID]) {
          const v = asciiValue(ds.get(tag));
          if (!v) continue;
          if (tag === 0x00100010 || tag === 0x00080090) for (const part of v.split(/[\^= ]/)) if (part.trim().length >= 4) add(part.trim());
          // Short IDs ("1", "123") occur everywhere by chance.
          if (v.length >= 6) add(v);
        }
        return [...out];
      };
      const leaks: string[] = [];
      const scan = (where: string, text: string, values: Iterable<string>) => {
        const lower = text.toLowerCase();
        for (const v of values) if (lower.includes(v.toLowerCase())) leaks.push(`${where}: a source value of ${v.length} characters${process.env.DEBUG_PHI ? ` ${v}` : ''}`);
      };

      // Every source's values against what is emitted for all of them: logs, telemetry, blob names.
      const all = new Set<string>(['Fictitious', 'Patientname', 'site-7']);
      const sources = new Map<string, DicomDataset>();
      for (const [name, f] of names) {
        try {
          const ds = (await parseDicomBuffer(readFileSync(f))).dataset;
          sources.set(driver.sourceUrl(name), ds);
          identifying(ds).forEach((v) => all.add(v));
        } catch {
          // unparseable sources have no attributes to leak
        }
      }
      const blobNames: string[] = [];
      for await (const b of research.listBlobsFlat()) blobNames.push(b.name);
      const telemetryFile = testStack().env.TELEMETRY_CAPTURE_FILE;
      const telemetry = telemetryFile ? readFileSync(telemetryFile, 'utf8') : '';
      expect(hostLog().length).toBeGreaterThan(0);
      expect(telemetry.length).toBeGreaterThan(0);
      scan('host log', hostLog(), all);
      scan('telemetry', telemetry, all);
      scan('research blob names', blobNames.join('\n'), all);

      // Each cataloged source's own values against its research document and de-identified copy
      // (descriptions may rightly hold a word that is another file's patient name).
      let copies = 0;
      for (const d of (await allIndexDocs()).filter((x) => x.status === 'cataloged' && sources.has(x.sourceUrl))) {
        // A short all-digit ID ("123456") coincides with counts such as a Series Number; the
        // gate and the independent check (phiIndependentCheck.test.ts) search those by attribute.
        const values = [...identifying(sources.get(d.sourceUrl)!), 'Fictitious', 'Patientname'].filter((v) => !/^\d{1,7}$/.test(v));
        const { resource: inst } = await catalog.item(`instance:${d.research!.sopInstanceUid}`, d.research!.studyInstanceUid).read<InstanceDocument>();
        if (!inst || inst.sourceRank !== d.sourceRank) continue;
        scan(`research document of ${d.research!.sopInstanceUid}`, JSON.stringify(inst), values);
        const bytes = await research.getBlobClient(d.research!.blob).downloadToBuffer();
        scan(`research copy ${d.research!.sopInstanceUid}`, bytes.toString('latin1'), values.filter((v) => v.length >= 6));
        copies++;
      }
      const researchDocs = JSON.stringify((await catalog.items.query("SELECT * FROM c WHERE c.type != 'instance'").fetchAll()).resources);
      scan('study and series documents', researchDocs, [...all].filter((v) => /^[0-9.]{10,}$/.test(v) || v.length >= 8));
      console.log(`PHI scan (${kind}): ${all.size} identifying values of ${sources.size} sources; ${copies} research copies and documents checked against their own source`);
      expect(leaks).toEqual([]);
    });
  });

  describe('a large source', () => {
    it('given a multi-frame file above the threaded-hash size, then it is cataloged with the SHA-256 of its bytes and its pixel data intact', async () => {
      const frames = 40;
      const file = join(mkdtempSync(join(tmpdir(), 'vna-large-')), 'mf.dcm');
      writeMultiFrame(file, { seed: 4242, frames });
      const data = readFileSync(file);
      expect(data.length).toBeGreaterThan(OFF_THREAD_HASH_MIN_BYTES);
      const name = `large/${randomUUID()}.dcm`;
      await driver.put(name, data, { blockSize: 4 * 1024 * 1024 });
      await driver.settle(120_000);
      const doc = await indexDoc(name);
      expect(doc?.status).toBe('cataloged');
      expect(doc?.sha256).toBe(createHash('sha256').update(data).digest('hex'));
      const copy = await research.getBlobClient(doc!.research!.blob).downloadToBuffer();
      const pixels = frames * FRAME_BYTES;
      expect(copy.subarray(copy.length - pixels).equals(data.subarray(data.length - pixels))).toBe(true);
    }, 180_000);
  });

  describe('sources the first request cannot read whole', () => {
    it('given an empty file, then it is recorded as failed with a code and quarantined, not retried', async () => {
      const name = `empty/${randomUUID()}.dcm`;
      await upload(name, Buffer.alloc(0));
      await driver.settle();
      const doc = await indexDoc(name);
      expect(doc?.status).toMatch(/^(failed|quarantined)$/);
      expect(doc?.errorCode).toMatch(/^DICOM_/);
      expect(doc?.attempts).toBe(1);
      expect(doc?.quarantineBlob).toBeTruthy();
    });
  });

  describe('at-least-once delivery', () => {
    const base = readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm'));

    /** A digit of the UIDs below that tells the two sources' instances apart. */
    const sourceDigit = () => (kind === 'blob' ? '1' : '2');

    async function variantOf(seriesSuffix: string, i: number): Promise<Buffer> {
      // Same study; series and SOP instance UIDs changed in place (same length), other ones on each source.
      const p = await parseDicomBuffer(base);
      const out = Buffer.from(base);
      const replace = (uid: string, next: string) => {
        const at = out.indexOf(Buffer.from(uid, 'latin1'), 132);
        out.write(next, at, 'latin1');
        const again = out.indexOf(Buffer.from(uid, 'latin1'), at + 1);
        if (again > 0) out.write(next, again, 'latin1');
      };
      const sop = asciiValue(p.dataset.get(Tags.SOPInstanceUID))!;
      const series = asciiValue(p.dataset.get(Tags.SeriesInstanceUID))!;
      replace(sop, `${sop.slice(0, sop.length - 5)}${sourceDigit()}${String(i).padStart(4, '0')}`);
      replace(series, `${series.slice(0, series.length - seriesSuffix.length - 1)}${sourceDigit()}${seriesSuffix}`);
      return out;
    }

    const webhook = (events: Record<string, unknown>[]) => driver.deliver(events);
    const created = (name: string) => driver.event('created', name);
    const deleted = (name: string) => driver.event('deleted', name);

    it('given a burst of 200 events for one study, then 200 instances, one study, no lost summary update', async () => {
      const names = Array.from({ length: 200 }, (_, i) => `burst/${i}.dcm`);
      const data = await Promise.all(names.map((_, i) => variantOf('9001', i)));
      await Promise.all(names.map((n, i) => upload(n, data[i]!)));
      await driver.settle(240_000);
      const docs = await Promise.all(names.map(indexDoc));
      expect(docs.every((d) => d?.status === 'cataloged')).toBe(true);
      const study = docs[0]!.research!.studyInstanceUid;
      const series = docs[0]!.research!.seriesInstanceUid;
      expect(new Set(docs.map((d) => d!.research!.sopInstanceUid)).size).toBe(200);
      const { resource: seriesDoc } = await catalog.item(`series:${series}`, study).read();
      expect(seriesDoc.numberOfSeriesRelatedInstances).toBe(200);
      const { resources: count } = await catalog.items.query({ query: "SELECT VALUE COUNT(1) FROM c WHERE c.type = 'instance' AND c.seriesInstanceUid = @s", parameters: [{ name: '@s', value: series }] }, { partitionKey: study }).fetchAll();
      expect(count[0]).toBe(200);
      const { resource: studyDoc } = await catalog.item(`study:${study}`, study).read<StudyDocument>();
      // The partition key is also in the WHERE clause: the local emulator server ignores the option.
      const inStudy = (type: string) => ({ query: 'SELECT VALUE COUNT(1) FROM c WHERE c.type = @t AND c.studyInstanceUid = @s', parameters: [{ name: '@t', value: type }, { name: '@s', value: study }] });
      const { resources: seriesInStudy } = await catalog.items.query(inStudy('series'), { partitionKey: study }).fetchAll();
      expect(studyDoc!.numberOfStudyRelatedSeries).toBe(seriesInStudy[0]);
      const { resources: instancesInStudy } = await catalog.items.query(inStudy('instance'), { partitionKey: study }).fetchAll();
      expect(studyDoc!.numberOfStudyRelatedInstances).toBe(instancesInStudy[0]);
    }, 300_000);

    it('given the same event delivered twice and a second event for the same blob, then one record and one instance', async () => {
      const name = `dup/${randomUUID()}.dcm`;
      await upload(name, await variantOf('9002', 1001));
      await driver.settle();
      const before = await indexDoc(name);
      const event = created(name);
      expect(await webhook([event])).toBe(200);
      expect(await webhook([event, created(name)])).toBe(200);
      const after = await indexDoc(name);
      expect(after?.status).toBe('cataloged');
      expect(after?.eTag).toBe(before?.eTag);
      expect(after?.attempts).toBe(before?.attempts);
      const { resources } = await catalog.items.query({ query: 'SELECT VALUE COUNT(1) FROM c WHERE c.sopInstanceUid = @s', parameters: [{ name: '@s', value: after!.research!.sopInstanceUid }] }).fetchAll();
      expect(resources[0]).toBe(1);
    });

    it('given a file overwritten with another instance, then the record follows the new ETag and the old research instance goes', async () => {
      const name = `overwrite/${randomUUID()}.dcm`;
      await upload(name, await variantOf('9003', 2001));
      await driver.settle();
      const first = await indexDoc(name);
      await upload(name, await variantOf('9003', 2002));
      await driver.settle();
      const second = await indexDoc(name);
      expect(second?.eTag).not.toBe(first?.eTag);
      expect(second?.research?.sopInstanceUid).not.toBe(first?.research?.sopInstanceUid);
      expect(await research.getBlobClient(first!.research!.blob).exists()).toBe(false);
      expect(await research.getBlobClient(second!.research!.blob).exists()).toBe(true);
    });

    it('given a deleted file, then the record says deleted and the research copy is removed', async () => {
      const name = `delete/${randomUUID()}.dcm`;
      await upload(name, await variantOf('9004', 3001));
      await driver.settle();
      const first = await indexDoc(name);
      await driver.remove(name);
      await driver.settle();
      const after = await indexDoc(name);
      expect(after?.status).toBe('deleted');
      expect(await research.getBlobClient(first!.research!.blob).exists()).toBe(false);
      const { resource } = await catalog.item(`instance:${first!.research!.sopInstanceUid}`, first!.research!.studyInstanceUid).read();
      expect(resource).toBeUndefined();
    });

    it('given a delete event delivered before the create event of a file that is gone and was never recorded, then both are accepted and only the deletion is recorded (a tombstone)', async () => {
      const name = `ooo/${randomUUID()}.dcm`;
      expect(await webhook([deleted(name)])).toBe(200);
      expect(await webhook([created(name)])).toBe(200);
      const record = await indexDoc(name);
      expect(record?.status).toBe('deleted');
      expect(record?.research).toBeUndefined();
    });

    it('given a cataloged file deleted, with the delete event delivered twice and a stale create event after it, then it ends deleted', async () => {
      const name = `ooo/${randomUUID()}.dcm`;
      await upload(name, readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
      await driver.settle();
      expect((await indexDoc(name))?.status).toBe('cataloged');
      await driver.remove(name);
      await driver.settle();
      expect(await webhook([deleted(name)])).toBe(200);
      expect(await webhook([created(name)])).toBe(200);
      expect((await indexDoc(name))?.status).toBe('deleted');
    });

    it('given an event whose URL points outside the configured source, then it is refused without any fetch', async () => {
      const event = driver.outsideEvent();
      expect(await webhook([event])).toBe(200);
      expect(hostLog()).toContain(`event ${event.id} refused`);
    });

    it('given two files with the same SOP instance, then both are recorded and the operations view shows which one is kept', async () => {
      const a = `same-sop/${randomUUID()}-implicit.dcm`;
      const b = `same-sop/${randomUUID()}-bigendian.dcm`;
      await upload(a, readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
      await new Promise((r) => setTimeout(r, 1100));
      await upload(b, readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small_bigendian.dcm')));
      await driver.settle();
      const url = driver.sourceUrl(a);
      const res = await apiGet(`/api/ingestions?source=${encodeURIComponent(url)}`, 'operations');
      expect(res.status).toBe(200);
      const view = (await res.json()) as { status: string; duplicates?: { thisSourceKept: boolean; keptSource: string; sources: unknown[] } };
      expect(view.status).toBe('cataloged');
      expect(view.duplicates?.thisSourceKept).toBe(false);
      expect(view.duplicates?.keptSource).toContain('-bigendian.dcm');
      expect(view.duplicates?.sources.length).toBeGreaterThanOrEqual(2);
    });
  });

});

describe('operations endpoints', () => {
  it('GET /api/health answers ok once every dependency answers', async () => {
    const res = await fetch(`${testStack().hostUrl}/api/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('GET /api/ingestions without a source is a 400 with a clear message; an unknown source is a 404', async () => {
    const bad = await apiGet('/api/ingestions', 'operations');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/source/);
    const url = `${testStack().blobEndpoint}/${settings.sourceContainers[0]}/never-uploaded.dcm`;
    const missing = await apiGet(`/api/ingestions?source=${encodeURIComponent(url)}`, 'operations');
    expect(missing.status).toBe(404);
  });

  it('GET /api/dicomweb/studies with a bad query is a 400 naming the fault', async () => {
    const res = await apiGet('/api/dicomweb/studies?NoSuchKeyword=1', 'research');
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toContain('NoSuchKeyword');
  });
});
