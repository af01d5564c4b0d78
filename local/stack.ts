/**
 * The whole pipeline on embedded local services: Azurite, the blob proxy that plays Event Grid,
 * the Cosmos DB emulator server and the function host, wired so that the functions see the same
 * settings they would see in Azure (connection strings named SourceStorage, CosmosDb, ...).
 *
 * With `anq`, also the Azure Native Qumulo stand-ins (s3rver and the Qumulo REST stand-in) over
 * a local folder that plays the replication target: the functions get the ANQ_* settings, the
 * snapshot watcher's timer fires on its schedule and publishes to the host's own Event Grid
 * webhook, as the Event Grid topic's subscription does in Azure; its checkpoint is in Azurite.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { QumuloRestClient } from '../shared/anq/qumuloRest';
import { ensureCatalog } from '../shared/catalog/cosmosCatalog';
import { loadSettings, Settings } from '../shared/config/settings';
import { DevIssuer, startDevIssuer } from './devIssuer';
import { azuriteConnectionString } from './emulators';
import { BlobEventSource, emitExistingBlobs, startEventSource } from './eventSource';
import { FunctionHost, LogSink, startHost, stdoutLogSink } from './host';
import { AnqStandIn, STAND_IN_S3_KEY, startAnqStandIn } from './services/anqStandIn';
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
  /** How often Azurite reclaims deleted blobs' space (local/services/azurite.ts); default Azurite's ten minutes. */
  spaceReclaimIntervalMs?: number;
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
  eventSource?: { concurrency?: number; maxAttempts?: number; maxEventsPerBatch?: number; maxBackoffMs?: number; deadLetterFile?: string; deliveryTimeoutMs?: number };
  /** Runs the ANQ path too (npm start's default); off when undefined (the tests' blob path). */
  anq?: LocalAnqOptions;
  /**
   * Publishes VNA.Catalog.InstanceCataloged to the host's own `shareCatalogedInstance` webhook, as
   * the topic's subscription does in Azure, so that live data-sharing agreements are fed (npm
   * start's default); off when undefined. An EVENTGRID_TOPIC_ENDPOINT already set wins.
   */
  liveSharing?: boolean;
}

export interface LocalAnqOptions {
  /** The folder that plays the replication target (the export's root). */
  targetDir: string;
  /** Where the stand-ins keep their state (s3rver's store, the snapshot records); outside targetDir. */
  stateDir: string;
  /** Default `anq-local`, `replica`, `/replica`, `` (the whole export). */
  cluster?: string;
  bucket?: string;
  exportPath?: string;
  prefix?: string;
  /** The watcher's NCRONTAB schedule; default ANQ_WATCH_SCHEDULE, else every 5 seconds. */
  watchSchedule?: string;
  /** `snapshots` (default: ANQ_WATCH_MODE, else snapshots) or `notify`: the stand-in then watches the folder live and the files are read live. */
  watchMode?: 'snapshots' | 'notify';
}

/** The ANQ side of a running stack. */
export interface LocalAnq {
  standIn: AnqStandIn;
  cluster: string;
  bucket: string;
  exportPath: string;
  prefix: string;
  targetDir: string;
  restToken: string;
  /** The watcher's checkpoint blob (container, name) in Azurite. */
  checkpoint: { container: string; blobName: string };
  /** True when this start took the baseline snapshot (the stand-in had none). */
  baselineTaken: boolean;
  watchMode: 'snapshots' | 'notify';
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
  /**
   * Azurite's own blob port, behind the event source: what is written there raises no event
   * (an archive that was there before the pipeline, for the backfill's measurement).
   */
  azuriteBlobPort: number;
  cosmosEndpoint: string;
  hostUrl: string;
  host: FunctionHost;
  events: BlobEventSource;
  /** The development token issuer the API trusts; its role tokens are in `<dataDir>/tokens.json`. */
  devIssuer: DevIssuer;
  deadLetterFile: string;
  /** The ANQ stand-ins and settings, when started with `anq`. */
  anq?: LocalAnq;
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

    const azurite = await startAzurite({ host: hostName, blobPort: 0, queuePort: ports.queue, persistence: options.persistence, spaceReclaimIntervalMs: options.spaceReclaimIntervalMs });
    stops.push(() => azurite.stop());

