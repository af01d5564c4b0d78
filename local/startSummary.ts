/**
 * What `npm start` says once the landing container is processed: one summary by status and
 * error code instead of a line per file (those stay in the host log), and which outcomes are
 * unexpected. The bundled samples include files that cannot be de-identified or are not valid
 * DICOM on purpose; they end quarantined or failed as designed and are not warned about.
 */
import type { LogLevel } from './host';

/** The fields of an ingestion record that the summary reads. */
export interface IngestionOutcome {
  status?: string;
  errorCode?: string;
  modality?: string;
}

export interface IngestionSummary {
  /** Printed as they are, first line unindented. */
  lines: string[];
  /** Counts of the unexpected outcomes, as `status CODE n` parts; empty when every file ended as designed. */
  unexpected: string[];
}

/** Final statuses of an ingestion record (shared/catalog documents). */
const DESIGNED_STATUSES = new Set(['cataloged', 'quarantined', 'failed', 'deleted']);

/**
 * As designed: cataloged, deleted, quarantined, or failed for what the file itself is (a DICOM_
 * or DEID_ code: a retry can never change it). Anything else (INTERNAL, a service code that
 * outlived the retries, a status that is not final) is unexpected.
 */
export function isDesignedOutcome(r: IngestionOutcome): boolean {
  const status = r.status ?? '';
  if (!DESIGNED_STATUSES.has(status)) return false;
  if (status !== 'failed' && status !== 'quarantined') return true;
  return /^(DICOM|DEID)_/.test(r.errorCode ?? '');
}

/** `['a 3', 'b 1']`: most frequent first, then by name. */
function countBy<T>(items: T[], key: (t: T) => string): string[] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([k, n]) => `${k} ${n}`);
}

/** `what` names the files: "samples" on a first start, "files" when the container was already filled. */
export function summarizeIngestions(records: IngestionOutcome[], what: string): IngestionSummary {
  const byStatus = new Map<string, IngestionOutcome[]>();
  for (const r of records) {
    const status = r.status ?? 'unknown';
    byStatus.set(status, [...(byStatus.get(status) ?? []), r]);
  }
  const order = ['cataloged', 'quarantined', 'failed', 'deleted'];
  const statuses = [...byStatus.keys()].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
  const parts = statuses.map((status) => {
    const group = byStatus.get(status) ?? [];
    const codes = countBy(group.filter((r) => r.errorCode), (r) => r.errorCode as string);
    return `${group.length} ${status}${codes.length > 0 ? ` (${codes.join(', ')})` : ''}`;
  });
  const lines = [`ingested ${records.length} ${what}${parts.length > 0 ? `: ${parts.join(', ')}` : ''}`];
  const cataloged = byStatus.get('cataloged') ?? [];
  if (cataloged.length > 0) lines.push(`  cataloged by modality: ${countBy(cataloged, (r) => r.modality ?? 'none').join(', ')}`);
  const unexpectedRecords = records.filter((r) => !isDesignedOutcome(r));
  const designedRejects = records.filter((r) => (r.status === 'failed' || r.status === 'quarantined') && isDesignedOutcome(r)).length;
  if (designedRejects > 0) {
    lines.push(`  the ${designedRejects} quarantined or failed ${designedRejects === 1 ? 'one is' : 'ones are'} as designed: files that cannot be de-identified safely or are not valid DICOM`);
  }
  const unexpected = countBy(unexpectedRecords, (r) => `${r.status ?? 'unknown'}${r.errorCode ? ` ${r.errorCode}` : ''}`);
  return { lines, unexpected };
}

/**
 * Which log lines reach the console besides the host log: errors from anyone (a crash, a 5xx),
 * and the host's own warnings (a dead-lettered event, a refused request). A function's warnings
 * are per-file outcomes (quarantined, failed as designed) or per-request ones (401, 403): the
 * host log and the summary carry them.
 */
export function isConsoleWorthy(level: LogLevel, functionName: string): boolean {
  if (level === 'error' || level === 'critical') return true;
  return level === 'warning' && functionName === '';
}

/** Modalities OHIF's default mode shows as images (not documents, segmentations, plans or slide microscopy). */
const IMAGE_MODALITIES = new Set(['CT', 'MR', 'PT', 'NM', 'DX', 'CR', 'MG', 'US', 'XA', 'RF', 'IO', 'PX', 'OT', 'XC', 'ES', 'OP']);

/** The fields of a QIDO-RS study result that viewerStudy reads (DICOM JSON). */
export type QidoStudy = Record<string, { Value?: unknown[] } | undefined>;

/**
 * The study that `npm start`'s viewer link opens: the first one, in the order QIDO-RS answers,
 * with an image modality (0008,0061), else the first one; undefined when there is none.
 */
export function viewerStudy(studies: QidoStudy[]): string | undefined {
  const uidOf = (s: QidoStudy) => {
    const v = s['0020000D']?.Value?.[0];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const withImages = studies.find((s) => uidOf(s) && (s['00080061']?.Value ?? []).some((m) => typeof m === 'string' && IMAGE_MODALITIES.has(m)));
  const chosen = withImages ?? studies.find((s) => uidOf(s));
  return chosen && uidOf(chosen);
}
