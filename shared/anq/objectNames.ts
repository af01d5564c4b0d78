/**
 * How an ANQ source file is named between the event resolver and the source store: the key
 * relative to the bucket root, optionally with the snapshot an event named, which the store
 * reads as a floor (the newest snapshot at or after it; see shared/storage/anqSourceStore.ts).
 */
import { ErrorCodes, PipelineError } from '../errors';

export const SNAPSHOT_PREFIX = '.snapshot/';

/** The object name the store reads for a key: the live object, or the key as of a snapshot (or a newer one). */
export function anqObjectName(key: string, snapshotId?: number): string {
  return snapshotId === undefined ? key : `${SNAPSHOT_PREFIX}${snapshotId}/${key}`;
}

/** The key and snapshot floor of an object name made by anqObjectName. Throws SOURCE_NOT_ALLOWED when malformed. */
export function parseAnqObjectName(name: string): { key: string; snapshotFloor?: number } {
  if (!name.startsWith(SNAPSHOT_PREFIX)) return { key: name };
  const rest = name.slice(SNAPSHOT_PREFIX.length);
  const slash = rest.indexOf('/');
  const idText = rest.slice(0, Math.max(slash, 0));
  const id = Number(idText);
  if (slash <= 0 || !/^\d+$/.test(idText) || !Number.isSafeInteger(id)) throw new PipelineError(ErrorCodes.SOURCE_NOT_ALLOWED, 'ANQ object name has a malformed snapshot part');
  return { key: rest.slice(slash + 1), snapshotFloor: id };
}

/**
 * The container an ANQ location names: `anq/<bucket>`. A blob container name never holds a
 * slash, so a store that serves both sources (SourceRouter) tells them apart by it.
 */
export const ANQ_CONTAINER_PREFIX = 'anq/';

export function anqContainer(bucket: string): string {
  return `${ANQ_CONTAINER_PREFIX}${bucket}`;
}

/** The bucket of an ANQ container name, or undefined for a blob container. */
export function bucketOfAnqContainer(container: string): string | undefined {
  return container.startsWith(ANQ_CONTAINER_PREFIX) ? container.slice(ANQ_CONTAINER_PREFIX.length) : undefined;
}
