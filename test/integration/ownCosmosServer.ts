/** A Cosmos DB server of a test file's own, for tests that delete its database or stop it, and the settings that point at it. */
import { CosmosServerHandle, startCosmosServer } from '../../local/services/cosmos';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings, Settings } from '../../shared/config/settings';
import { testStack } from './stackEnv';

export interface OwnCosmos {
  /** The server; a test that starts another in its place sets it here, so that it is the one stopped. */
  server: CosmosServerHandle;
  settings: Settings;
}

/** Starts the server before the file's tests and stops it after them. */
export function ownCosmosServer(): OwnCosmos {
  const own = {} as OwnCosmos;
  beforeAll(async () => {
    own.server = await startCosmosServer({ port: 0 });
    own.settings = loadSettings({ ...testStack().env, CosmosDb: own.server.connectionString });
  });
  afterAll(async () => {
    await own.server?.stop();
  });
  return own;
}

/** An index record of a failed file: the smallest a store takes. */
export function failedRecord(id: string): IngestionDocument {
  const now = new Date().toISOString();
  return { id, sourceUrl: `http://127.0.0.1/anq-replica/${id}`, container: 'anq-replica', blobName: id, status: 'failed', eventIds: ['e'], attempts: 1, firstSeenAt: now, updatedAt: now };
}
