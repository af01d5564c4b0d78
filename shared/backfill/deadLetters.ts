/**
 * Dead-lettered events: read from where Event Grid (a dead-letter container: one JSON array per
 * blob) or the local stand-in (`.local-data/deadletter.jsonl`: one event per line) puts them,
 * listed with why they were dead-lettered and what the index now says of their file, and
 * re-submitted to the archive topic as the CloudEvent the ingestion function takes, with the same
 * event id. Re-submission is idempotent twice over: a ledger of replayed ids skips them on the
 * next run, and ingestion is level-triggered (a version already done is "unchanged").
 */
import { BLOB_CREATED, BLOB_DELETED, FILE_DELETED, FILE_REPLICATED } from '../events/ingestEvents';
import { sourceId } from '../ingest/ingestSourceFile';

export interface DeadLetteredEvent {
  id: string;
  type: string;
  time?: string;
  url?: string;
  eTag?: string;
  /** Why Event Grid gave up: MaxDeliveryAttemptsExceeded, TimeToLiveExceeded... */
  reason: string;
  attempts?: number;
  lastHttpStatusCode?: number;
  lastDeliveryOutcome?: string;
  /** The record as it was dead-lettered. */
  raw: Record<string, unknown>;
}

/** One record of either schema (Event Grid: eventType/eventTime; CloudEvents: type/time). */
export function readDeadLetter(record: Record<string, unknown>): DeadLetteredEvent {
  const data = (typeof record.data === 'object' && record.data !== null ? record.data : {}) as Record<string, unknown>;
  const s = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  const n = (v: unknown) => (typeof v === 'number' ? v : undefined);
  return {
    id: s(record.id) ?? '',
    type: s(record.eventType) ?? s(record.type) ?? '',
    time: s(record.eventTime) ?? s(record.time),
    url: s(data.url),
    eTag: s(data.eTag),
    reason: s(record.deadLetterReason) ?? 'unknown',
    attempts: n(record.deliveryAttempts),
    lastHttpStatusCode: n(record.lastHttpStatusCode),
    lastDeliveryOutcome: s(record.lastDeliveryOutcome),
    raw: record,
  };
}

/** Parses a JSON-lines file or a JSON array (a dead-letter blob). Lines that are not JSON are reported, not skipped silently. */
export function parseDeadLetterText(text: string): { events: DeadLetteredEvent[]; unreadable: number } {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) return { events: (JSON.parse(trimmed) as Record<string, unknown>[]).map(readDeadLetter), unreadable: 0 };
  const events: DeadLetteredEvent[] = [];
  let unreadable = 0;
  for (const line of trimmed.split('\n')) {
    if (!line.trim()) continue;
    try {
      events.push(readDeadLetter(JSON.parse(line) as Record<string, unknown>));
    } catch {
      unreadable++;
    }
  }
  return { events, unreadable };
}

export interface ReplayRow {
  id: string;
  type: string;
  reason: string;
  lastHttpStatusCode?: number;
  /** First 12 hex digits of the source id (no PHI: not the URL). */
  source: string;
  /** The index's state of the file now, with its error code. */
  indexStatus: string;
  errorCode?: string;
  replayed: boolean;
}

/** What `replay --list` shows: one row per dead-lettered event, the index's state of its file now. */
export async function describeDeadLetters(events: DeadLetteredEvent[], index: { get(id: string): Promise<{ doc: { status: string; errorCode?: string } } | undefined> }, canonical: (url: string) => string | undefined, replayed: ReadonlySet<string>): Promise<ReplayRow[]> {
  const rows: ReplayRow[] = [];
  for (const e of events) {
    const url = e.url && canonical(e.url);
    const id = url ? sourceId(url) : undefined;
    const doc = id ? (await index.get(id))?.doc : undefined;
    rows.push({
      id: e.id, type: e.type, reason: e.reason, lastHttpStatusCode: e.lastHttpStatusCode,
      source: id ? id.slice(0, 12) : '(no url)',
      indexStatus: doc?.status ?? (id ? 'not in the index' : 'unknown'),
      ...(doc?.errorCode ? { errorCode: doc.errorCode } : {}),
      replayed: replayed.has(e.id),
    });
  }
  return rows;
}

/** The CloudEvent that re-submits one dead-lettered event; undefined for an event that ingestion does not take. */
export function replayEvent(e: DeadLetteredEvent, now: string): { id: string; type: typeof FILE_REPLICATED | typeof FILE_DELETED; source: string; subject: string; time: string; data: Record<string, unknown> } | undefined {
  if (!e.url || !e.id) return undefined;
  const type = e.type === BLOB_CREATED || e.type === FILE_REPLICATED ? FILE_REPLICATED : e.type === BLOB_DELETED || e.type === FILE_DELETED ? FILE_DELETED : undefined;
  if (!type) return undefined;
  const u = new URL(e.url);
  const original = (e.raw.data ?? {}) as Record<string, unknown>;
  return { id: e.id, type, source: `/replay/${u.host}`, subject: u.pathname, time: e.time ?? now, data: { ...original, url: e.url, ...(e.eTag ? { eTag: e.eTag } : {}), replayed: true } };
}
