/**
 * Settings of the Azure Native Qumulo (ANQ) source and of its snapshot-diff watcher, read and
 * validated once. A missing or malformed setting fails with one message naming every bad
 * setting; secrets (the S3 secret key, the REST token, the topic key) are never echoed.
 *
 * In Azure the secrets are Key Vault references in the app settings
 * (`@Microsoft.KeyVault(SecretUri=...)`), which the platform resolves into these variables.
 */
import { Collector } from './settings';

type Env = Record<string, string | undefined>;

/** Where the replicated archive lives on the cluster and how it is reached. */
export interface AnqSettings {
  /**
   * The cluster's name in source URLs: `anq://<cluster>/<file-system path>` is the form the
   * operations view and the catalog's index use for an ANQ source file.
   */
  cluster: string;
  s3: {
    /** The cluster's S3 endpoint (path-style addressing only on Qumulo). */
    endpoint: string;
    /** The bucket whose root directory is `exportPath`. */
    bucket: string;
    region: string;
    accessKeyId: string;
    secretAccessKey: string;
  };
  /** Absolute file-system path of the bucket's root directory, e.g. `/replica` ("/" for the root). */
  exportPath: string;
  /** Files under this relative prefix of the export are the archive's (`""`: all of it). */
  prefix: string;
  /**
   * `snapshot` (default): files are read as of the newest snapshot at or after the one an
   * event names, never from the live tree that replication is still writing. `head`: the live
   * tree, pinned by ETag as on the blob path (for clusters that keep no snapshots).
   */
  readFrom: 'snapshot' | 'head';
  /** The Qumulo REST API (snapshots, tree diffs, attributes); required when readFrom is snapshot. */
  rest?: { endpoint: string; token: string };
}

export interface AnqWatcherSettings {
  /** The Event Grid topic that receives VNA.Archive.FileReplicated / FileDeleted CloudEvents. */
  topic: { endpoint: string; key?: string; clientId?: string };
  /** NCRONTAB schedule of the timer trigger (six fields, seconds first). */
  schedule: string;
  /** Where the checkpoint document lives: a blob written with If-Match / If-None-Match. */
  checkpoint: {
    storage: { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; blobServiceUri: string; clientId?: string };
    container: string;
    blobName: string;
  };
  /** Snapshots are diffed from the oldest kept one on the first run, or only new ones from the newest. */
  startFrom: 'oldest' | 'latest';
  /**
   * On the first run, publish every file already in the snapshot the watcher starts from
   * (ANQ_WATCH_BACKFILL, default on): without it, the archive's existing files are never
   * ingested, only what changes afterwards.
   */
  backfill: boolean;
  /** Stop taking new pages after this long, so one timer run ends before the host's time-out (in notify mode: the length of a session). */
  maxRunMs: number;
  /**
   * `snapshots` (default): the snapshot-diff watcher. `notify`: the change-notification stream
   * with a periodic reconciliation, for targets that keep no snapshots (needs ANQ_READ_FROM=head).
   */
  mode: 'snapshots' | 'notify';
  notify: {
    /** A notified file is published once two looks this far apart agree (ANQ_NOTIFY_SETTLE_MS). */
    settleMs: number;
    /** A reconciliation pass at least this often (ANQ_NOTIFY_RECONCILE_MS), and after every stream registration. */
    reconcileMs: number;
    /** The listing state's blob, in the checkpoint container (ANQ_NOTIFY_STATE_BLOB). */
    stateBlobName: string;
  };
}

/** `/replica/`, `replica` and `/replica` all mean `/replica`; `/` stays `/`. */
export function normalizeExportPath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

function hasDotSegment(path: string): boolean {
  return path.split('/').some((s) => s === '.' || s === '..');
}

/**
 * Reads the ANQ source settings. Undefined when ANQ_S3_ENDPOINT is not set (the ANQ source is
 * off). Throws CONFIG_INVALID naming every bad setting.
 */
