/**
 * Cosmos DB adapter for the index and the research catalog.
 *
 * Partitioning (see README "Catalog design"): the index is partitioned by /id (a hash of the
 * source URL: point reads and writes only); the research catalog by /studyInstanceUid, so a
 * study with its series and instances is one logical partition (summaries and instance
 * queries within a study stay in one partition; study-level QIDO fans out).
 */
import type { TokenCredential } from '@azure/core-auth';
import { Container, CosmosClient, Database, type FeedOptions, IndexingPolicy } from '@azure/cosmos';
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';

import type { CosmosConnection, Settings } from '../config/settings';
import { tagToHex } from '../dicom/dictionary';
import { type DicomJson, jsonKey } from '../dicom/json';
import { levelOf } from '../dicom/metadata';
import { Tags } from '../dicom/tags';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import { Lru } from '../lru';
import { seriesStatistics } from '../statistics/aggregate';
import { IndexStore, instanceDocId, ResearchCatalogWriter, seriesDocId, Versioned } from './catalogStore';
import { Coalescer } from './coalesce';
import { CosmosDocumentClient, type CosmosDocumentClientOptions, type CosmosDocuments } from './cosmosDocuments';
import { CosmosHttpClient } from './cosmosHttpClient';
import type { IngestionDocument, InstanceDocument, SeriesDocument, StudyDocument } from './documents';
import { retryOnConflict } from './retryOnConflict';

/** The transport of every Cosmos DB client the pipeline makes (see cosmosHttpClient.ts). */
const httpClient = new CosmosHttpClient();

function credentialOf(conn: Extract<CosmosConnection, { kind: 'identity' }>): TokenCredential {
  return conn.clientId ? new ManagedIdentityCredential({ clientId: conn.clientId }) : new DefaultAzureCredential();
}

export function createCosmosClient(conn: CosmosConnection): CosmosClient {
  // Over plain HTTP (the local emulator server) endpoint discovery would redirect to the
  // https locations the server advertises.
  const connectionPolicy = conn.endpoint.startsWith('http:') ? { enableEndpointDiscovery: false } : undefined;
  if (conn.kind === 'key') return new CosmosClient({ endpoint: conn.endpoint, key: conn.key, connectionPolicy, httpClient });
  return new CosmosClient({ endpoint: conn.endpoint, aadCredentials: credentialOf(conn), connectionPolicy, httpClient });
}

/** The client of the point operations on catalog documents (see cosmosDocuments.ts). */
export function createDocumentClient(conn: CosmosConnection, options: CosmosDocumentClientOptions = {}): CosmosDocumentClient {
  return new CosmosDocumentClient(conn.endpoint, conn.kind === 'key' ? { kind: 'key', key: conn.key } : { kind: 'token', credential: credentialOf(conn) }, options);
}

/**
 * One catalog container as the stores use it: the SDK's, for queries and for the container
 * itself, and its documents for point operations. Queries carry the session tokens of the
 * point operations, so that a query sees what this process wrote.
 */
export interface CatalogContainer {
  container: Container;
  documents: CosmosDocuments;
}

export function catalogContainer(container: Container, documents: CosmosDocumentClient): CatalogContainer {
  return { container, documents: documents.container(container.database.id, container.id) };
}

/**
 * Research catalog indexing: only the paths QIDO filters or sorts on are indexed, which keeps
 * the write cost of an instance document flat however many attributes it carries.
 */
export const RESEARCH_INDEXING_POLICY: IndexingPolicy = {
  indexingMode: 'consistent',
  automatic: true,
  includedPaths: [
    { path: '/type/?' },
    { path: '/studyInstanceUid/?' },
    { path: '/seriesInstanceUid/?' },
    { path: '/sopInstanceUid/?' },
    { path: '/sourceKey/?' },
    { path: '/sopClassUid/?' },
    { path: '/modality/?' },
    { path: '/modalitiesInStudy/[]/?' },
    { path: '/updatedAt/?' },
    ...[
      Tags.PatientName, Tags.PatientID, Tags.PatientBirthDate, Tags.PatientSex, Tags.StudyDate, Tags.StudyTime, Tags.AccessionNumber, Tags.StudyDescription, Tags.StudyID, Tags.ReferringPhysicianName,
      Tags.Modality, Tags.SeriesDescription, Tags.SeriesNumber, Tags.BodyPartExamined, Tags.Manufacturer, Tags.ManufacturerModelName, Tags.InstanceNumber, Tags.SOPClassUID,
    ].map((t) => ({ path: `/dicom/"${tagToHex(t)}"/Value/[]/?` })),
    { path: `/dicom/"${jsonKey('PatientName')}"/Value/[]/Alphabetic/?` },
  ],
  excludedPaths: [{ path: '/*' }],
  compositeIndexes: [
    [{ path: '/type', order: 'ascending' }, { path: '/id', order: 'ascending' }],
  ],
};

