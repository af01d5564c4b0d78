/**
 * `npm run replay -- [--file <deadletter.jsonl> | --container <dead-letter container>] [--list | --apply] [--force]`
 * lists dead-lettered events (why, the last HTTP status, the index's state of their file now and
 * its error code) and, with --apply, re-submits them to the archive topic with their own event
 * ids (docs/operations.md "Dead letters"). Replayed ids go to a ledger (`<file>.replayed` or
 * `.local-data/replayed-<container>.jsonl`) and are not re-submitted again without --force.
 *
 * Settings as for npm run backfill: SourceStorage, CosmosDb, COSMOS_*, SOURCE_CONTAINERS,
 * ANQ_EVENTS_TOPIC_ENDPOINT (+ ANQ_EVENTS_TOPIC_KEY) and, for ANQ URLs, the ANQ_* settings.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { TopicBackfillSink } from '../shared/backfill/adapters';
import type { BackfillEvent } from '../shared/backfill/backfill';
import { type DeadLetteredEvent, describeDeadLetters, parseDeadLetterText, replayEvent } from '../shared/backfill/deadLetters';
import { catalogContainer, CosmosIndexStore, createCosmosClient, createDocumentClient } from '../shared/catalog/cosmosCatalog';
import { loadAnqSettings } from '../shared/config/anqSettings';
import { loadSettings } from '../shared/config/settings';
import { resolveSourceUrl } from '../shared/events/ingestEvents';
import { blobServiceClient } from '../shared/storage/blobStores';

interface ReplayOptions { file?: string; container?: string; apply: boolean; force: boolean }

export function parseReplayArgs(args: string[]): ReplayOptions {
  const o: ReplayOptions = { apply: false, force: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--file') o.file = args[++i];
    else if (a === '--container') o.container = args[++i];
    else if (a === '--apply') o.apply = true;
    else if (a === '--list') o.apply = false;
    else if (a === '--force') o.force = true;
    else throw new Error(`unknown option ${a} (options: --file <jsonl>, --container <name>, --list, --apply, --force)`);
  }
  if (o.file && o.container) throw new Error('--file and --container: name one');
  return o;
}

export async function replayMain(args: string[], env: Record<string, string | undefined> = process.env, out: (l: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  let o: ReplayOptions;
  try {
    o = parseReplayArgs(args);
  } catch (e) {
    out(`replay: ${(e as Error).message}`);
    return 2;
  }
  const settings = loadSettings(env);
  const endpoint = settings.sourceStorage.kind === 'connectionString' ? settings.sourceStorage.blobEndpoint : settings.sourceStorage.blobServiceUri;
  let events: DeadLetteredEvent[] = [];
  let unreadable = 0;
  let ledger: string;
  if (o.container) {
    const container = blobServiceClient(settings.sourceStorage).getContainerClient(o.container);
    for await (const b of container.listBlobsFlat()) {
      const text = (await container.getBlobClient(b.name).downloadToBuffer()).toString('utf8');
      const parsed = parseDeadLetterText(text);
      events.push(...parsed.events);
      unreadable += parsed.unreadable;
    }
    ledger = join('.local-data', `replayed-${o.container}.jsonl`);
  } else {
    const file = o.file ?? join('.local-data', 'deadletter.jsonl');
    if (!existsSync(file)) {
      out(`replay: no dead-letter file at ${file}: nothing was dead-lettered`);
      return 0;
    }
    const parsed = parseDeadLetterText(readFileSync(file, 'utf8'));
    events = parsed.events;
    unreadable = parsed.unreadable;
    ledger = `${file}.replayed`;
  }
  // One row per event id: Event Grid may dead-letter a redelivered event more than once.
  events = [...new Map(events.map((e) => [e.id, e])).values()];
  const replayed = new Set(existsSync(ledger) ? readFileSync(ledger, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id) : []);
  const anq = loadAnqSettings(env);
  const canonical = (url: string) => {
    if (url.startsWith('anq://')) return anq ? url : undefined;
    const r = resolveSourceUrl(url, [endpoint], settings.sourceContainers);
    return r.kind === 'source' ? r.location.canonicalUrl : undefined;
  };
  const index = new CosmosIndexStore(catalogContainer(createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.indexContainer), createDocumentClient(settings.cosmos)));
  const rows = await describeDeadLetters(events, index, canonical, replayed);
  out(`${rows.length} dead-lettered event(s)${unreadable ? `, ${unreadable} unreadable line(s)` : ''}`);
  out(['event id', 'type', 'reason', 'last status', 'source', 'index now', 'error code', 'replayed'].join('\t'));
  for (const r of rows) out([r.id, r.type, r.reason, r.lastHttpStatusCode ?? '', r.source, r.indexStatus, r.errorCode ?? '', r.replayed ? 'yes' : 'no'].join('\t'));
  if (!o.apply) return 0;

  const topicEndpoint = env.ANQ_EVENTS_TOPIC_ENDPOINT;
  if (!topicEndpoint) {
    out('replay: ANQ_EVENTS_TOPIC_ENDPOINT must name the archive topic');
    return 2;
  }
  const sink = new TopicBackfillSink({ endpoint: topicEndpoint, key: env.ANQ_EVENTS_TOPIC_KEY, clientId: env.ANQ_EVENTS_TOPIC_CLIENT_ID });
  mkdirSync(dirname(ledger), { recursive: true });
  let sent = 0;
  let skipped = 0;
  let failed = 0;
  for (const e of events) {
    if (replayed.has(e.id) && !o.force) { skipped++; continue; }
    const event = replayEvent(e, new Date().toISOString());
    if (!event) { skipped++; continue; }
    try {
      await sink.publish([event as unknown as BackfillEvent]);
      appendFileSync(ledger, `${JSON.stringify({ id: e.id, replayedAt: new Date().toISOString() })}\n`);
      sent++;
    } catch (err) {
      failed++;
      out(`replay: event ${e.id} was not accepted: ${(err as Error).message}`);
    }
  }
  out(`replay: ${sent} re-submitted, ${skipped} skipped (already replayed or not an ingestion event), ${failed} not accepted`);
  return failed > 0 ? 1 : 0;
}

if (require.main === module) {
  replayMain(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => { process.stderr.write(`replay: ${(e as Error).message}\n`); process.exitCode = 1; });
}
