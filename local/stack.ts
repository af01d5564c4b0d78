/**
 * The whole pipeline on embedded local services: Azurite, the blob proxy that plays Event Grid,
 * the Cosmos DB emulator server and the function host, wired so that the functions see the same
 * settings they would see in Azure (connection strings named SourceStorage, CosmosDb, ...).
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { ensureCatalog } from '../shared/catalog/cosmosCatalog';
import { loadSettings, Settings } from '../shared/config/settings';
import { DevIssuer, startDevIssuer } from './devIssuer';
import { azuriteConnectionString } from './emulators';
import { BlobEventSource, emitExistingBlobs, startEventSource } from './eventSource';
import { FunctionHost, LogSink, startHost, stdoutLogSink } from './host';
import { startAzurite } from './services/azurite';
import { startCosmosServer } from './services/cosmos';

export const DEFAULT_PORTS = { blob: 10000, queue: 10001, cosmos: 8081, functions: 7071 } as const;

export interface StackPorts {
  blob?: number;
  queue?: number;
  cosmos?: number;
  functions?: number;
}

export interface PrepareContext {
  settings: Settings;
  env: Record<string, string>;
}

export interface StackOptions {
  /** Folder with package.json (its `main` glob names the function files) and host.json. */
  projectRoot: string;
  /** Explicit ports win over LOCAL_*_PORT settings, which win over the defaults; 0 picks a free port. */
  ports?: StackPorts;
  host?: string;
  /** Default in memory; npm start keeps blobs in a folder so that they survive a restart. */
  persistence?: { inMemory: true } | { location: string };
  /** Where the generated de-identification key and the dead-letter file live; default `<projectRoot>/.local-data`. */
  dataDir?: string;
  /** Applies `Values` of `<projectRoot>/local.settings.json` to process.env first (env wins); default true. */
  localSettings?: boolean;
  /** Fixed key (tests); otherwise DEID_KEY from the environment, otherwise one generated once into dataDir. */
  deidKey?: string;
  deidKeyId?: string;
  /** More settings for the functions; they win over everything else. */
  env?: Record<string, string>;
  logSink?: LogSink;
  /**
   * Runs after the containers exist and before the functions load. Default: ensureCatalog(settings)
   * (shared/catalog/cosmosCatalog), so that the catalog exists before the first event. null: nothing.
   */
  prepare?: ((context: PrepareContext) => Promise<void>) | null;
  eventSource?: { concurrency?: number; maxAttempts?: number; maxBackoffMs?: number; deadLetterFile?: string; deliveryTimeoutMs?: number };
}

export interface LocalStack {
  /** The settings the functions got (also set on process.env). */
  env: Record<string, string>;
  settings: Settings;
  blobPort: number;
  queuePort: number;
  cosmosPort: number;
  hostPort: number;
  /** `http://127.0.0.1:<blobPort>/devstoreaccount1` (through the event source). */
  blobEndpoint: string;
  cosmosEndpoint: string;
  hostUrl: string;
  host: FunctionHost;
  events: BlobEventSource;
  /** The development token issuer the API trusts; its role tokens are in `<dataDir>/tokens.json`. */
  devIssuer: DevIssuer;
  deadLetterFile: string;
  /** Emits BlobCreated for every blob already in the landing containers; returns how many. */
  reconcile(): Promise<number>;
  /** Stops everything, in reverse order. Idempotent. */
  stop(): Promise<void>;
}

/** Reads `Values` of local.settings.json into process.env without overriding what is set. */
export function applyLocalSettings(file: string, env: NodeJS.ProcessEnv = process.env): string[] {
  if (!fs.existsSync(file)) return [];
  let parsed: { Values?: Record<string, unknown> };
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { Values?: Record<string, unknown> };
  } catch (err) {
    throw new Error(`${path.basename(file)} is not valid JSON: ${(err as Error).message}`);
  }
  const applied: string[] = [];
  for (const [k, v] of Object.entries(parsed.Values ?? {})) {
    if (env[k] === undefined && v !== undefined && v !== null) {
      env[k] = String(v);
      applied.push(k);
    }
  }
  return applied;
}

