/**
 * The services a stack bench runs the function host against, wired as local/stack.ts wires
 * them: Azurite behind the Event Grid stand-in (the blob proxy that raises and delivers events),
 * the Cosmos DB server and the development token issuer, with the containers and the catalog
 * created. The function host itself is started by the scenario (in a process of its own).
 *
 * `direct` wires the host as it is in Azure, where nothing stands between the functions and
 * storage: its connection string names Azurite itself, and the events name blobs there.
 * `storage` and `blobService` go through the stand-in, which raises an event for each write it
 * sees; `directStorage` and `directBlobService` reach Azurite itself (a write made there raises
 * an event only when given to `events.emit`).
 */
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { startDevIssuer } from '../local/devIssuer';
import { AZURITE_ACCOUNT, azuriteConnectionString } from '../local/emulators';
import { startEventSource } from '../local/eventSource';
import { startAzurite } from '../local/services/azurite';
import { startCosmosServer } from '../local/services/cosmos';
import { ensureCatalog } from '../shared/catalog/cosmosCatalog';
import { loadSettings, type Settings } from '../shared/config/settings';

export type BenchServices = Awaited<ReturnType<typeof startBenchServices>>;

/** Starts the services; each one's stop is pushed onto `stops` as soon as it runs. */
export async function startBenchServices(options: { workDir: string; deidKey: string; eventConcurrency?: number; deliveryTimeoutMs?: number; direct?: boolean }, stops: (() => Promise<void>)[]) {
  const host = '127.0.0.1';
  const preliminary = loadSettings({ ...process.env, SourceStorage: azuriteConnectionString(), CosmosDb: `AccountEndpoint=http://${host}/;AccountKey=x;`, DEID_KEY: 'x'.repeat(32) });
  const azurite = await startAzurite({ host, blobPort: 0, queuePort: 0 });
  stops.push(() => azurite.stop());
  const events = await startEventSource({
    upstreamUrl: `http://${host}:${azurite.blobPort}`,
    port: 0,
    host,
    sourceContainers: preliminary.sourceContainers,
    concurrency: options.eventConcurrency,
    maxEventsPerBatch: process.env.LOCAL_EVENT_MAX_EVENTS_PER_BATCH ? Number(process.env.LOCAL_EVENT_MAX_EVENTS_PER_BATCH) : undefined,
    deliveryTimeoutMs: options.deliveryTimeoutMs,
    deadLetterFile: path.join(options.workDir, 'deadletter.jsonl'),
    ...(options.direct ? { eventBlobEndpoint: `http://${host}:${azurite.blobPort}/${AZURITE_ACCOUNT}` } : {}),
  });
  stops.push(() => events.stop());
  const cosmosServer = await startCosmosServer({ host, port: 0 });
  stops.push(() => cosmosServer.stop());
  const devIssuer = await startDevIssuer({ dataDir: options.workDir, host, port: 0 });
  stops.push(() => devIssuer.stop());
  const storage = azuriteConnectionString(events.port, azurite.queuePort, host);
  const directStorage = azuriteConnectionString(azurite.blobPort, azurite.queuePort, host);
  const hostStorage = options.direct ? directStorage : storage;
  const env: Record<string, string> = {
    FUNCTIONS_WORKER_RUNTIME: 'node',
    AZURE_FUNCTIONS_ENVIRONMENT: 'Development',
    SourceStorage: hostStorage,
    AzureWebJobsStorage: hostStorage,
    CosmosDb: cosmosServer.connectionString,
    DEID_KEY: options.deidKey,
    DEID_KEY_ID: 'bench',
    ...devIssuer.env,
    // Synthetic images carry no burned-in text; the default policy would hold some SOP classes for review.
    BURNED_IN_POLICY: 'allow',
  };
  const settings: Settings = loadSettings({ ...process.env, ...env });
  const blobService = BlobServiceClient.fromConnectionString(storage);
  for (const name of new Set([...settings.sourceContainers, settings.researchContainer, settings.quarantineContainer])) {
    await blobService.getContainerClient(name).createIfNotExists();
  }
  await ensureCatalog(settings);
  return { azurite, events, cosmosServer, devIssuer, storage, directStorage, env, settings, blobService, directBlobService: BlobServiceClient.fromConnectionString(directStorage) };
}
