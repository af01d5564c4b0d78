/** The research instance a catalog event names (InstanceCataloged, InstanceWithdrawn): research UIDs, checked. */
import type { CohortInstance } from './cohort';

const UID = /^[0-9]+(\.[0-9]+)*$/;

/** The instance's three UIDs, or undefined when one is missing or not a UID (an event no retry can make valid). */
export function researchInstanceOf(data: unknown): CohortInstance | undefined {
  const d = data as Record<string, unknown> | undefined;
  const [studyInstanceUid, seriesInstanceUid, sopInstanceUid] = ['studyInstanceUid', 'seriesInstanceUid', 'sopInstanceUid'].map((k) => d?.[k]);
  const ok = (u: unknown): u is string => typeof u === 'string' && u.length <= 64 && UID.test(u);
  return ok(studyInstanceUid) && ok(seriesInstanceUid) && ok(sopInstanceUid) ? { studyInstanceUid, seriesInstanceUid, sopInstanceUid } : undefined;
}