/** Statuses that say the request was not carried out and may be sent again: timeout, retry-with, throttled past the SDK's own retries, unavailable. */
const TRANSIENT_STATUSES: ReadonlySet<number> = new Set([408, 429, 449, 503]);
/** Tries of one catalog request (the first and the retries) before its error goes up and the whole ingestion attempt is retried. */
export const CATALOG_REQUEST_TRIES = 4;
const RETRY_BASE_MS = 50;

/**
 * Runs one catalog request, sending it again (up to CATALOG_REQUEST_TRIES in all, with jittered
 * exponential backoff) when the service answers that it did not carry it out. The SDK retries
 * 429 on its own but not 503, 449 or 408; without this a single unavailable answer fails the
 * whole ingestion attempt, and a file whose attempt needs a few dozen requests then rarely
 * completes while the service sheds load. Safe for every request here: writes are creates
 * (409 if a lost answer had in fact carried one out) or conditional (412), which the callers
 * already handle as lost races.
 */
export async function withTransientRetry<T>(op: () => Promise<T>, sleep: (ms: number) => Promise<void> = delay): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (e) {
      const status = statusOf(e);
      if (attempt >= CATALOG_REQUEST_TRIES || status === undefined || !TRANSIENT_STATUSES.has(status)) throw e;
      await sleep(RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random()));
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How to create the database and containers again, for each container that ensureCatalog returned. */
const recreators = new WeakMap<Container, () => Promise<unknown>>();

/**
 * Runs an operation on a container. When it fails because the container (or its database)
 * does not exist, as after a Cosmos server restarted empty, the database and containers are
 * created again (ensureCatalog, once for concurrent callers) and the operation runs once more;
 * when the container is there by the time it is read (another caller created it again), the
 * operation only runs once more.
 * The service answers such an operation with 404 (the local server with 500), so after either
 * a read of the container itself decides. Only for operations whose 404 can mean nothing but
 * a missing container: creates, queries and reads of the container (a point read's 404 means
 * the document is missing).
 */
export async function withCatalogRecovery<T>(container: Container, op: () => Promise<T>): Promise<T> {
  try {
    return await withTransientRetry(op);
  } catch (e) {
    const recreate = recreators.get(container);
    const status = statusOf(e);
    if (!recreate || (status !== 404 && status !== 500)) throw e;
    const missing = await container.read().then(() => false, (re: unknown) => statusOf(re) === 404);
    // There now, though the operation found it missing: another caller created it again in
    // between, and the operation runs once more on it.
    if (missing) await recreate();
    return withTransientRetry(op);
  }
}

/** Creates the database and containers when missing. Idempotent; run at start-up and by deployment. */
export async function ensureCatalog(
  s: Settings,
  client = createCosmosClient(s.cosmos),
): Promise<{ database: Database; index: Container; research: Container; audit: Container; sharing: SharingContainers }> {
  try {
    const { database } = await client.databases.createIfNotExists({ id: s.cosmosDatabase });
    const { container: index } = await database.containers.createIfNotExists({ id: s.indexContainer, partitionKey: { paths: ['/id'] } });
    const { container: research } = await database.containers.createIfNotExists({
      id: s.researchCatalogContainer,
      partitionKey: { paths: ['/studyInstanceUid'] },
      indexingPolicy: RESEARCH_INDEXING_POLICY,
    });
    // The access audit (shared/audit): append-only, one caller's month per logical partition.
    const { container: audit } = await database.containers.createIfNotExists({ id: s.auditContainer, partitionKey: { paths: ['/pk'] } });
    // Data sharing (shared/sharing): agreements by id; an export's job and item documents in one partition; the record of shared files by partner.
    const { container: agreements } = await database.containers.createIfNotExists({ id: s.sharing.agreementsContainer, partitionKey: { paths: ['/id'] } });
    const { container: exportJobs } = await database.containers.createIfNotExists({ id: s.sharing.exportsContainer, partitionKey: { paths: ['/exportId'] } });
    const { container: shared } = await database.containers.createIfNotExists({ id: s.sharing.sharingAuditContainer, partitionKey: { paths: ['/partnerId'] } });
    let again: Promise<unknown> | undefined;
    const recreate = () => (again ??= ensureCatalog(s, client).finally(() => (again = undefined)));
    for (const c of [index, research, audit, agreements, exportJobs, shared]) recreators.set(c, recreate);
    return { database, index, research, audit, sharing: { agreements, exports: exportJobs, audit: shared } };
  } catch (e) {
    throw fromServiceError(e, 'preparing the catalog');
  }
}