export function loadAnqSettings(env: Env = process.env): AnqSettings | undefined {
  const c = new Collector(env);
  const endpointText = c.optional('ANQ_S3_ENDPOINT');
  if (!endpointText) return undefined;
  const endpoint = c.secureUrl('ANQ_S3_ENDPOINT', endpointText);

  const cluster = c.str('ANQ_CLUSTER');
  if (cluster && !/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(cluster)) c.problems.push('ANQ_CLUSTER must be a host-name-like name (lower-case letters, digits, dots, hyphens)');
  // Qumulo bucket names follow the S3 rules (path-style addressing only).
  const bucket = c.str('ANQ_S3_BUCKET');
  if (bucket && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) c.problems.push('ANQ_S3_BUCKET must be a valid S3 bucket name');
  const region = c.str('ANQ_S3_REGION', 'us-east-1');
  const accessKeyId = c.str('ANQ_S3_ACCESS_KEY_ID');
  const secretAccessKey = c.str('ANQ_S3_SECRET_ACCESS_KEY');

  const exportText = c.str('ANQ_EXPORT_PATH');
  const exportPath = normalizeExportPath(exportText);
  if (exportText && (!exportText.startsWith('/') || hasDotSegment(exportPath) || exportPath.includes('//'))) {
    c.problems.push('ANQ_EXPORT_PATH must be an absolute file-system path without dot segments, e.g. /replica');
  }
  // A directory under the export: `dicom` and `/dicom/` both mean `dicom/`.
  const prefix = c.str('ANQ_PREFIX', '').replace(/^\/+/, '').replace(/([^/])$/, '$1/');
  if (hasDotSegment(prefix) || prefix.includes('//')) c.problems.push('ANQ_PREFIX must be a relative path without dot segments, e.g. dicom/');

  const readFrom = c.str('ANQ_READ_FROM', 'snapshot');
  if (readFrom !== 'snapshot' && readFrom !== 'head') c.problems.push('ANQ_READ_FROM must be "snapshot" or "head"');

  let rest: AnqSettings['rest'];
  const restText = c.optional('ANQ_REST_ENDPOINT');
  if (restText) {
    rest = { endpoint: c.secureUrl('ANQ_REST_ENDPOINT', restText), token: c.str('ANQ_REST_TOKEN') };
  } else if (readFrom === 'snapshot') {
    c.problems.push('ANQ_REST_ENDPOINT is required when ANQ_READ_FROM is snapshot (the snapshots are listed through the REST API)');
  }

  if (c.problems.length > 0) c.fail();
  return { cluster, s3: { endpoint, bucket, region, accessKeyId, secretAccessKey }, exportPath, prefix, readFrom: readFrom as 'snapshot' | 'head', rest };
}

/** The archive topic (ANQ_EVENTS_TOPIC_*): what the watcher and the backfill publish to. */
function topicOf(c: Collector, endpoint: string): AnqWatcherSettings['topic'] {
  // A query is allowed here: locally the "topic" is the function host's Event Grid webhook (`?functionName=...`).
  return { endpoint: endpoint ? c.secureUrl('ANQ_EVENTS_TOPIC_ENDPOINT', endpoint, true) : '', key: c.optional('ANQ_EVENTS_TOPIC_KEY'), clientId: c.optional('ANQ_EVENTS_TOPIC_CLIENT_ID') };
}

/** The storage and container of the watcher's checkpoint (and of the backfill job's document). */
function checkpointPlaceOf(c: Collector): Omit<AnqWatcherSettings['checkpoint'], 'blobName'> {
  let storage: AnqWatcherSettings['checkpoint']['storage'];
  const cs = c.optional('ANQ_CHECKPOINT_STORAGE') ?? c.optional('AzureWebJobsStorage');
  const uri = c.optional('ANQ_CHECKPOINT_STORAGE__blobServiceUri');
  if (uri) storage = { kind: 'identity', blobServiceUri: c.secureUrl('ANQ_CHECKPOINT_STORAGE__blobServiceUri', uri), clientId: c.optional('ANQ_CHECKPOINT_STORAGE__clientId') };
  else if (cs) storage = { kind: 'connectionString', connectionString: cs };
  else {
    c.problems.push('ANQ_CHECKPOINT_STORAGE (connection string), ANQ_CHECKPOINT_STORAGE__blobServiceUri (managed identity) or AzureWebJobsStorage is required');
    storage = { kind: 'connectionString', connectionString: '' };
  }
  const container = c.str('ANQ_CHECKPOINT_CONTAINER', 'anq-watcher');
  if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(container)) c.problems.push('ANQ_CHECKPOINT_CONTAINER must be a valid blob container name');
  return { storage, container };
}

