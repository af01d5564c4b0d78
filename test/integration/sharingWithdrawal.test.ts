/**
 * Deletion propagates to partners, through the stack: an agreement's export to a container of
 * ours (SAS), the source blob deleted in Azurite (the blob path withdraws its research
 * instance), then VNA.Catalog.InstanceWithdrawn delivered to the host's `withdrawSharedInstance`
 * webhook as the topic's subscription delivers it (the test stack's topic is not routed, as in
 * sharing.test.ts): the partner's copy leaves the container, the others stay, the withdrawal list
 * names it, and the audit query answers with one `withdrawn` record, also after a redelivery.
 */
import { ContainerClient } from '@azure/storage-blob';

import { ctSliceBytes } from '../../bench/generate';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { sourceId } from '../../shared/ingest/ingestSourceFile';
import { CosmosSharingAudit } from '../../shared/sharing/cosmosSharing';
import { sourceDriver } from './sourceDrivers';
import { authHeader, testStack } from './stackEnv';

const SEED = 15016;
const COUNT = 3;
const PARTNER = 'withdraw-a';

async function api(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${testStack().hostUrl}${path}`, {
    method,
    headers: { ...authHeader('sharing'), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function names(sasUrl: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of new ContainerClient(sasUrl).listBlobsFlat()) out.push(b.name);
  return out.sort();
}

function withdrawnEvent(id: string, research: NonNullable<IngestionDocument['research']>) {
  const { studyInstanceUid, seriesInstanceUid, sopInstanceUid } = research;
  return { id, eventType: 'VNA.Catalog.InstanceWithdrawn', subject: `/studies/${studyInstanceUid}`, eventTime: new Date().toISOString(), dataVersion: '1.0', data: { studyInstanceUid, seriesInstanceUid, sopInstanceUid } };
}

/** Delivers to a function's webhook: `withdrawSharedInstance` (Azure's subscription) or `shareCatalogedInstance` (the local topic's one endpoint). */
async function deliver(events: unknown[], functionName = 'withdrawSharedInstance'): Promise<number> {
  const res = await fetch(`${testStack().hostUrl}/runtime/webhooks/eventgrid?functionName=${functionName}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
    body: JSON.stringify(events),
  });
  await res.body?.cancel();
  return res.status;
}