/** The data-sharing containers (shared/sharing). */
export interface SharingContainers {
  agreements: Container;
  exports: Container;
  /** Append-only record of every file that left, partitioned by partner. */
  audit: Container;
}

function statusOf(e: unknown): number | undefined {
  const c = (e as { code?: unknown; statusCode?: unknown } | null);
  return typeof c?.code === 'number' ? c.code : typeof c?.statusCode === 'number' ? c.statusCode : undefined;
}

function conflict(e: unknown, what: string): PipelineError {
  const status = statusOf(e);
  if (status === 409 || status === 412) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: changed by another writer`, { cause: e });
  return fromServiceError(e, what);
}

async function readDoc<T>(c: CatalogContainer, id: string, pk: string): Promise<Versioned<T> | undefined> {
  try {
    const r = await withTransientRetry(() => c.documents.read<T>(id, pk));
    return r && { doc: r.resource, etag: r.etag };
  } catch (e) {
    throw fromServiceError(e, 'reading the catalog');
  }
}

async function writeDoc<T extends { id: string }>(c: CatalogContainer, doc: T, etag: string | undefined, what: string): Promise<string> {
  const pk = partitionKeyOf(doc);
  try {
    const r = etag === undefined
      ? await withCatalogRecovery(c.container, () => c.documents.create(doc, pk))
      : await withTransientRetry(() => c.documents.replace(doc, pk, etag));
    return r.etag;
  } catch (e) {
    // A replace of a document another writer deleted meanwhile is a lost race like any other.
    if (etag !== undefined && statusOf(e) === 404) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: removed by another writer`, { cause: e });
    throw conflict(e, what);
  }
}

function partitionKeyOf(doc: { id: string; studyInstanceUid?: string }): string {
  return doc.studyInstanceUid ?? doc.id;
}

async function deleteDoc(c: CatalogContainer, id: string, pk: string, etag: string | undefined): Promise<void> {
  try {
    await withTransientRetry(() => c.documents.delete(id, pk, etag));
  } catch (e) {
    const status = statusOf(e);
    if (status === 404) return;
    throw conflict(e, 'deleting from the catalog');
  }
}

/**
 * Runs a query, scoped to one study partition when `studyInstanceUid` is given. The scope is
 * also written into the WHERE clause: the local emulator server ignores the partition key
 * of a query, and on the real service the predicate costs nothing. A query within one
 * partition goes over the documents client, without the query plan the SDK asks for first
 * (shared/catalog/cosmosDocuments.ts); one across partitions goes over the SDK.
 */
async function queryAll<T>(c: CatalogContainer, query: string, parameters: { name: string; value: string }[], studyInstanceUid?: string): Promise<T[]> {
  try {
    if (studyInstanceUid === undefined) {
      const { resources } = await withCatalogRecovery(c.container, () => c.container.items.query<T>({ query, parameters }, feedOptions(c)).fetchAll());
      return resources;
    }
    const scoped = { query: `${query} AND c.studyInstanceUid = @pk`, parameters: [...parameters, { name: '@pk', value: studyInstanceUid }] };
    return await withCatalogRecovery(c.container, () => c.documents.query<T>(scoped, studyInstanceUid));
  } catch (e) {
    throw fromServiceError(e, 'querying the catalog');
  }
}

/** A query's options: the session tokens of this process's writes. */
function feedOptions(c: CatalogContainer): FeedOptions {
  const sessionToken = c.documents.sessionToken();
  return sessionToken === undefined ? {} : { sessionToken };
}

/** Strips Cosmos system properties before a document is written back. */
function clean<T extends object>(doc: T): T {
  const out = { ...doc } as Record<string, unknown>;
  for (const k of ['_rid', '_self', '_etag', '_attachments', '_ts']) delete out[k];
  return out as T;
}

export class CosmosIndexStore implements IndexStore {
  constructor(private readonly container: CatalogContainer) {}

  get(id: string): Promise<Versioned<IngestionDocument> | undefined> {
    return readDoc<IngestionDocument>(this.container, id, id);
  }

  async put(doc: IngestionDocument, etag: string | undefined): Promise<void> {
    await writeDoc(this.container, clean(doc), etag, 'writing the ingestion record');
  }