    const deadLetterFile = options.eventSource?.deadLetterFile ?? path.join(dataDir, 'deadletter.jsonl');
    const events = await startEventSource({
      upstreamUrl: `http://${hostName}:${azurite.blobPort}`,
      port: ports.blob,
      host: hostName,
      sourceContainers: preliminary.sourceContainers,
      concurrency: options.eventSource?.concurrency ?? intSetting('LOCAL_EVENT_CONCURRENCY'),
      maxAttempts: options.eventSource?.maxAttempts ?? intSetting('LOCAL_EVENT_MAX_ATTEMPTS'),
      maxEventsPerBatch: options.eventSource?.maxEventsPerBatch ?? intSetting('LOCAL_EVENT_MAX_EVENTS_PER_BATCH'),
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

    let anq: LocalAnq | undefined;
    let anqEnv: Record<string, string> = {};
    if (options.anq) {
      anq = await startLocalAnq(options.anq, hostName);
      const standIn = anq.standIn;
      stops.push(() => standIn.close());
      anqEnv = {
        ANQ_CLUSTER: anq.cluster,
        ANQ_S3_ENDPOINT: standIn.s3Endpoint,
        ANQ_S3_BUCKET: anq.bucket,
        ANQ_S3_ACCESS_KEY_ID: STAND_IN_S3_KEY.accessKeyId,
        ANQ_S3_SECRET_ACCESS_KEY: STAND_IN_S3_KEY.secretAccessKey,
        ANQ_EXPORT_PATH: anq.exportPath,
        ANQ_PREFIX: anq.prefix,
        ANQ_READ_FROM: anq.watchMode === 'notify' ? 'head' : 'snapshot',
        ANQ_REST_ENDPOINT: standIn.restEndpoint,
        ANQ_REST_TOKEN: anq.restToken,
        // Read when the function files load; the topic endpoint is set once the host's port is known.
        ANQ_WATCH_SCHEDULE: options.anq.watchSchedule ?? process.env.ANQ_WATCH_SCHEDULE ?? '*/5 * * * * *',
        ANQ_WATCH_START: 'oldest',
        ANQ_CHECKPOINT_CONTAINER: anq.checkpoint.container,
        ANQ_CHECKPOINT_BLOB: anq.checkpoint.blobName,
        // The host's webhook does not check keys (loopback only); a key keeps the publisher off Entra ID.
        ANQ_EVENTS_TOPIC_KEY: 'local-topic-key',
        ANQ_WATCH_MODE: anq.watchMode,
        // A notify session holds its timer run, and the host's stop waits for that run: short sessions keep a stop quick.
        ...(anq.watchMode === 'notify' ? { ANQ_WATCH_MAX_RUN_MS: process.env.ANQ_WATCH_MAX_RUN_MS ?? '15000' } : {}),
      };
    }

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
      ...anqEnv,
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
    if (anq) {
      // In Azure: the custom topic, and its subscription delivering to ingestReplicatedFile. Locally the watcher posts to the webhook itself.
      env.ANQ_EVENTS_TOPIC_ENDPOINT = options.env?.ANQ_EVENTS_TOPIC_ENDPOINT ?? `${host.url}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`;
      process.env.ANQ_EVENTS_TOPIC_ENDPOINT = env.ANQ_EVENTS_TOPIC_ENDPOINT;
    }
    if (options.liveSharing && !process.env.EVENTGRID_TOPIC_ENDPOINT) {
      // Read by the functions on first use, after this: the runtime is built at the first invocation.
      env.EVENTGRID_TOPIC_ENDPOINT = `${host.url}/runtime/webhooks/eventgrid?functionName=shareCatalogedInstance`;
      env.EVENTGRID_TOPIC_KEY = 'local-topic-key';
      process.env.EVENTGRID_TOPIC_ENDPOINT = env.EVENTGRID_TOPIC_ENDPOINT;
      process.env.EVENTGRID_TOPIC_KEY = env.EVENTGRID_TOPIC_KEY;
    }
    if (anq || process.env.LOCAL_TIMERS === 'on') host.startTimers();

    let stopping: Promise<void> | undefined;
    return {
      env,
      settings,
      blobPort: events.port,
      queuePort: azurite.queuePort,
      cosmosPort: cosmos.port,
      hostPort: host.port,
      blobEndpoint: events.blobEndpoint,
      azuriteBlobPort: azurite.blobPort,
      cosmosEndpoint: cosmos.endpoint,
      hostUrl: host.url,
      host,
      events,
      devIssuer,
      deadLetterFile,
      ...(anq ? { anq } : {}),
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

/**
 * Starts the ANQ stand-ins over the replication target and, when they hold no snapshot yet,
 * takes the `baseline` snapshot of the target as it is (empty on a first start): the watcher
 * diffs every later snapshot against it, so what is placed afterwards is published.
 */
async function startLocalAnq(options: LocalAnqOptions, hostName: string): Promise<LocalAnq> {
  const targetDir = path.resolve(options.targetDir);
  const stateDir = path.resolve(options.stateDir);
  if (`${stateDir}${path.sep}`.startsWith(`${targetDir}${path.sep}`)) throw new Error('the ANQ stand-ins\' state folder must be outside the replication target');
  const cluster = options.cluster ?? 'anq-local';
  const bucket = options.bucket ?? 'replica';
  const exportPath = options.exportPath ?? '/replica';
  const prefix = options.prefix ?? '';
  // A token per stand-in state, kept with it, so that `npm run ingest` (another process) can take snapshots.
  fs.mkdirSync(stateDir, { recursive: true });
  const tokenFile = path.join(stateDir, 'rest.token');
  if (!fs.existsSync(tokenFile)) fs.writeFileSync(tokenFile, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  const restToken = fs.readFileSync(tokenFile, 'utf8').trim();
  const watchMode = options.watchMode ?? (process.env.ANQ_WATCH_MODE === 'notify' ? 'notify' : 'snapshots');
  const standIn = await startAnqStandIn({
    ...(watchMode === 'notify' ? { notify: {} } : {}),
    targetDir,
    stateDir,
    exportPath,
    bucket,
    restToken,
    host: hostName,
    s3Port: portSetting(undefined, 'LOCAL_ANQ_S3_PORT', 0),
    restPort: portSetting(undefined, 'LOCAL_ANQ_REST_PORT', 0),
  });
  try {
    const snapshots = await new QumuloRestClient(standIn.restEndpoint, restToken).listSnapshots();
    const baselineTaken = snapshots.length === 0;
    if (baselineTaken) await standIn.takeSnapshot('baseline');
    return { standIn, cluster, bucket, exportPath, prefix, targetDir, restToken, checkpoint: { container: 'anq-watcher', blobName: 'checkpoint.json' }, baselineTaken, watchMode };
  } catch (err) {
    await standIn.close();
    throw new Error(`the ANQ stand-ins did not answer: ${(err as Error).message}`, { cause: err });
  }
}

function intSetting(name: string): number | undefined {
  const raw = process.env[name]?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, got "${raw}"`);
  return n;
}