/**
 * Reads the watcher's settings (the ANQ source settings must be valid too: the watcher needs
 * the REST API). Throws CONFIG_INVALID naming every bad setting.
 */
export function loadAnqWatcherSettings(env: Env = process.env): AnqWatcherSettings {
  const c = new Collector(env);
  const topic = topicOf(c, c.str('ANQ_EVENTS_TOPIC_ENDPOINT'));
  const schedule = c.str('ANQ_WATCH_SCHEDULE', '0 */1 * * * *');
  if (schedule.split(/\s+/).length !== 6) c.problems.push('ANQ_WATCH_SCHEDULE must be an NCRONTAB expression with six fields (seconds first)');

  const { storage, container } = checkpointPlaceOf(c);
  const blobName = c.str('ANQ_CHECKPOINT_BLOB', 'checkpoint.json');
  const startFrom = c.str('ANQ_WATCH_START', 'oldest');
  if (startFrom !== 'oldest' && startFrom !== 'latest') c.problems.push('ANQ_WATCH_START must be "oldest" or "latest"');
  const maxRunMs = c.int('ANQ_WATCH_MAX_RUN_MS', 240_000, 1_000, 3_600_000);
  const backfill = c.str('ANQ_WATCH_BACKFILL', 'on');
  if (backfill !== 'on' && backfill !== 'off') c.problems.push('ANQ_WATCH_BACKFILL must be "on" or "off"');

  const mode = c.str('ANQ_WATCH_MODE', 'snapshots');
  if (mode !== 'snapshots' && mode !== 'notify') c.problems.push('ANQ_WATCH_MODE must be "snapshots" or "notify"');
  // Without snapshots, an event names the live file: the ingestion must read the live tree.
  if (mode === 'notify' && (env.ANQ_READ_FROM || 'snapshot') !== 'head') c.problems.push('ANQ_WATCH_MODE=notify needs ANQ_READ_FROM=head (its events name no snapshot)');
  const settleMs = c.int('ANQ_NOTIFY_SETTLE_MS', 5_000, 10, 600_000);
  const reconcileMs = c.int('ANQ_NOTIFY_RECONCILE_MS', 900_000, 1_000, 86_400_000);
  const stateBlobName = c.str('ANQ_NOTIFY_STATE_BLOB', 'listing-state.json');

  if (c.problems.length > 0) c.fail();
  return {
    topic,
    schedule,
    checkpoint: { storage, container, blobName },
    startFrom: startFrom as 'oldest' | 'latest',
    backfill: backfill === 'on',
    maxRunMs,
    mode: mode as 'snapshots' | 'notify',
    notify: { settleMs, reconcileMs, stateBlobName },
  };
}

/** The backfill function's settings (functions/backfill.ts, docs/operations.md "Backfill in Azure"). */
export interface BackfillFunctionSettings {
  /** The archive topic; its endpoint is empty when ANQ_EVENTS_TOPIC_ENDPOINT is unset (a job then fails with CONFIG_INVALID). */
  topic: AnqWatcherSettings['topic'];
  /** The job document: a blob beside the ANQ watcher's checkpoint (BACKFILL_JOB_BLOB in ANQ_CHECKPOINT_CONTAINER). */
  job: AnqWatcherSettings['checkpoint'];
  /** One slice's length (BACKFILL_MAX_RUN_MS): keep it well under functionTimeout in host.json. */
  maxRunMs: number;
}

/**
 * Reads the backfill function's settings. The topic is not required here: without a job, the
 * timer only reads the job blob. Throws CONFIG_INVALID naming every bad setting.
 */
export function loadBackfillFunctionSettings(env: Env = process.env): BackfillFunctionSettings {
  const c = new Collector(env);
  const topic = topicOf(c, c.optional('ANQ_EVENTS_TOPIC_ENDPOINT') ?? '');
  const place = checkpointPlaceOf(c);
  const blobName = c.str('BACKFILL_JOB_BLOB', 'backfill-job.json');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(blobName)) c.problems.push('BACKFILL_JOB_BLOB must be a plain blob name (letters, digits, ".", "_", "-")');
  const maxRunMs = c.int('BACKFILL_MAX_RUN_MS', 240_000, 1_000, 3_600_000);
  if (c.problems.length > 0) c.fail();
  return { topic, job: { ...place, blobName }, maxRunMs };
}
