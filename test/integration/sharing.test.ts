/**
 * Data sharing through the stack: agreements over the HTTP API (Sharing.Manage), exports fanned
 * out through Azurite's queue service and written by the queue-triggered function in the
 * stack's host, the partner's copies read back through the SAS, the revoked SAS refused by
 * Azurite, and an independent PHI check (dcmdump reads the sources) over the partner's copies.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ContainerClient } from '@azure/storage-blob';

import { ctSliceBytes } from '../../bench/generate';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { asciiValue } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import { sourceId } from '../../shared/ingest/ingestSourceFile';
import { CosmosSharingAudit } from '../../shared/sharing/cosmosSharing';
import type { ExportStatus } from '../../shared/sharing/sharing';
import { sourceDriver } from './sourceDrivers';
import { authHeader, testStack } from './stackEnv';

const SEED = 15015;
const STUDIES = 3;
const PER_STUDY = 4;

async function api(method: string, path: string, who: 'sharing' | 'research', body?: unknown): Promise<Response> {
  return fetch(`${testStack().hostUrl}${path}`, {
    method,
    headers: { ...authHeader(who), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

function agreementBody(partnerId: string, studies: string[], over: Record<string, unknown> = {}) {
  return {
    partnerId,
    partnerName: `Partner ${partnerId}`,
    profile: { builtIn: 'safe-harbor' },
    cohort: { filter: { Modality: 'CT' }, studies },
    mode: 'once',
    validFrom: '2026-01-01',
    validUntil: '2030-01-01',
    destination: { kind: 'sas', container: `share-${partnerId}` },
    ...over,
  };
}


async function runExport(agreementId: string): Promise<ExportStatus> {
  const res = await api('POST', `/api/agreements/${agreementId}/exports`, 'sharing');
  expect(res.status).toBe(202);
  const location = res.headers.get('location') ?? '';
  expect(location).toMatch(/^\/api\/exports\/exp-[0-9a-f]+$/);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const status = (await (await api('GET', location, 'sharing')).json()) as ExportStatus;
    if (status.status === 'completed') return status;
    if (Date.now() > deadline) throw new Error(`export not completed: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Every file of a container read through its SAS, by name. */
async function readAll(sasUrl: string): Promise<Map<string, Buffer>> {
  const container = new ContainerClient(sasUrl);
  const out = new Map<string, Buffer>();
  for await (const b of container.listBlobsFlat()) out.set(b.name, await container.getBlobClient(b.name).downloadToBuffer());
  return out;
}

async function uidsOf(files: Map<string, Buffer>): Promise<Set<string>> {
  const out = new Set<string>();
  for (const [name, data] of files) {
    if (!name.endsWith('.dcm')) continue;
    const ds = (await parseDicomBuffer(data)).dataset;
    for (const t of [Tags.StudyInstanceUID, Tags.SeriesInstanceUID, Tags.SOPInstanceUID, Tags.FrameOfReferenceUID]) {
      const v = asciiValue(ds.get(t));
      if (v) out.add(v);
    }
  }
  return out;
}

