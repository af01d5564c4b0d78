/**
 * A Cosmos DB server that restarts empty (the local server keeps its data in memory; in Azure,
 * a database or container deleted by mistake): the catalog creates its database and containers
 * again when the service says they are missing, and health recovers. Runs on a Cosmos server
 * of its own, since it stops it.
 */
import { startCosmosServer } from '../../local/services/cosmos';
import { catalogContainer, CosmosIndexStore, CosmosResearchCatalog, createCosmosClient, createDocumentClient, ensureCatalog, withCatalogRecovery } from '../../shared/catalog/cosmosCatalog';
import { failedRecord, ownCosmosServer } from './ownCosmosServer';

const own = ownCosmosServer();
const record = failedRecord;

describe('catalog after the Cosmos server restarts empty', () => {
  it('given a server restarted without its data, then writes, queries and the health check create the database and containers again', async () => {
    const { settings } = own;
    const client = createCosmosClient(settings.cosmos);
    const { index: indexContainer, research } = await ensureCatalog(settings, client);
    const documents = createDocumentClient(settings.cosmos);
    const index = new CosmosIndexStore(catalogContainer(indexContainer, documents));
    const catalog = new CosmosResearchCatalog(catalogContainer(research, documents));
    await index.put(record('before'), undefined);

    // The same port, a new server: everything it held is gone.
    const port = own.server.port;
    await own.server.stop();
    own.server = await startCosmosServer({ port });
    await expect(client.database(settings.cosmosDatabase).read()).rejects.toMatchObject({ code: 404 });

    // The health check's read of the container recreates it.
    await expect(withCatalogRecovery(research, () => research.read())).resolves.toBeDefined();
    await client.database(settings.cosmosDatabase).delete();

    // A create finds the container missing, recreates the catalog and succeeds.
    await index.put(record('after'), undefined);
    expect((await index.get('after'))?.doc.status).toBe('failed');
    expect(await index.get('before')).toBeUndefined();
    // A query does too.
    await client.database(settings.cosmosDatabase).delete();
    await expect(catalog.findInstancesBySource('no-such-source')).resolves.toEqual([]);
    const { resources } = await client.database(settings.cosmosDatabase).containers.readAll().fetchAll();
    expect(resources.map((c) => c.id).sort()).toEqual([settings.auditContainer, settings.indexContainer, settings.researchCatalogContainer, settings.sharing.agreementsContainer, settings.sharing.exportsContainer, settings.sharing.sharingAuditContainer].sort());
  });
});
