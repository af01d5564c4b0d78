/**
 * Which research copies a WADO-RS request names: the instance documents of the research
 * catalog under a study, a series or one instance. Only the research catalog is read, so only
 * research UIDs and research blob names can come out of here.
 */
import type { StoredFrameIndex } from '../catalog/documents';
import type { ResearchCatalogReader, SqlParameter } from '../catalog/researchCatalog';
import { ErrorCodes, PipelineError } from '../errors';
import { Lru } from '../lru';

/** What the retrieve needs of one cataloged research instance. */
export interface ResearchInstance {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  /** Bytes of the research copy. */
  size: number;
  researchBlob: string;
  /** When the catalog entry last changed: a replaced copy gets a new one (cache key). */
  updatedAt: string;
  /** The frame index as the document keeps it (absent before 0.7.0, or for a sidecar's pointer only). */
  frames?: StoredFrameIndex;
  /** The version of the source the copy was made from (a sidecar index names it: see frameIndexCodec). */
  sourceVersion?: string;
  /**
   * The ETag of the copy as first read after this lookup (not from the catalog): later reads
   * through the same lookup ask for that version only (If-Match), see wado.ts readOptions.
   */
  copyEtag?: string;
}

/** A study, a series in it, or an instance in that: the path of a WADO-RS resource. */
export interface RetrieveScope {
  study: string;
  series?: string;
  instance?: string;
}

/** PS3.5 9.1: digits and dots, no empty or zero-led component, at most 64 characters. */
const UID = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** Throws QUERY_INVALID naming the path parameter whose value is not a UID. Pure. */
export function checkScope(scope: RetrieveScope): void {
  for (const [name, value] of [['study', scope.study], ['series', scope.series], ['instance', scope.instance]] as const) {
    if (value !== undefined && (value.length > 64 || !UID.test(value))) {
      throw new PipelineError(ErrorCodes.QUERY_INVALID, `the ${name} UID in the path is not a valid UID (PS3.5 9.1)`);
    }
  }
}

const FIELDS = ['studyInstanceUid', 'seriesInstanceUid', 'sopInstanceUid', 'sopClassUid', 'transferSyntaxUid', 'size', 'researchBlob', 'updatedAt', 'frames', 'sourceVersion'] as const;

/**
 * The research instances in scope, ordered by series and instance UID (a stable order for
 * multipart answers). Throws QUERY_INVALID for a malformed UID, NOT_FOUND when the scope
 * holds no instance, SERVICE_* when the catalog fails. One single-partition query. Read-only.
 */
export async function findResearchInstances(reader: ResearchCatalogReader, scope: RetrieveScope, options: { abortSignal?: AbortSignal } = {}): Promise<ResearchInstance[]> {
  checkScope(scope);
  const where = ["c.type = 'instance'", 'c.studyInstanceUid = @study'];
  const parameters: SqlParameter[] = [{ name: '@study', value: scope.study }];
  if (scope.series !== undefined) {
    where.push('c.seriesInstanceUid = @series');
    parameters.push({ name: '@series', value: scope.series });
  }
  if (scope.instance !== undefined) {
    where.push('c.sopInstanceUid = @instance');
    parameters.push({ name: '@instance', value: scope.instance });
  }
  const query = `SELECT ${FIELDS.map((f) => `c.${f}`).join(', ')} FROM c WHERE ${where.join(' AND ')}`;
  const found: ResearchInstance[] = [];
  for await (const doc of reader.query<ResearchInstance>({ query, parameters }, { partitionKey: scope.study, ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}) })) {
    found.push(doc);
  }
  if (found.length === 0) {
    const level = scope.instance !== undefined ? 'instance' : scope.series !== undefined ? 'series' : 'study';
    throw new PipelineError(ErrorCodes.NOT_FOUND, `no research ${level} has this UID`);
  }
  return found.sort((a, b) => compare(a.seriesInstanceUid, b.seriesInstanceUid) || compare(a.sopInstanceUid, b.sopInstanceUid));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Recent answers of findResearchInstances, kept `ttlMs` (a viewer asks for the same instance's
 * frames many times in a row; each lookup is a catalog round trip). Only found instances are
 * kept: an unknown UID is asked again. Reads through a kept answer are conditional on the
 * copy's version first read (If-Match): a replaced or removed copy fails the read, and the
 * retrieve forgets the answer and asks the catalog again (wado.ts), so a kept frame index is
 * never applied to another copy's bytes. An instance withdrawn from the catalog whose copy is
 * not removed yet (withdrawal removes the document first, then the copy) is served at most
 * `ttlMs` longer.
 */
export class ResearchInstanceCache {
  private readonly entries: Lru<{ at: number; instances: ResearchInstance[] }>;

  constructor(
    private readonly ttlMs = 10_000,
    maxEntries = 10_000,
  ) {
    this.entries = new Lru(maxEntries);
  }

  async find(reader: ResearchCatalogReader, scope: RetrieveScope, options: { abortSignal?: AbortSignal } = {}): Promise<ResearchInstance[]> {
    const key = keyOf(scope);
    const hit = this.entries.get(key);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.instances;
    const instances = await findResearchInstances(reader, scope, options);
    this.entries.set(key, { at: Date.now(), instances });
    return instances;
  }

  /** Drops the kept answer for `scope`: the next find asks the catalog. */
  forget(scope: RetrieveScope): void {
    this.entries.delete(keyOf(scope));
  }
}

function keyOf(scope: RetrieveScope): string {
  return `${scope.study}/${scope.series ?? ''}/${scope.instance ?? ''}`;
}
