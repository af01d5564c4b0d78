/**
 * The local stack for reliability tests: the same services as local/stack.ts, with a fault proxy
 * in front of the blob endpoint and one in front of the Cosmos DB server (the functions' settings
 * name the proxies), Azurite keeping its data on disk, and controls to stop and restart Azurite
 * (with its data) and the Cosmos DB server (empty, as the in-memory emulator server restarts) on
 * the same ports.
 *
 *   functions -> blob fault proxy -> event source -> Azurite
 *   functions -> Cosmos fault proxy -> Cosmos DB server
 *
 * Test uploads go to the event source directly, so faults hit the functions only; events name the
 * blob fault proxy, which is the storage account as the functions see it.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as path from 'path';

import { loadSettings, Settings } from '../shared/config/settings';
import { startDevIssuer } from './devIssuer';
import { AZURITE_ACCOUNT, azuriteConnectionString, cosmosEmulatorConnectionString } from './emulators';
import { BlobEventSource, emitExistingBlobs, startEventSource } from './eventSource';
import { FaultPlan, FaultProxy, FaultProxyStats, startFaultProxy } from './faultProxy';
import { FunctionHost, LogSink, startHost } from './host';
import { findReusablePort } from './net';
import { AzuriteHandle, startAzurite } from './services/azurite';
import { CosmosServerHandle, startCosmosServer } from './services/cosmos';

export interface FaultStackOptions {
  projectRoot: string;
  /** Azurite's data (kept across its restarts), the dead-letter file. */
  dataDir: string;
  deidKey: string;
  deidKeyId?: string;
  /** Port of the blob fault proxy; default a free one. A fixed port gives the same source URLs on every run. */
  blobProxyPort?: number;
  env?: Record<string, string>;
  logSink: LogSink;
  eventSource?: { concurrency?: number; maxAttempts?: number; maxBackoffMs?: number; deliveryTimeoutMs?: number };
}

export type FaultTarget = 'blob' | 'cosmos';

export interface FaultStackInfo {
  /** Event source's endpoint with the account: uploads here raise events and meet no faults. */
  blobEndpoint: string;
  /** Connection string for the test's own clients (the event source, no faults). */
  storageConnectionString: string;
  /** The Cosmos DB server itself (no faults), for reading the index and the catalog. */
  cosmosConnectionString: string;
  hostUrl: string;
  deadLetterFile: string;
  /** The settings the functions got (SourceStorage and CosmosDb name the proxies). */
  env: Record<string, string>;
}

export interface FaultStack extends FaultStackInfo {
  settings: Settings;
  events: BlobEventSource;
  proxies: Record<FaultTarget, FaultProxy>;
  setPlan(target: FaultTarget, plan: FaultPlan | undefined): void;
  proxyStats(): Record<FaultTarget, FaultProxyStats>;
  /** Stops Azurite (SIGTERM: it saves its data); the event source then answers 502. */
  stopAzurite(): Promise<void>;
  /** Starts Azurite again on the same ports with the same data folder. */
  startAzurite(): Promise<void>;
  /** Stops the Cosmos DB server: its data is gone. */
  stopCosmos(): Promise<void>;
  /** Starts an empty Cosmos DB server on the same port. */
  startCosmos(): Promise<void>;
  /** Emits BlobCreated for every blob in the landing containers (an operator's backfill); returns how many. */
  reconcile(): Promise<number>;
  /** Stops everything. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the stack; whatever started before a failure is stopped, and the error names the part. */
export async function startFaultStack(options: FaultStackOptions): Promise<FaultStack> {
  const host = '127.0.0.1';
  const projectRoot = path.resolve(options.projectRoot);
  const azuriteData = path.join(options.dataDir, 'azurite');
  fs.mkdirSync(azuriteData, { recursive: true });
  const deadLetterFile = path.join(options.dataDir, 'deadletter.jsonl');
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    stops.length = 0;
  };

