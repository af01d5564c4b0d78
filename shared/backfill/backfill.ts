/**
 * Backfill of an archive that already exists: enumerates the source in pages, skips the
 * versions the index already holds a terminal state for, and emits one ingestion event
 * (`VNA.Archive.FileReplicated` with the source URL and its ETag) per remaining file, at a set
 * rate, through the same topic and function as live events. Ingestion stays the one place that
 * decides; the backfill only says "look at this file".
 *
 * Re-index: a version the index holds as cataloged under another key id or profile than
 * `generation` (the settings the functions run with) is not skipped: its event, with an id that
 * names the generation, makes ingestion re-create its research side (shared/ingest/generation.ts).
 * No flag is needed; after a key rotation or a profile change, a backfill re-indexes what the
 * change concerns and skips the rest with the same point read as before.
 *
 * Resumable: the position (the page's cursor and how many of its files are done) is
 * checkpointed after every batch whose events were accepted, with a conditional write. A stop
 * or a kill resumes at the last checkpoint; the batches in flight at that moment are emitted
 * again, with the same event ids, and the ingestion of a version already done is a no-op, so no
 * file is missed and none is ingested twice.
 */
import { createHash } from 'node:crypto';

import type { ArchiveFileEvent } from '../anq/watcher';
import type { IngestionDocument } from '../catalog/documents';
import { ErrorCodes, PipelineError } from '../errors';
import { FILE_REPLICATED } from '../events/ingestEvents';
import { type Generation, generationTag, needsReindex } from '../ingest/generation';
import { sourceId } from '../ingest/ingestSourceFile';

/** One file of the source, as its listing gives it. */
export interface BackfillItem {
  /** Canonical source URL (what the index is keyed by). */
  url: string;
  etag: string;
  size: number;
  lastModified?: string;
}

export interface BackfillPage {
  items: BackfillItem[];
  /** Cursor of the next page; absent on the last page. */
  next?: string;
}

/** Enumerates the source in a stable order. Idempotent; throws SERVICE_* on faults. */
export interface SourceLister {
  /** A stable name of what is listed (no PHI: an account and container, or a cluster and export). */
  readonly name: string;
  listPage(cursor: string | undefined, pageSize: number, options?: { abortSignal?: AbortSignal }): Promise<BackfillPage>;
  /**
   * The event of one listed file, when the source has its own (the ANQ export: the watcher's
   * events, shared/backfill/anqLister.ts); backfillEvent otherwise. `reindexUnder` is set for
   * a re-index: the id must differ from the first ingestion's.
   */
  eventOf?(item: BackfillItem, time: string, reindexUnder?: Generation): ArchiveFileEvent;
}

/** The ingestion events, as the archive topic takes them (CloudEvents 1.0). */
export interface BackfillEvent {
  id: string;
  type: typeof FILE_REPLICATED;
  source: string;
  subject: string;
  time: string;
  data: { url: string; eTag: string; size: number; backfill: true };
}

/** What the backfill publishes: its own events, or for the ANQ export the watcher's. */
export type PublishedEvent = BackfillEvent | ArchiveFileEvent;

export interface BackfillEventSink {
  /** Publishes a batch; resolves once the topic accepted it. Throws SERVICE_* when it did not. */
  publish(events: PublishedEvent[]): Promise<void>;
}

export interface BackfillCheckpoint {
  version: 1;
  lister: string;
  startedAt: string;
  updatedAt: string;
  /**
   * The generation (generationTag) the pass compares against: a checkpoint of another one, done
   * or not, starts a new pass from the first page (after a rotation, the files passed already
   * need their re-index too). Absent in older checkpoints and when the caller gives none.
   */
  generation?: string;
  /** Files in the source when the run started (a listing pass), for the progress and ETA. */
  total?: number;
  /** Cursor of the page being worked on (undefined: the first page). */
  cursor?: string;
  /** Files of that page already done (emitted or skipped). */
  offset: number;
  done: boolean;
  /** `reindexed`: of the emitted, versions cataloged under another key or profile (absent in older checkpoints). */
  counts: { listed: number; emitted: number; skipped: number; reindexed?: number };
}

export interface BackfillCheckpointStore {
  read(): Promise<{ checkpoint: BackfillCheckpoint; etag: string } | undefined>;
  /** Writes only if the stored one still has `etag` (absent: only if none exists). Throws CATALOG_CONFLICT otherwise. */
  write(checkpoint: BackfillCheckpoint, etag: string | undefined): Promise<string>;
}

/** The part of the index the backfill reads: a point read by source id. */
export interface IndexLookup {
  get(id: string): Promise<{ doc: Pick<IngestionDocument, 'status' | 'eTag' | 'deidentification'> } | undefined>;
}

