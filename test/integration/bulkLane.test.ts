/**
 * Point requests batched under load (shared/catalog/bulkLane.ts) on the real Cosmos DB server:
 * overlapping creates and reads leave as bulk requests, each ends as it would alone (a create
 * its ETag or a conflict, a read the document or nothing), and a container gone under them is
 * created again. On a Cosmos server of its own, since the last test deletes its database.
 */
import { catalogContainer, CosmosIndexStore, createCosmosClient, createDocumentClient, ensureCatalog } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { ErrorCodes } from '../../shared/errors';
import { failedRecord, ownCosmosServer } from './ownCosmosServer';

const own = ownCosmosServer();
const record = failedRecord;

describe('catalog point requests batched under load, on the Cosmos DB server', () => {
  it('given 200 overlapping creates, some of ids that exist, and then reads, then most leave in bulk requests, each new document is created once with the ETag it is read with, each existing id is a conflict, and each read finds its document or none', async () => {
    const { settings } = own;
    const client = createCosmosClient(settings.cosmos);
    const { index: container } = await ensureCatalog(settings, client);
    const documents = createDocumentClient(settings.cosmos);
    const index = new CosmosIndexStore(catalogContainer(container, documents));
    const taken = ['taken-0', 'taken-1', 'taken-2'];
    for (const id of taken) await index.put(record(id), undefined);

    const ids = Array.from({ length: 200 }, (_, i) => (i % 50 === 7 ? (taken[i % 3] as string) : `new-${i}`));
    const docs = documents.container(settings.cosmosDatabase, settings.indexContainer);
    // The container's single range is learnt from a first overlap; the burst's creates are batched after.
    await Promise.all(['warm-0', 'warm-1'].map((id) => docs.create(record(id), id)));
    await docs.lane.checked();
    const before = { ...docs.lane.counts };
    const results = await Promise.allSettled(ids.map((id) => docs.create(record(id), id)));
    const counts = docs.lane.counts;
    // Fewer requests than creates: all but the first few waited for a bulk request.
    expect(counts.bulk - before.bulk).toBeGreaterThan(0);
    expect(counts.bulkOperations - before.bulkOperations).toBeGreaterThan(150);
    expect(counts.alone - before.alone + counts.bulk - before.bulk).toBeLessThan(50);

    for (const [i, result] of results.entries()) {
      const id = ids[i] as string;
      if (taken.includes(id)) {
        expect([id, result.status, result.status === 'rejected' && (result.reason as { statusCode?: number }).statusCode]).toEqual([id, 'rejected', 409]);
        continue;
      }
      expect([id, result.status]).toEqual([id, 'fulfilled']);
      const read = await docs.read<IngestionDocument>(id, id);
      expect(read?.etag).toBe((result as PromiseFulfilledResult<{ etag: string }>).value.etag);
    }
    const { resources } = await container.items.query<number>('SELECT VALUE COUNT(1) FROM c').fetchAll();
    expect(resources[0]).toBe(ids.filter((id) => !taken.includes(id)).length + taken.length + 2);

    // Overlapping reads of the same documents, and of absent ones, batched as well.
    const bulkBefore = docs.lane.counts.bulk;
    const reads = await Promise.all(ids.map((id, i) => docs.read<IngestionDocument>(i % 10 === 3 ? `absent-${i}` : id, i % 10 === 3 ? `absent-${i}` : id)));
    expect(docs.lane.counts.bulk).toBeGreaterThan(bulkBefore);
    for (const [i, r] of reads.entries()) {
      if (i % 10 === 3) expect([i, r]).toEqual([i, undefined]);
      else expect([i, r?.resource.id, r?.etag]).toEqual([i, ids[i], r?.resource._etag]);
    }

    // Through the index store: a conflict is the catalog's lost race, as it is for a create alone.
    const again = await Promise.allSettled(['new-0', 'fresh-1', 'fresh-2', 'new-1'].map((id) => index.put(record(id), undefined)));
    expect(again.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code?: string }).code))).toEqual([ErrorCodes.CATALOG_CONFLICT, 'ok', 'ok', ErrorCodes.CATALOG_CONFLICT]);
  });

  it('given the database deleted under a burst of creates, then every create still lands once the catalog is created again', async () => {
    const { settings } = own;
    const client = createCosmosClient(settings.cosmos);
    const { index: container } = await ensureCatalog(settings, client);
    const documents = createDocumentClient(settings.cosmos);
    const index = new CosmosIndexStore(catalogContainer(container, documents));
    // The container's single range is learnt from a first overlap.
    await Promise.all(['second-0', 'second-1', 'second-2'].map((id) => index.put(record(id), undefined)));
    const lane = documents.container(settings.cosmosDatabase, settings.indexContainer).lane;
    await lane.checked();
    const bulkBefore = lane.counts.bulk;
    await client.database(settings.cosmosDatabase).delete();

    const ids = Array.from({ length: 60 }, (_, i) => `after-${i}`);
    await Promise.all(ids.map((id) => index.put(record(id), undefined)));
    for (const id of ids) expect([id, (await index.get(id))?.doc.status]).toEqual([id, 'failed']);
    // The burst did go out in bulk requests, refused while the container was missing.
    expect(lane.counts.bulk).toBeGreaterThan(bulkBefore);
  });
});