function portSetting(explicit: number | undefined, name: string, fallback: number): number {
  if (explicit !== undefined) return explicit;
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number (0-65535), got "${raw}"`);
  return n;
}

/** The local development key: read from dataDir, generated once. Never a production key. */
export function localDeidKey(dataDir: string): string {
  const file = path.join(dataDir, 'deid.key');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  fs.mkdirSync(dataDir, { recursive: true });
  const key = `base64:${randomBytes(32).toString('base64')}`;
  fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

async function createCatalog({ settings }: PrepareContext): Promise<void> {
  await ensureCatalog(settings);
}

/**
 * Starts every service and the functions. Throws with the failing service named (a busy port,
 * Azurite not starting, a function file failing to load, invalid settings); whatever was
 * started by then is stopped first.
 */
export async function startStack(options: StackOptions): Promise<LocalStack> {
  const projectRoot = path.resolve(options.projectRoot);
  const hostName = options.host ?? '127.0.0.1';
  const dataDir = path.resolve(options.dataDir ?? path.join(projectRoot, '.local-data'));
  const sink = options.logSink ?? stdoutLogSink;
  if (options.localSettings !== false) applyLocalSettings(path.join(projectRoot, 'local.settings.json'));

  const ports = {
    blob: portSetting(options.ports?.blob, 'LOCAL_BLOB_PORT', DEFAULT_PORTS.blob),
    queue: portSetting(options.ports?.queue, 'LOCAL_QUEUE_PORT', DEFAULT_PORTS.queue),
    cosmos: portSetting(options.ports?.cosmos, 'LOCAL_COSMOS_PORT', DEFAULT_PORTS.cosmos),
    functions: portSetting(options.ports?.functions, 'LOCAL_HOST_PORT', DEFAULT_PORTS.functions),
  };

  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    stops.length = 0;
  };

  try {
    // Container names and the rest come from the same settings the functions validate.
    const preliminary = loadSettings({
      ...process.env,
      SourceStorage: azuriteConnectionString(),
      CosmosDb: `AccountEndpoint=http://${hostName}/;AccountKey=x;`,
      DEID_KEY: 'x'.repeat(32),
    });

    const azurite = await startAzurite({ host: hostName, blobPort: 0, queuePort: ports.queue, persistence: options.persistence });
    stops.push(() => azurite.stop());

    const deadLetterFile = options.eventSource?.deadLetterFile ?? path.join(dataDir, 'deadletter.jsonl');
    const events = await startEventSource({
      upstreamUrl: `http://${hostName}:${azurite.blobPort}`,
      port: ports.blob,
      host: hostName,
      sourceContainers: preliminary.sourceContainers,
      concurrency: options.eventSource?.concurrency ?? intSetting('LOCAL_EVENT_CONCURRENCY'),
      maxAttempts: options.eventSource?.maxAttempts ?? intSetting('LOCAL_EVENT_MAX_ATTEMPTS'),
      maxBackoffMs: options.eventSource?.maxBackoffMs,
      deliveryTimeoutMs: options.eventSource?.deliveryTimeoutMs,
      deadLetterFile,
      log: (level, message) => sink(level, '', `event source: ${message}`),
    });
    stops.push(() => events.stop());

    const cosmos = await startCosmosServer({ host: hostName, port: ports.cosmos });
    stops.push(() => cosmos.stop());

    // The API validates bearer tokens of this issuer exactly as it validates Entra ID's in Azure.
    const devIssuer = await startDevIssuer({ dataDir, host: hostName, port: portSetting(undefined, 'LOCAL_ISSUER_PORT', 0) });
    stops.push(() => devIssuer.stop());

    const storage = azuriteConnectionString(events.port, azurite.queuePort, hostName);
    const env: Record<string, string> = {
      FUNCTIONS_WORKER_RUNTIME: 'node',
      AZURE_FUNCTIONS_ENVIRONMENT: 'Development',
      SourceStorage: storage,
      AzureWebJobsStorage: storage,
      CosmosDb: cosmos.connectionString,
      DEID_KEY: options.deidKey || process.env.DEID_KEY || localDeidKey(dataDir),
      DEID_KEY_ID: options.deidKeyId || process.env.DEID_KEY_ID || 'local',
      ...devIssuer.env,
      ...options.env,
    };
    for (const [k, v] of Object.entries(env)) process.env[k] = v;
    const settings = loadSettings(process.env);

    const blobService = BlobServiceClient.fromConnectionString(storage);
    const containers = new Set([...settings.sourceContainers, settings.researchContainer, settings.quarantineContainer]);
    for (const name of containers) await blobService.getContainerClient(name).createIfNotExists();

    const prepare = options.prepare === undefined ? createCatalog : options.prepare;
    if (prepare) {
      try {
        await prepare({ settings, env });
      } catch (err) {
        throw new Error(`preparing the catalog failed: ${(err as Error).message}`, { cause: err });
      }
    }

    const host = await startHost({ projectRoot, port: ports.functions, host: hostName, env, logSink: sink });
    stops.push(() => host.stop());
    events.setWebhookBaseUrl(host.url);

    let stopping: Promise<void> | undefined;
    return {
      env,
      settings,
      blobPort: events.port,
      queuePort: azurite.queuePort,
      cosmosPort: cosmos.port,
      hostPort: host.port,
      blobEndpoint: events.blobEndpoint,
      cosmosEndpoint: cosmos.endpoint,
      hostUrl: host.url,
      host,
      events,
      devIssuer,
      deadLetterFile,
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

function intSetting(name: string): number | undefined {
  const raw = process.env[name]?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, got "${raw}"`);
  return n;
}