  findByResearchInstance(sopInstanceUid: string): Promise<IngestionDocument[]> {
    return queryAll<IngestionDocument>(this.container, 'SELECT * FROM c WHERE c.research.sopInstanceUid = @sop', [{ name: '@sop', value: sopInstanceUid }]);
  }
}

/** Attempts of one optimistic-concurrency loop before giving up (Event Grid then retries). */
const MAX_ATTEMPTS = 50;

function studyLevel(json: DicomJson): DicomJson {
  return Object.fromEntries(Object.entries(json).filter(([k]) => {
    const level = levelOf(parseInt(k, 16) >>> 0);
    return level === 'patient' || level === 'study';
  }));
}

/** Summary documents and instance documents this process wrote last, kept to save reads. */
const RECENT_DOCUMENTS = 4096;

export class CosmosResearchCatalog implements ResearchCatalogWriter {
  /** Refreshes of one series (or study) requested together in this process run as one. */
  private readonly refreshes: Coalescer;
  /**
   * The summary documents as this process last wrote them, with their ETags. A summary written
   * from the cache is always a conditional replace, so a copy made stale by another instance
   * of the function fails with a conflict and the retry reads the document.
   */
  private readonly summaries = new Lru<Versioned<SeriesDocument | StudyDocument>>(RECENT_DOCUMENTS);
  /** Instance documents this process wrote, for the newest-instance read of a series refresh. */
  private readonly instances = new Lru<InstanceDocument>(RECENT_DOCUMENTS);

  constructor(
    private readonly container: CatalogContainer,
    options: { summarySettleMs?: number; summaryRefreshIntervalMs?: number } = {},
  ) {
    this.refreshes = new Coalescer(options.summarySettleMs ?? 0, options.summaryRefreshIntervalMs ?? 0);
  }

  getInstance(studyInstanceUid: string, sopInstanceUid: string): Promise<Versioned<InstanceDocument> | undefined> {
    return readDoc<InstanceDocument>(this.container, instanceDocId(sopInstanceUid), studyInstanceUid);
  }

  async putInstance(doc: InstanceDocument, etag: string | undefined): Promise<void> {
    const written = clean(doc);
    this.instances.delete(written.id);
    await writeDoc(this.container, written, etag, 'writing the instance');
    this.instances.set(written.id, written);
  }

  async findInstancesBySource(sourceKey: string): Promise<Versioned<InstanceDocument>[]> {
    const rows = await queryAll<InstanceDocument & { _etag: string }>(
      this.container,
      "SELECT * FROM c WHERE c.type = 'instance' AND c.sourceKey = @k",
      [{ name: '@k', value: sourceKey }],
    );
    return rows.map((doc) => ({ doc, etag: doc._etag }));
  }

  async deleteInstance(studyInstanceUid: string, sopInstanceUid: string, etag: string): Promise<void> {
    this.instances.delete(instanceDocId(sopInstanceUid));
    await deleteDoc(this.container, instanceDocId(sopInstanceUid), studyInstanceUid, etag);
  }

  async refreshSummaries(studyInstanceUid: string, seriesInstanceUid: string): Promise<void> {
    await this.refreshes.run(`series:${seriesInstanceUid}`, () => this.retrying(() => this.refreshSeries(studyInstanceUid, seriesInstanceUid)));
    await this.refreshes.run(`study:${studyInstanceUid}`, () => this.retrying(() => this.refreshStudy(studyInstanceUid)));
  }

  private retrying(step: () => Promise<void>): Promise<void> {
    // Jitter spreads a burst of refreshes of one study apart.
    return retryOnConflict('summary document', step, { maxAttempts: MAX_ATTEMPTS, pauseMs: (attempt) => Math.random() * Math.min(200, 5 * attempt) });
  }

  /** The summary document: this process's last written copy, or a read. */
  private async summary<T extends SeriesDocument | StudyDocument>(id: string, study: string): Promise<{ current?: Versioned<T>; cached: boolean }> {
    const cached = this.summaries.get(id) as Versioned<T> | undefined;
    if (cached) return { current: cached, cached: true };
    return { current: await readDoc<T>(this.container, id, study), cached: false };
  }

  /**
   * Writes a summary unless a document just read says the same; a cached copy is never trusted
   * to say "unchanged" (another instance may have written since), so it is always replaced
   * conditionally. Removes the cache entry first, so a failure leaves nothing stale behind.
   */
  private async writeSummary<T extends SeriesDocument | StudyDocument>(doc: T, existing: { current?: Versioned<T>; cached: boolean }, same: (a: T) => boolean, what: string): Promise<void> {
    this.summaries.delete(doc.id);
    if (existing.current && !existing.cached && same(existing.current.doc)) return;
    const etag = await writeDoc(this.container, doc, existing.current?.etag, what);
    this.summaries.set(doc.id, { doc, etag });
  }