export interface BackfillProgress {
  total?: number;
  listed: number;
  emitted: number;
  skipped: number;
  /** Of the emitted, versions re-indexed under the current key or profile. */
  reindexed: number;
  /** Files done per second over the run so far (this process). */
  rate: number;
  /** Seconds left at that rate, when the total is known. */
  etaSeconds?: number;
  done: boolean;
}

export interface BackfillDeps {
  lister: SourceLister;
  sink: BackfillEventSink;
  checkpoints: BackfillCheckpointStore;
  index: IndexLookup;
  onProgress?: (p: BackfillProgress) => void;
  /**
   * The key id and profile the functions run with: a version cataloged under another is emitted
   * again (re-index). Undefined: any cataloged version is skipped, whatever made it.
   */
  generation?: Generation;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface BackfillOptions {
  /** Files listed per page (blob listings give at most 5,000). */
  pageSize?: number;
  /** Events per publish and per checkpoint. */
  batchSize?: number;
  /** Events emitted per second at most (0: unpaced). */
  ratePerSecond?: number;
  /** Batches published at once. */
  concurrency?: number;
  /** Count the source first (a listing pass) for the progress bar's total and ETA. */
  countFirst?: boolean;
  /** Stop taking new batches after this long (a function run), leaving a checkpoint to resume from. */
  maxRunMs?: number;
  abortSignal?: AbortSignal;
}

/** What one batch did. */
interface Tally {
  emitted: number;
  skipped: number;
  reindexed: number;
}

/** The states after which the same version needs nothing more (ingestion says "unchanged" for them). */
const TERMINAL = new Set(['cataloged', 'failed', 'quarantined']);

/** ETags compared without their quotes: listings give them bare, reads quoted. */
function sameVersion(a: string | undefined, b: string): boolean {
  return a !== undefined && a.replace(/^(W\/)?"|"$/g, '') === b.replace(/^(W\/)?"|"$/g, '');
}

/**
 * The same event id for the same file version, in every run: a repeat is recognisably a repeat.
 * A re-index names the generation it re-indexes under: it is another request than the first
 * ingestion of that version.
 */
export function backfillEventId(url: string, etag: string, reindexUnder?: Generation): string {
  const tail = reindexUnder ? `\0${generationTag(reindexUnder)}` : '';
  return `backfill-${createHash('sha256').update(`${url}\0${etag}${tail}`).digest('hex').slice(0, 40)}`;
}

export function backfillEvent(item: BackfillItem, time: string, reindexUnder?: Generation): BackfillEvent {
  const u = new URL(item.url);
  return {
    id: backfillEventId(item.url, item.etag, reindexUnder),
    type: FILE_REPLICATED,
    source: `/backfill/${u.host}`,
    subject: u.pathname,
    time,
    data: { url: item.url, eTag: item.etag, size: item.size, backfill: true },
  };
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/**
 * Runs (or resumes) the backfill until the source is exhausted, maxRunMs passes or the signal
 * aborts. Resolves with the checkpoint reached; `done` says whether anything is left.
 * Throws SERVICE_* when listing, the index or the topic fail (the checkpoint keeps what was done).
 */
export async function runBackfill(deps: BackfillDeps, options: BackfillOptions = {}): Promise<BackfillCheckpoint> {
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? defaultSleep;
  const pageSize = options.pageSize ?? 1000;
  const batchSize = options.batchSize ?? 20;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const rate = options.ratePerSecond ?? 0;
  const started = now();

  const stored = await deps.checkpoints.read();
  let etag = stored?.etag;
  const iso = () => new Date(now()).toISOString();
  const generation = deps.generation && generationTag(deps.generation);
  const fresh = (): BackfillCheckpoint => ({ version: 1, lister: deps.lister.name, ...(generation ? { generation } : {}), startedAt: iso(), updatedAt: iso(), offset: 0, done: false, counts: { listed: 0, emitted: 0, skipped: 0 } });
  let cp: BackfillCheckpoint = stored?.checkpoint ?? fresh();
  if (cp.lister !== deps.lister.name) {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, `the checkpoint belongs to another source (${cp.lister}); remove it or name another checkpoint`);
  }
  // A checkpoint of a pass under another key or profile (or of one that recorded none): a new pass.
  if (stored && generation && cp.generation !== generation) cp = fresh();
  if (cp.done) return cp;

  if (cp.total === undefined && options.countFirst) {
    let total = 0;
    let cursor: string | undefined;
    do {
      const page = await deps.lister.listPage(cursor, 5000, { abortSignal: options.abortSignal });
      total += page.items.length;
      cursor = page.next;
    } while (cursor !== undefined && !options.abortSignal?.aborted);
    cp = { ...cp, total };
  }

  const doneAtStart = cp.counts.emitted + cp.counts.skipped;
  const report = () => {
    const doneNow = cp.counts.emitted + cp.counts.skipped;
    const seconds = Math.max((now() - started) / 1000, 1e-3);
    const r = (doneNow - doneAtStart) / seconds;
    deps.onProgress?.({
      total: cp.total, listed: cp.counts.listed, emitted: cp.counts.emitted, skipped: cp.counts.skipped, reindexed: cp.counts.reindexed ?? 0, rate: r, done: cp.done,
      ...(cp.total !== undefined && r > 0 ? { etaSeconds: Math.max(0, cp.total - doneNow) / r } : {}),
    });
  };
  const save = async () => {
    cp = { ...cp, updatedAt: iso() };
    etag = await deps.checkpoints.write(cp, etag);
  };

  // Pacing: the emitted events may not run ahead of `rate` per second since this run started.
  let paced = 0;
  const pace = async (n: number) => {
    if (rate <= 0) return;
    paced += n;
    const due = started + (paced / rate) * 1000;
    const wait = due - now();
    if (wait > 0) await sleep(wait, options.abortSignal);
  };
  const stopping = () => options.abortSignal?.aborted === true || (options.maxRunMs !== undefined && now() - started >= options.maxRunMs);

  report();
  while (!stopping()) {
    const page = await deps.lister.listPage(cp.cursor, pageSize, { abortSignal: options.abortSignal });
    const items = page.items;
    if (cp.offset > items.length) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'the checkpoint is past the end of its page: the source changed its listing order');
    if (cp.offset === 0) cp.counts.listed += items.length;

    // Batches of the page, published up to `concurrency` at once; the checkpoint moves over
    // the batches that are done without a gap before them.
    const batches: { from: number; to: number }[] = [];
    for (let i = cp.offset; i < items.length; i += batchSize) batches.push({ from: i, to: Math.min(items.length, i + batchSize) });
    const finished = new Set<number>();
    let contiguous = 0;
    let failure: unknown;
    const work = async (b: { from: number; to: number }, k: number, result: Tally) => {
      const slice = items.slice(b.from, b.to);
      const known = await Promise.all(slice.map((it) => deps.index.get(sourceId(it.url))));
      const toEmit: { item: BackfillItem; reindex: boolean }[] = [];
      slice.forEach((it, i) => {
        const d = known[i]?.doc;
        if (!d || !sameVersion(d.eTag, it.etag) || !TERMINAL.has(d.status)) toEmit.push({ item: it, reindex: false });
        else if (deps.generation && needsReindex(d, deps.generation)) toEmit.push({ item: it, reindex: true });
      });
      await pace(toEmit.length);
      const eventOf = deps.lister.eventOf?.bind(deps.lister) ?? backfillEvent;
      if (toEmit.length > 0) await deps.sink.publish(toEmit.map((e) => eventOf(e.item, iso(), e.reindex ? deps.generation : undefined)));
      result.emitted = toEmit.length;
      result.reindexed = toEmit.filter((e) => e.reindex).length;
      result.skipped = slice.length - toEmit.length;
      finished.add(k);
    };
    const results: Tally[] = batches.map(() => ({ emitted: 0, skipped: 0, reindexed: 0 }));
    let next = 0;
    let saving = Promise.resolve();
    const advance = () => {
      let moved = false;
      while (finished.has(contiguous)) {
        const b = batches[contiguous] as { from: number; to: number };
        const r = results[contiguous] as Tally;
        cp.counts.emitted += r.emitted;
        cp.counts.skipped += r.skipped;
        if (r.reindexed > 0 || cp.counts.reindexed !== undefined) cp.counts.reindexed = (cp.counts.reindexed ?? 0) + r.reindexed;
        cp.offset = b.to;
        contiguous++;
        moved = true;
      }
      if (moved) {
        saving = saving.then(save);
        report();
      }
    };
    const runner = async () => {
      while (failure === undefined && next < batches.length && !stopping()) {
        const k = next++;
        try {
          await work(batches[k] as { from: number; to: number }, k, results[k] as Tally);
          advance();
          await saving;
        } catch (e) {
          failure ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, batches.length)) }, runner));
    await saving;
    if (failure !== undefined) throw failure;
    if (contiguous < batches.length) break; // stopped mid-page: the checkpoint holds the offset
    cp = { ...cp, cursor: page.next, offset: 0, done: page.next === undefined };
    await save();
    report();
    if (cp.done) break;
  }
  report();
  return cp;
}