  try {
    const preliminary = loadSettings({
      ...process.env,
      SourceStorage: azuriteConnectionString(),
      CosmosDb: `AccountEndpoint=http://${host}/;AccountKey=x;`,
      DEID_KEY: 'x'.repeat(32),
    });

    // Azurite, the Cosmos DB server and the blob proxy come back on the same ports after an
    // outage, so none of their ports may come from the range outgoing connections draw from.
    const taken = new Set<number>(options.blobProxyPort ? [options.blobProxyPort] : []);
    const reusablePort = async () => {
      for (;;) {
        const port = await findReusablePort(host);
        if (taken.has(port)) continue;
        taken.add(port);
        return port;
      }
    };
    let azurite: AzuriteHandle = await startAzurite({ host, blobPort: await reusablePort(), queuePort: await reusablePort(), persistence: { location: azuriteData } });
    const azuritePorts = { blobPort: azurite.blobPort, queuePort: azurite.queuePort };
    stops.push(() => azurite.stop());

    const blobProxyPort = options.blobProxyPort ?? (await reusablePort());
    const events = await startEventSource({
      upstreamUrl: `http://${host}:${azuritePorts.blobPort}`,
      port: 0,
      host,
      sourceContainers: preliminary.sourceContainers,
      eventBlobEndpoint: `http://${host}:${blobProxyPort}/${AZURITE_ACCOUNT}`,
      deadLetterFile,
      ...options.eventSource,
      log: (level, message) => options.logSink(level, '', `event source: ${message}`),
    });
    stops.push(() => events.stop());
    const blobProxy = await startFaultProxy({ target: `http://${host}:${events.port}`, flavor: 'blob', port: blobProxyPort, host });
    stops.push(() => blobProxy.stop());

    let cosmos: CosmosServerHandle = await startCosmosServer({ host, port: await reusablePort() });
    const cosmosPort = cosmos.port;
    stops.push(() => cosmos.stop());
    const cosmosProxy = await startFaultProxy({ target: `http://${host}:${cosmosPort}`, flavor: 'cosmos', host });
    stops.push(() => cosmosProxy.stop());

    // The functions' runtime needs the API's authentication settings even when only events flow.
    const devIssuer = await startDevIssuer({ dataDir: options.dataDir, host, port: 0 });
    stops.push(() => devIssuer.stop());

    const functionsStorage = azuriteConnectionString(blobProxy.port, azuritePorts.queuePort, host);
    const env: Record<string, string> = {
      FUNCTIONS_WORKER_RUNTIME: 'node',
      AZURE_FUNCTIONS_ENVIRONMENT: 'Development',
      SourceStorage: functionsStorage,
      AzureWebJobsStorage: functionsStorage,
      CosmosDb: cosmosEmulatorConnectionString(cosmosProxy.port, host),
      DEID_KEY: options.deidKey,
      DEID_KEY_ID: options.deidKeyId ?? 'test',
      ...devIssuer.env,
      ...options.env,
    };
    for (const [k, v] of Object.entries(env)) process.env[k] = v;
    const settings = loadSettings(process.env);

    const storageConnectionString = azuriteConnectionString(events.port, azuritePorts.queuePort, host);
    const blobService = BlobServiceClient.fromConnectionString(storageConnectionString);
    for (const name of new Set([...settings.sourceContainers, settings.researchContainer, settings.quarantineContainer])) {
      await blobService.getContainerClient(name).createIfNotExists();
    }

    const functionHost: FunctionHost = await startHost({ projectRoot, port: 0, host, env, logSink: options.logSink });
    stops.push(() => functionHost.stop());
    events.setWebhookBaseUrl(functionHost.url);

    let stopping: Promise<void> | undefined;
    const proxies = { blob: blobProxy, cosmos: cosmosProxy };
    return {
      blobEndpoint: events.blobEndpoint,
      storageConnectionString,
      cosmosConnectionString: cosmosEmulatorConnectionString(cosmosPort, host),
      hostUrl: functionHost.url,
      deadLetterFile,
      env,
      settings,
      events,
      proxies,
      setPlan: (target, plan) => proxies[target].setPlan(plan),
      proxyStats: () => ({ blob: blobProxy.stats(), cosmos: cosmosProxy.stats() }),
      stopAzurite: () => azurite.stop(),
      async startAzurite() {
        azurite = await startAzurite({ host, ...azuritePorts, persistence: { location: azuriteData } });
      },
      stopCosmos: () => cosmos.stop(),
      async startCosmos() {
        cosmos = await startCosmosServer({ host, port: cosmosPort });
      },
      async reconcile() {
        let n = 0;
        for (const container of settings.sourceContainers) n += await emitExistingBlobs(events, { container });
        return n;
      },
      stop() {
        stopping ??= stopAll();
        return stopping;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
