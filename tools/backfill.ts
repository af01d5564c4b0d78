/**
 * `npm run backfill -- [--container <name>] [--prefix <p>] [--rate <events/s>] ...`: ingests the
 * files already in a landing container (README "Operations", docs/operations.md "Backfill").
 * `--anq <path>` backfills the ANQ export instead: the files under that file-system path as of
 * the newest snapshot (or `--snapshot <id>`), listed through the cluster's S3 API, each
 * published as the ANQ watcher's backfill event (shared/backfill/anqLister.ts; settings
 * ANQ_S3_*, ANQ_REST_*, as the functions read them).
 * It lists the container in pages, skips the versions the index already holds, and publishes
 * one `VNA.Archive.FileReplicated` per remaining file to the archive topic
 * (ANQ_EVENTS_TOPIC_ENDPOINT; locally the function host's Event Grid webhook), at a set rate.
 * A checkpoint file makes a stopped or killed run resume where it stopped. Progress: a bar with
 * rate and ETA on a terminal, lines otherwise, and `Backfill*` metrics in telemetry.
 *
 * Re-index: a version cataloged under another key id or profile than DEID_KEY_ID and
 * DEID_PROFILE name (the functions' settings, which this command must be given too) is emitted
 * again, and ingestion re-creates its research side (docs/operations.md "Key rotation").
 *
 * Settings: as the functions read them (SourceStorage, CosmosDb, COSMOS_*, SOURCE_CONTAINERS,
 * APPLICATIONINSIGHTS_CONNECTION_STRING or TELEMETRY_CAPTURE_FILE) plus ANQ_EVENTS_TOPIC_ENDPOINT
 * and ANQ_EVENTS_TOPIC_KEY (without a key: the signed-in identity, which needs EventGrid Data Sender).
 */
import { join } from 'node:path';

import { BlobContainerLister, FileCheckpointStore, TopicBackfillSink } from '../shared/backfill/adapters';
import { anqBackfillLister } from '../shared/backfill/anqLister';
import { type BackfillOptions, type BackfillProgress, runBackfill, type SourceLister } from '../shared/backfill/backfill';
import { catalogContainer, CosmosIndexStore, createCosmosClient, createDocumentClient } from '../shared/catalog/cosmosCatalog';
import { loadAnqSettings } from '../shared/config/anqSettings';
import { loadSettings } from '../shared/config/settings';
import { generationOf } from '../shared/ingest/generation';
import { loadDeidProfile } from '../shared/runtime';
import { blobServiceClient } from '../shared/storage/blobStores';
import { createTelemetry, flushTelemetry } from '../shared/telemetry/telemetry';
import { progressWriter } from './progressBar';

interface CliOptions extends BackfillOptions {
  container?: string;
  prefix?: string;
  checkpoint?: string;
  /** An ANQ file-system path (inside the configured export and prefix) instead of a container. */
  anq?: string;
  snapshot?: number;
}

const USAGE = 'usage: npm run backfill -- [--container <name>] [--prefix <blob name prefix>] | [--anq <file-system path> [--snapshot <id>]] [--rate <events/s, 0: unpaced>] [--page-size <n>] [--batch-size <n>] [--concurrency <n>] [--checkpoint <file>] [--no-count] [--max-run-seconds <n>]';

export function parseBackfillArgs(args: string[]): CliOptions {
  const o: CliOptions = { ratePerSecond: 200, pageSize: 1000, batchSize: 10, concurrency: 16, countFirst: true };
  const num = (name: string, v: string | undefined, min: number, max: number) => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--container') o.container = args[++i];
    else if (a === '--prefix') o.prefix = args[++i];
    else if (a === '--anq') o.anq = args[++i];
    else if (a === '--snapshot') o.snapshot = num('--snapshot', args[++i], 0, Number.MAX_SAFE_INTEGER);
    else if (a === '--checkpoint') o.checkpoint = args[++i];
    else if (a === '--rate') o.ratePerSecond = num('--rate', args[++i], 0, 100_000);
    else if (a === '--page-size') o.pageSize = num('--page-size', args[++i], 1, 5000);
    else if (a === '--batch-size') o.batchSize = num('--batch-size', args[++i], 1, 100);
    else if (a === '--concurrency') o.concurrency = num('--concurrency', args[++i], 1, 256);
    else if (a === '--max-run-seconds') o.maxRunMs = num('--max-run-seconds', args[++i], 1, 86_400) * 1000;
    else if (a === '--no-count') o.countFirst = false;
    else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  if (o.anq !== undefined && (o.container !== undefined || o.prefix !== undefined)) throw new Error('--anq lists the ANQ export: --container and --prefix are for a landing container');
  if (o.anq !== undefined && !o.anq.startsWith('/')) throw new Error('--anq takes an absolute file-system path on the cluster (for example /replica/dicom/)');
  if (o.snapshot !== undefined && o.anq === undefined) throw new Error('--snapshot goes with --anq');
  return o;
}