describe('deletion propagates to partners through the stack', () => {
  it('given an exported instance whose source blob is deleted, then the partner copy leaves our container and the audit query shows one withdrawal', async () => {
    const driver = sourceDriver('blob');
    const settings = loadSettings(testStack().env);
    const cosmos = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase);
    const index = cosmos.container(settings.indexContainer);
    const record = async (name: string) => (await index.item(sourceId(driver.sourceUrl(name)), sourceId(driver.sourceUrl(name))).read<IngestionDocument>()).resource;

    const sources = Array.from({ length: COUNT }, (_, i) => `sharing-withdraw-${SEED}/${i + 1}.dcm`);
    for (const [i, name] of sources.entries()) await driver.put(name, ctSliceBytes({ seed: SEED, study: 0, instance: i + 1, matrix: 16 }));
    await driver.settle(120_000);
    const ingested = await Promise.all(sources.map(record));
    expect(ingested.map((d) => d?.status)).toEqual(sources.map(() => 'cataloged'));
    const study = ingested[0]?.research?.studyInstanceUid as string;

    const created = await api('POST', '/api/agreements', {
      partnerId: PARTNER, partnerName: 'Withdrawal partner', profile: { builtIn: 'safe-harbor' }, cohort: { studies: [study] },
      mode: 'once', validFrom: '2026-01-01', validUntil: '2030-01-01', destination: { kind: 'sas', container: `share-${PARTNER}` },
    });
    expect(created.status).toBe(201);
    const agreement = (await created.json()) as { id: string; sas: { url: string } };
    const started = await api('POST', `/api/agreements/${agreement.id}/exports`);
    expect(started.status).toBe(202);
    const location = started.headers.get('location') ?? '';
    const done = await until('the export', async () => {
      const s = (await (await api('GET', location)).json()) as { status: string; done: number; exportId: string };
      return s.status === 'completed' ? s : undefined;
    }, 120_000);
    expect(done.done).toBe(COUNT);

    const audit = new CosmosSharingAudit(cosmos.container(settings.sharing.sharingAuditContainer));
    const shared = (await audit.byPartner(PARTNER)).filter((r) => r.action === 'shared');
    expect(shared).toHaveLength(COUNT);
    const before = await names(agreement.sas.url);
    expect(before.filter((n) => n.endsWith('.dcm'))).toEqual(shared.map((r) => r.blob).sort());

    // The source goes: the blob path withdraws its research instance and records the deletion.
    const gone = sources[0] as string;
    const research = ingested[0]?.research as NonNullable<IngestionDocument['research']>;
    await driver.remove(gone);
    await driver.settle(120_000);
    expect((await record(gone))?.status).toBe('deleted');

    // Which partner file is that instance's: the export's item names it (research UID -> partner blob).
    const exports = cosmos.container(settings.sharing.exportsContainer);
    const item = (await exports.item(`item:${research.sopInstanceUid}`, done.exportId).read<{ file: { blob: string } }>()).resource;
    const partnerBlob = item?.file.blob as string;
    expect(before).toContain(partnerBlob);

    expect(await deliver([withdrawnEvent(`withdrawn-${SEED}-1`, research)])).toBe(200);
    const after = await names(agreement.sas.url);
    expect(after).not.toContain(partnerBlob);
    expect(after.filter((n) => n.endsWith('.dcm'))).toEqual(before.filter((n) => n.endsWith('.dcm') && n !== partnerBlob));
    // The manifest stays as shipped; the withdrawal list next to it names the file.
    expect(after).toEqual(expect.arrayContaining([`manifests/${done.exportId}.json`, `manifests/${done.exportId}.withdrawn.json`, `manifests/${done.exportId}.withdrawn.csv`]));
    const list = JSON.parse((await new ContainerClient(agreement.sas.url).getBlobClient(`manifests/${done.exportId}.withdrawn.json`).downloadToBuffer()).toString()) as { withdrawn: { blob: string; outcome: string }[] };
    expect(list.withdrawn).toEqual([expect.objectContaining({ blob: partnerBlob, outcome: 'deleted' })]);

    // Delivered again: nothing recorded twice.
    expect(await deliver([withdrawnEvent(`withdrawn-${SEED}-1`, research)])).toBe(200);
    const received = await audit.byPartner(PARTNER);
    const withdrawn = received.filter((r) => r.action === 'withdrawn');
    expect(withdrawn).toHaveLength(1);
    expect(withdrawn[0]).toMatchObject({ agreementId: agreement.id, blob: partnerBlob, requestedBy: 'source-deleted', destination: `sas:share-${PARTNER}` });
    expect(received.filter((r) => r.action === 'shared')).toHaveLength(COUNT);

    // A second source deleted, its withdrawal delivered where `npm start`'s topic sends every catalog event.
    const second = sources[1] as string;
    const secondResearch = ingested[1]?.research as NonNullable<IngestionDocument['research']>;
    await driver.remove(second);
    await driver.settle(120_000);
    const secondItem = (await exports.item(`item:${secondResearch.sopInstanceUid}`, done.exportId).read<{ file: { blob: string } }>()).resource;
    expect(await deliver([withdrawnEvent(`withdrawn-${SEED}-2`, secondResearch)], 'shareCatalogedInstance')).toBe(200);
    expect(await names(agreement.sas.url)).not.toContain(secondItem?.file.blob);
    expect((await audit.byPartner(PARTNER)).filter((r) => r.action === 'withdrawn').map((r) => r.blob).sort()).toEqual([partnerBlob, secondItem?.file.blob].sort());
  }, 300_000);
});
