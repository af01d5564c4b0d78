/**
 * The generation of a research copy: the key id and the de-identification profile (name,
 * version and digest of its data) that produced it. The index record keeps it (in
 * `deidentification`); a version cataloged under another generation is not "done" for the
 * current settings, and its ingestion re-creates the research side (a re-index, after a key
 * rotation or a profile change). Ingestion and the backfill compare generations here, and only here.
 */
import type { IngestionDocument } from '../catalog/documents';
import type { DeidContext } from '../dicom/deid/engine';

export interface Generation {
  keyId: string;
  profile: string;
  profileVersion: string;
  /** Absent in records written before 0.9.0: they are compared by name and version only. */
  profileDigest?: string;
}

/** What the current settings produce. */
export function generationOf(deid: Pick<DeidContext, 'keyId' | 'profile'>): Required<Generation> {
  return { keyId: deid.keyId, profile: deid.profile.name, profileVersion: deid.profile.version, profileDigest: deid.profile.digest };
}

/**
 * True when a record's generation is the current one. A record without a de-identification
 * audit (none is written for a file that never reached the engine) counts as current: nothing
 * in it depends on the key or the profile. A record without a digest is compared by profile
 * name and version, so that an upgrade alone does not re-create the whole research side.
 */
export function isCurrentGeneration(recorded: Pick<IngestionDocument, 'deidentification'>['deidentification'] | undefined, current: Generation): boolean {
  if (!recorded) return true;
  if (recorded.keyId !== current.keyId || recorded.profile !== current.profile || recorded.profileVersion !== current.profileVersion) return false;
  const digest = (recorded as { profileDigest?: string }).profileDigest;
  return digest === undefined || current.profileDigest === undefined || digest === current.profileDigest;
}

/**
 * True when a record's research side must be re-created under `current`: a cataloged version
 * made under another key or profile. A failed or quarantined version is left as it is (its
 * release is the quarantine review's, docs/operations.md), and so is a deleted one.
 */
export function needsReindex(record: Pick<IngestionDocument, 'status' | 'deidentification'>, current: Generation): boolean {
  return record.status === 'cataloged' && !isCurrentGeneration(record.deidentification, current);
}

/** A short, stable text of a generation, for event ids (no secret: the key id is a name). */
export function generationTag(g: Generation): string {
  return `${g.keyId}\0${g.profile}\0${g.profileVersion}\0${g.profileDigest ?? ''}`;
}