describe('data sharing through the stack', () => {
  const driver = sourceDriver('blob');
  const names: string[] = [];
  const sources = new Map<string, Buffer>();
  let ingestions: IngestionDocument[] = [];
  let studies: string[] = [];
  let researchUids: Set<string>;

  beforeAll(async () => {
    for (let s = 0; s < STUDIES; s++) {
      for (let i = 1; i <= PER_STUDY; i++) {
        const name = `sharing-${SEED}/study${s}/${i}.dcm`;
        const data = ctSliceBytes({ seed: SEED, study: s, instance: i, matrix: 16 });
        names.push(name);
        sources.set(name, data);
        await driver.put(name, data);
      }
    }
    await driver.settle(120_000);
    const settings = loadSettings(testStack().env);
    const index = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.indexContainer);
    ingestions = await Promise.all(names.map(async (n) => (await index.item(sourceId(driver.sourceUrl(n)), sourceId(driver.sourceUrl(n))).read<IngestionDocument>()).resource as IngestionDocument));
    expect(ingestions.map((d) => d.status)).toEqual(names.map(() => 'cataloged'));
    studies = [...new Set(ingestions.map((d) => d.research?.studyInstanceUid as string))];
    expect(studies).toHaveLength(STUDIES);
    researchUids = new Set(ingestions.flatMap((d) => (d.research ? [d.research.studyInstanceUid, d.research.seriesInstanceUid, d.research.sopInstanceUid] : [])));
  }, 180_000);

  it('given a body with a bad field, then 400 REQUEST_INVALID naming it; without Sharing.Manage, 403; without a token, 401 on every sharing route', async () => {
    const bad = await api('POST', '/api/agreements', 'sharing', agreementBody('bad-partner', studies, { validUntil: '2020-01-01' }));
    expect(bad.status).toBe(400);
    const { error } = (await bad.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('REQUEST_INVALID');
    expect(error.message).toMatch(/^validUntil:/);
    expect((await api('POST', '/api/agreements', 'research', agreementBody('r-partner', studies))).status).toBe(403);
    expect((await api('GET', '/api/agreements/agr-0000000000000000', 'sharing')).status).toBe(404);
    for (const [method, route] of [['POST', '/api/agreements'], ['GET', '/api/agreements/agr-0000000000000000'], ['PATCH', '/api/agreements/agr-0000000000000000'], ['POST', '/api/agreements/agr-0000000000000000/exports'], ['GET', '/api/exports/exp-0000000000000000']]) {
      const res = await fetch(`${testStack().hostUrl}${route}`, { method });
      expect({ route, method, status: res.status }).toEqual({ route, method, status: 401 });
    }
  });

  it('given an agreement, then its export ends with every instance once, the manifest hashes equal the files, no PHI and no research UID, and the audit answers for the partner; revoked, its SAS stops working', async () => {
    const created = await api('POST', '/api/agreements', 'sharing', agreementBody('uni-a', studies));
    expect(created.status).toBe(201);
    const agreement = (await created.json()) as { id: string; keyId: string; sas: { url: string } };
    expect(created.headers.get('location')).toBe(`/api/agreements/${agreement.id}`);

    // Suspended: no export.
    expect((await api('PATCH', `/api/agreements/${agreement.id}`, 'sharing', { status: 'suspended' })).status).toBe(200);
    expect((await api('POST', `/api/agreements/${agreement.id}/exports`, 'sharing')).status).toBe(409);
    expect((await api('PATCH', `/api/agreements/${agreement.id}`, 'sharing', { status: 'active' })).status).toBe(200);

    const status = await runExport(agreement.id);
    const n = STUDIES * PER_STUDY;
    expect(status).toMatchObject({ total: n, done: n, failed: 0, left: 0 });
    expect(Date.parse(status.finishedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(status.startedAt));

    const files = await readAll(agreement.sas.url);
    const dicom = [...files].filter(([k]) => k.endsWith('.dcm'));
    expect(dicom).toHaveLength(n);
    expect(status.bytes).toBe(dicom.reduce((s, [, b]) => s + b.length, 0));
    const manifest = JSON.parse((files.get(status.manifest?.json ?? '') as Buffer).toString()) as { keyId: string; files: { blob: string; sha256: string; size: number; sopClassUid: string }[] };
    expect(manifest.keyId).toBe(agreement.keyId);
    expect(manifest.files.map((f) => f.blob).sort()).toEqual(dicom.map(([k]) => k).sort());
    for (const f of manifest.files) {
      const data = files.get(f.blob) as Buffer;
      expect(createHash('sha256').update(data).digest('hex')).toBe(f.sha256);
      expect(data.length).toBe(f.size);
    }
    expect((files.get(status.manifest?.csv ?? '') as Buffer).toString().trim().split('\r\n')).toHaveLength(n + 1);

    // Independent PHI check: identifying values read from the sources by dcmdump, looked for byte by byte.
    const dir = mkdtempSync(join(tmpdir(), 'sharing-phi-'));
    const identifying = new Set<string>();
    for (const [name, data] of sources) {
      const file = join(dir, name.replace(/\//g, '_'));
      writeFileSync(file, data);
      const out = execFileSync('dcmdump', ['-q', '+P', '0010,0010', '+P', '0010,0020', '+P', '0010,0030', '+P', '0008,0050', '+P', '0008,0020', '+P', '0008,0080', '+P', '0008,0090', '+P', '0020,000d', '+P', '0020,000e', '+P', '0008,0018', file]).toString('latin1');
      for (const m of out.matchAll(/\[([^\]]+)\]/g)) {
        const v = (m[1] as string).trim();
        identifying.add(v);
        for (const part of v.split('^')) if (part.length >= 3) identifying.add(part);
      }
    }
    expect(identifying.size).toBeGreaterThan(10);
    const found: string[] = [];
    for (const [name, data] of dicom) {
      const text = data.toString('latin1');
      for (const v of [...identifying, ...researchUids]) if (text.includes(v)) found.push(`${name}: ${v.length} chars`);
    }
    expect(found).toEqual([]);

    // The audit: "what has partner uni-a received?"
    const settings = loadSettings(testStack().env);
    const audit = new CosmosSharingAudit(createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.sharing.sharingAuditContainer));
    const received = await audit.byPartner('uni-a');
    expect(received.map((r) => r.blob).sort()).toEqual(dicom.map(([k]) => k).sort());
    expect(new Set(received.map((r) => r.requestedBy)).size).toBe(1);

    // Revoked: the stored access policy is gone, so the SAS no longer lists or reads (Azurite checks it).
    const revoked = await api('PATCH', `/api/agreements/${agreement.id}`, 'sharing', { status: 'revoked', reason: 'test' });
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { sharedAtRevocation: { files: number } }).sharedAtRevocation.files).toBe(n);
    await expect(readAll(agreement.sas.url)).rejects.toMatchObject({ statusCode: 403 });
    expect((await api('POST', `/api/agreements/${agreement.id}/exports`, 'sharing')).status).toBe(409);
  }, 180_000);

  it('given two agreements over the same studies, then disjoint UID sets, neither holding a research UID, each the same on a second export', async () => {
    const make = async (id: string) => (await (await api('POST', '/api/agreements', 'sharing', agreementBody(id, studies))).json()) as { id: string; sas: { url: string } };
    const [a, b] = [await make('pair-a'), await make('pair-b')];
    await runExport(a.id);
    await runExport(b.id);
    const ua = await uidsOf(await readAll(a.sas.url));
    const ub = await uidsOf(await readAll(b.sas.url));
    expect(ua.size).toBeGreaterThanOrEqual(STUDIES * PER_STUDY + STUDIES * 2);
    expect([...ua].filter((u) => ub.has(u))).toEqual([]);
    expect([...ua, ...ub].filter((u) => researchUids.has(u))).toEqual([]);
    const second = await runExport(a.id);
    expect(second).toMatchObject({ done: STUDIES * PER_STUDY, failed: 0 });
    expect(await uidsOf(await readAll(a.sas.url))).toEqual(ua);
  }, 180_000);

  it('given a live agreement, then the cataloged instances of its cohort reach the partner as the events arrive, and the others do not', async () => {
    const created = await api('POST', '/api/agreements', 'sharing', agreementBody('live-a', [studies[0] as string], { mode: 'live' }));
    expect(created.status).toBe(201);
    const agreement = (await created.json()) as { id: string; sas: { url: string } };
    // VNA.Catalog.InstanceCataloged as the pipeline's topic delivers it to the subscription (Event Grid schema).
    const events = ingestions.map((d, i) => ({
      id: `cataloged-${SEED}-${i}`,
      eventType: 'VNA.Catalog.InstanceCataloged',
      subject: `/studies/${d.research?.studyInstanceUid}`,
      eventTime: new Date().toISOString(),
      dataVersion: '1.0',
      data: { ...d.research, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', modality: 'CT', researchBlob: d.research?.blob, size: 1 },
    }));
    const res = await fetch(`${testStack().hostUrl}/runtime/webhooks/eventgrid?functionName=shareCatalogedInstance`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
      body: JSON.stringify(events),
    });
    expect(res.status).toBe(200);
    const part = `/api/exports/live-${agreement.id.replace(/^agr-/, '')}-${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`;
    const deadline = Date.now() + 60_000;
    let status: ExportStatus;
    for (;;) {
      status = (await (await api('GET', part, 'sharing')).json()) as ExportStatus;
      if (status.done === PER_STUDY) break;
      if (Date.now() > deadline) throw new Error(`live part incomplete: ${JSON.stringify(status)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toMatchObject({ status: 'running', total: PER_STUDY, done: PER_STUDY, failed: 0, left: 0 });
    // The part's manifest is rewritten after each item is recorded: read until it has caught up.
    let files: Map<string, Buffer>;
    let listed: string[] = [];
    for (;;) {
      files = await readAll(agreement.sas.url);
      const manifest = files.get(`manifests/${status.exportId}.json`);
      listed = manifest ? (JSON.parse(manifest.toString()) as { files: { blob: string }[] }).files.map((f) => f.blob).sort() : [];
      if (listed.length === PER_STUDY || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const dicom = [...files.keys()].filter((k) => k.endsWith('.dcm')).sort();
    expect(dicom).toHaveLength(PER_STUDY);
    expect(listed).toEqual(dicom);
  }, 120_000);
});
