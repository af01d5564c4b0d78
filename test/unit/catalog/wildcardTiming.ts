/**
 * The timed cases of test/unit/catalog/qidoMatch.test.ts, run in a fresh process: in a jest
 * worker, the collector's threads at work on the worker's own heap (hundreds of MB after other
 * files) count in the process's CPU time too, on top of the matcher's.
 */
import { buildCatalogQuery, matchesWildcard, parseQidoRequest, type QidoDocument } from '../../../shared/catalog/qido';

/** The pattern of the issue: 17 s against a 64-character value with a backtracking matcher. */
export const PATHOLOGICAL = '*?*?*?*?*?*?*?*?*#';

export const seriesDoc = (description: string): QidoDocument => ({
  id: `series:${description.length}`,
  type: 'series',
  studyInstanceUid: '1.2.3',
  seriesInstanceUid: '1.2.3.4',
  dicom: { '0008103E': { vr: 'LO', Value: [description] } },
});

/** CPU time of `work` (ms): a wait for a CPU on a loaded machine is not the matcher's. */
function cpuMsOf(work: () => unknown): number {
  const started = process.cpuUsage();
  work();
  const { user, system } = process.cpuUsage(started);
  return (user + system) / 1000;
}

/** The pattern through the QIDO post-filter against a 64-character value. */
export function timePostFilter(): { defined: boolean; accepted: boolean | undefined; ms: number } {
  const { postFilter } = buildCatalogQuery(parseQidoRequest('series', new URLSearchParams({ SeriesDescription: PATHOLOGICAL }), {}));
  let accepted: boolean | undefined;
  const ms = cpuMsOf(() => (accepted = postFilter?.(seriesDoc('A'.repeat(64)))));
  return { defined: postFilter !== undefined, accepted, ms };
}

/** 32 wild card pairs against a 10,000-character value: without the `#`, with it, and short. */
export function timeLongValue(): { results: boolean[]; ms: number } {
  const pattern = `${'*?'.repeat(32)}*#`;
  const value = 'A'.repeat(10_000);
  let results: boolean[] = [];
  const ms = cpuMsOf(() => (results = [matchesWildcard(pattern, value), matchesWildcard(pattern, `${value}#`), matchesWildcard(pattern, `${'A'.repeat(31)}#`)]));
  return { results, ms };
}