  private async removeSummary(id: string, study: string, existing: { current?: Versioned<unknown> }): Promise<void> {
    this.summaries.delete(id);
    if (existing.current) await deleteDoc(this.container, id, study, existing.current.etag);
  }

  private async refreshSeries(study: string, series: string): Promise<void> {
    const id = seriesDocId(series);
    const existing = await this.summary<SeriesDocument>(id, study);
    const params = [{ name: '@s', value: series }];
    // Only small projections are read per instance; the representative attributes come from
    // the newest instance (this process's copy of it when it wrote it, else one point read).
    const rows = await queryAll<{ id: string; sopClassUid: string; updatedAt: string; size?: number; transferSyntaxUid?: string }>(
      this.container,
      "SELECT c.id, c.sopClassUid, c.updatedAt, c.size, c.transferSyntaxUid FROM c WHERE c.type = 'instance' AND c.seriesInstanceUid = @s",
      params,
      study,
    );
    if (rows.length === 0) return this.removeSummary(id, study, existing);
    const newest = rows.reduce((a, b) => (b.updatedAt > a.updatedAt || (b.updatedAt === a.updatedAt && b.id > a.id) ? b : a));
    const known = this.instances.get(newest.id);
    const latest = known && known.updatedAt === newest.updatedAt ? known : (await readDoc<InstanceDocument>(this.container, newest.id, study))?.doc;
    if (!latest) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'instance removed during a summary refresh');
    const sopClasses = [...new Set(rows.map((r) => r.sopClassUid))].sort();
    const seriesJson = Object.fromEntries(Object.entries(latest.dicom).filter(([k]) => levelOf(parseInt(k, 16) >>> 0) !== 'instance'));
    const doc: SeriesDocument = {
      id,
      type: 'series',
      studyInstanceUid: study,
      seriesInstanceUid: series,
      modality: latest.modality,
      numberOfSeriesRelatedInstances: rows.length,
      sopClassesInSeries: sopClasses,
      statistics: seriesStatistics(rows),
      dicom: { ...seriesJson, [jsonKey('NumberOfSeriesRelatedInstances')]: { vr: 'IS', Value: [rows.length] } },
      updatedAt: new Date().toISOString(),
    };
    await this.writeSummary(doc, existing, (old) =>
      old.numberOfSeriesRelatedInstances === doc.numberOfSeriesRelatedInstances &&
      JSON.stringify(old.sopClassesInSeries) === JSON.stringify(sopClasses) &&
      JSON.stringify(old.statistics) === JSON.stringify(doc.statistics) &&
      JSON.stringify(old.dicom) === JSON.stringify(doc.dicom), 'writing the series summary');
  }

  private async refreshStudy(study: string): Promise<void> {
    const id = `study:${study}`;
    const existing = await this.summary<StudyDocument>(id, study);
    const series = await queryAll<SeriesDocument>(this.container, "SELECT * FROM c WHERE c.type = 'series'", [], study);
    if (series.length === 0) return this.removeSummary(id, study, existing);
    const latest = series.reduce((a, b) => (b.updatedAt > a.updatedAt ? b : a));
    const modalities = [...new Set(series.map((s) => s.modality).filter(Boolean))].sort();
    const sopClasses = [...new Set(series.flatMap((s) => s.sopClassesInSeries ?? []))].sort();
    const instances = series.reduce((n, s) => n + s.numberOfSeriesRelatedInstances, 0);
    const doc: StudyDocument = {
      id,
      type: 'study',
      studyInstanceUid: study,
      modalitiesInStudy: modalities,
      sopClassesInStudy: sopClasses,
      numberOfStudyRelatedSeries: series.length,
      numberOfStudyRelatedInstances: instances,
      dicom: {
        ...studyLevel(latest.dicom),
        [jsonKey('ModalitiesInStudy')]: modalities.length ? { vr: 'CS', Value: modalities } : { vr: 'CS' },
        [jsonKey('SOPClassesInStudy')]: { vr: 'UI', Value: sopClasses },
        [jsonKey('NumberOfStudyRelatedSeries')]: { vr: 'IS', Value: [series.length] },
        [jsonKey('NumberOfStudyRelatedInstances')]: { vr: 'IS', Value: [instances] },
      },
      updatedAt: new Date().toISOString(),
    };
    await this.writeSummary(doc, existing, (old) => JSON.stringify({ ...old.dicom }) === JSON.stringify(doc.dicom), 'writing the study summary');
  }
}