export async function backfillMain(args: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  let o: CliOptions;
  try {
    o = parseBackfillArgs(args);
  } catch (e) {
    process.stderr.write(`backfill: ${(e as Error).message}\n`);
    return 2;
  }
  const settings = loadSettings(env);
  const container = o.container ?? settings.sourceContainers[0] ?? '';
  if (o.anq === undefined && !settings.sourceContainers.includes(container)) {
    process.stderr.write(`backfill: --container must be one of SOURCE_CONTAINERS (${settings.sourceContainers.join(', ')}): ingestion ignores other containers\n`);
    return 2;
  }
  const topicEndpoint = env.ANQ_EVENTS_TOPIC_ENDPOINT;
  if (!topicEndpoint) {
    process.stderr.write('backfill: ANQ_EVENTS_TOPIC_ENDPOINT must name the archive topic (locally: <host>/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile)\n');
    return 2;
  }
  const endpoint = settings.sourceStorage.kind === 'connectionString' ? settings.sourceStorage.blobEndpoint : settings.sourceStorage.blobServiceUri;
  let lister: SourceLister;
  let defaultCheckpoint: string;
  if (o.anq !== undefined) {
    try {
      const anq = await anqBackfillLister(loadAnqSettings(env), o.anq, o.snapshot);
      lister = anq.lister;
      // One checkpoint per snapshot: a pass over a newer snapshot starts anew and skips what is done.
      defaultCheckpoint = join('.local-data', 'backfill', `anq-${anq.snapshotId}-${anq.prefix.replace(/[^A-Za-z0-9]+/g, '_')}.json`);
    } catch (e) {
      process.stderr.write(`backfill: ${(e as Error).message}\n`);
      return 2;
    }
  } else {
    lister = new BlobContainerLister(blobServiceClient(settings.sourceStorage).getContainerClient(container), endpoint, o.prefix);
    defaultCheckpoint = join('.local-data', 'backfill', `${container}${o.prefix ? `-${o.prefix.replace(/[^A-Za-z0-9]+/g, '_')}` : ''}.json`);
  }
  const source = o.anq !== undefined ? 'anq' : 'blob';
  const cosmos = createCosmosClient(settings.cosmos);
  const index = new CosmosIndexStore(catalogContainer(cosmos.database(settings.cosmosDatabase).container(settings.indexContainer), createDocumentClient(settings.cosmos)));
  const checkpoints = new FileCheckpointStore(o.checkpoint ?? defaultCheckpoint);
  // The generation the functions run with: versions cataloged under another are re-indexed.
  const generation = generationOf({ keyId: settings.deidKeyId, profile: loadDeidProfile(settings.deidProfilePath) });
  const telemetry = createTelemetry({ connectionString: settings.appInsightsConnectionString, captureFile: settings.telemetryCaptureFile });
  const bar = progressWriter(process.stderr);
  let lastMetric = 0;
  const onProgress = (p: BackfillProgress) => {
    bar.update(p);
    if (Date.now() - lastMetric >= 10_000 || p.done) {
      lastMetric = Date.now();
      // Counts only: no names, no URLs.
      telemetry.trackMetric('BackfillDone', p.emitted + p.skipped, { lister: source });
      telemetry.trackMetric('BackfillRate', p.rate, { lister: source });
      telemetry.trackMetric('BackfillReindexed', p.reindexed, { lister: source });
      if (p.total !== undefined) telemetry.trackMetric('BackfillTotal', p.total, { lister: source });
    }
  };
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let last: BackfillProgress | undefined;
  try {
    const cp = await runBackfill(
      { lister, sink: new TopicBackfillSink({ endpoint: topicEndpoint, key: env.ANQ_EVENTS_TOPIC_KEY, clientId: env.ANQ_EVENTS_TOPIC_CLIENT_ID }), checkpoints, index, generation, onProgress: (p) => { last = p; onProgress(p); } },
      { ...o, abortSignal: controller.signal },
    );
    if (last) bar.finish(last);
    process.stderr.write(cp.done
      ? `backfill: done: ${cp.counts.emitted} emitted, ${cp.counts.skipped} already cataloged, ${cp.counts.listed} listed${cp.counts.reindexed ? `; ${cp.counts.reindexed} of the emitted re-indexed under key ${generation.keyId}, profile ${generation.profile} ${generation.profileVersion}` : ''}\n`
      : `backfill: stopped; run it again to resume (${cp.counts.emitted + cp.counts.skipped} done)\n`);
    return cp.done ? 0 : 3;
  } catch (e) {
    if (last) bar.finish(last);
    process.stderr.write(`backfill: ${(e as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await flushTelemetry().catch(() => undefined);
  }
}

if (require.main === module) {
  backfillMain(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => { process.stderr.write(`backfill: ${(e as Error).message}\n`); process.exitCode = 1; });
}
