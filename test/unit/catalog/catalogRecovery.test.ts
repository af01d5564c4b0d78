/**
 * withCatalogRecovery (shared/catalog/cosmosCatalog.ts) after a Cosmos server restarted empty,
 * with the client stood in for: the containers are recorded as ensureCatalog makes them, and
 * each test decides what the container's own read answers. The integration test
 * (test/integration/catalogRecovery.test.ts) restarts the real server.
 *
 * The defect: an operation that met the missing container, while another caller had already
 * created it again, was not run again; its 404 became NOT_FOUND and the file was recorded as
 * failed (seen once in the faults suite: "Cosmos DB server stopped mid-burst and restarted empty").
 */
import type { Container, CosmosClient } from '@azure/cosmos';

import { ensureCatalog, withCatalogRecovery } from '../../../shared/catalog/cosmosCatalog';
import type { Settings } from '../../../shared/config/settings';

const settings = {
  cosmosDatabase: 'db',
  indexContainer: 'index',
  researchCatalogContainer: 'research',
  auditContainer: 'audit',
  sharing: { agreementsContainer: 'agreements', exportsContainer: 'exports', sharingAuditContainer: 'sharing-audit' },
} as unknown as Settings;

/** A stand-in client: counts the containers ensureCatalog creates; each container's read answers as `exists` says. */
function standInClient(exists: () => boolean) {
  const created: string[] = [];
  const containers = new Map<string, Container>();
  const database = {
    containers: {
      createIfNotExists: async ({ id }: { id: string }) => {
        created.push(id);
        const container = containers.get(id) ?? ({ id, read: async () => (exists() ? {} : Promise.reject(Object.assign(new Error('gone'), { statusCode: 404 }))) } as unknown as Container);
        containers.set(id, container);
        return { container };
      },
    },
  };
  const client = { databases: { createIfNotExists: async () => ({ database }) } } as unknown as CosmosClient;
  return { client, created };
}

const notFound = () => Object.assign(new Error('Resource Not Found'), { statusCode: 404 });

describe('withCatalogRecovery', () => {
  test('given an operation that met the missing container, which another caller created again before the container was read, then the operation runs once more and its answer is returned', async () => {
    const { client, created } = standInClient(() => true);
    const { research } = await ensureCatalog(settings, client);
    const before = created.length;
    let calls = 0;
    const op = async () => {
      calls += 1;
      if (calls === 1) throw notFound();
      return 'written';
    };
    await expect(withCatalogRecovery(research, op)).resolves.toBe('written');
    expect(calls).toBe(2);
    // Nothing is created again by this caller: the container is there.
    expect(created.length).toBe(before);
  });

  test('given an operation that met the missing container, still missing when read, then the catalog is created again and the operation runs once more', async () => {
    let there = false;
    const { client, created } = standInClient(() => there);
    const { index } = await ensureCatalog(settings, client);
    const before = created.length;
    let calls = 0;
    const op = async () => {
      calls += 1;
      if (calls === 1) throw notFound();
      there = true;
      return 'queried';
    };
    await expect(withCatalogRecovery(index, op)).resolves.toBe('queried');
    expect(calls).toBe(2);
    expect(created.length).toBe(before + 6);
  });

  test('given an operation that fails with 404 on both runs, then the second 404 is thrown', async () => {
    const { client } = standInClient(() => true);
    const { audit } = await ensureCatalog(settings, client);
    let calls = 0;
    const op = async () => {
      calls += 1;
      throw notFound();
    };
    await expect(withCatalogRecovery(audit, op)).rejects.toMatchObject({ statusCode: 404 });
    expect(calls).toBe(2);
  });

  test('given an operation that fails with 409, then it is thrown at once and not run again', async () => {
    const { client } = standInClient(() => true);
    const { index } = await ensureCatalog(settings, client);
    let calls = 0;
    const op = async () => {
      calls += 1;
      throw Object.assign(new Error('conflict'), { statusCode: 409 });
    };
    await expect(withCatalogRecovery(index, op)).rejects.toMatchObject({ statusCode: 409 });
    expect(calls).toBe(1);
  });
});
