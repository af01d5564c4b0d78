/**
 * In-memory stand-ins for the storage and catalog interfaces, for unit tests only. They keep
 * the same contracts as the Azure adapters: ETags change on every write, conditional writes
 * fail with CATALOG_CONFLICT, reads of a changed version fail with SOURCE_CHANGED.
 */
import { randomUUID } from 'node:crypto';

import type { IndexStore, ResearchCatalogWriter, Versioned } from '../../shared/catalog/catalogStore';
import type { IngestionDocument, InstanceDocument, SeriesDocument, StudyDocument } from '../../shared/catalog/documents';
import { ErrorCodes, isPipelineError, PipelineError } from '../../shared/errors';
import type { EventPublisher, InstanceCatalogedData, InstanceWithdrawnData } from '../../shared/events/publisher';
import type { IngestDeps, Logger } from '../../shared/ingest/ingestSourceFile';
import type { CopyRead, CopyReadOptions, OpenedSource, QuarantineStore, ResearchBlobVersion, ResearchCopyOrigin, ResearchStore, ResearchWrite, SourceProperties, SourceStore } from '../../shared/storage/stores';
import type { IngestionTelemetry, Telemetry } from '../../shared/telemetry/telemetry';

const conflict = () => new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed by another writer');
const etag = () => `"${randomUUID()}"`;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

export class MemorySourceStore implements SourceStore {
  readonly blobs = new Map<string, { data: Buffer; props: SourceProperties }>();
  /** Fault to throw on the next read (open or range), once. */
  failNextRead?: PipelineError;
  /** Range reads (after the first bytes that open returns). */
  reads = 0;
  opens = 0;
  /** Opened heads released unread. */
  discarded = 0;
  /** Most bytes open returns (as if the service answered with a shorter range). */
  openLimit?: number;
  /** A new version that replaces the blob right after the next open (a write while it is read). */
  replaceAfterOpen?: Buffer;

  put(container: string, name: string, data: Buffer, lastModified = new Date()): SourceProperties {
    const props = { etag: etag(), size: data.length, lastModified };
    this.blobs.set(`${container}/${name}`, { data, props });
    return props;
  }

  delete(container: string, name: string): void {
    this.blobs.delete(`${container}/${name}`);
  }

  async getProperties(container: string, name: string): Promise<SourceProperties | undefined> {
    const b = this.blobs.get(`${container}/${name}`);
    return b ? { ...b.props } : undefined;
  }

  async open(container: string, name: string, count: number): Promise<OpenedSource | undefined> {
    this.opens++;
    this.throwIfFailing();
    const b = this.blobs.get(`${container}/${name}`);
    if (!b) return undefined;
    const head = b.data.subarray(0, Math.min(count, this.openLimit ?? count));
    if (this.replaceAfterOpen) {
      this.put(container, name, this.replaceAfterOpen, new Date(b.props.lastModified.getTime() + 1000));
      this.replaceAfterOpen = undefined;
    }
    return {
      props: { ...b.props },
      head: chunked(head),
      discard: () => {
        this.discarded++;
      },
    };
  }

  private throwIfFailing(): void {
    if (this.failNextRead) {
      const e = this.failNextRead;
      this.failNextRead = undefined;
      throw e;
    }
  }

  async readRange(container: string, name: string, tag: string, offset: number, count: number | undefined): Promise<AsyncIterable<Uint8Array>> {
    this.reads++;
    if (this.failNextRead) {
      const e = this.failNextRead;
      this.failNextRead = undefined;
      throw e;
    }
    const b = this.blobs.get(`${container}/${name}`);
    if (!b) throw new PipelineError(ErrorCodes.SOURCE_NOT_FOUND, 'gone');
    if (b.props.etag !== tag) throw new PipelineError(ErrorCodes.SOURCE_CHANGED, 'changed');
    return chunked(b.data.subarray(offset, count === undefined ? undefined : offset + count));
  }
}

/** Bytes in odd-sized chunks, as a network delivers them. */
async function* chunked(data: Buffer): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < data.length; o += 7919) yield data.subarray(o, o + 7919);
}

export class MemoryResearchStore implements ResearchStore {
  readonly blobs = new Map<string, { data: Buffer; version: ResearchBlobVersion }>();

  async getVersion(name: string): Promise<ResearchBlobVersion | undefined> {
    const b = this.blobs.get(name);
    return b ? { ...b.version } : undefined;
  }

  async write(name: string, data: AsyncIterable<Uint8Array>, options: ResearchCopyOrigin & { expected?: ResearchBlobVersion }): Promise<ResearchWrite> {
    const parts: Buffer[] = [];
    for await (const c of data) parts.push(Buffer.from(c));
    const body = Buffer.concat(parts);
    const commit = async (expected: ResearchBlobVersion | undefined) => {
      const current = this.blobs.get(name);
      if ((expected === undefined && current) || (expected && current?.version.etag !== expected.etag)) throw conflict();
      const version = { etag: etag(), rank: options.rank, sourceKey: options.sourceKey, sourceVersion: options.sourceVersion };
      this.blobs.set(name, { data: body, version });
      return version.etag;
    };
    try {
      return { committed: true, size: body.length, etag: await commit(options.expected) };
    } catch (e) {
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
      return { committed: false, staged: { size: body.length, recommit: commit } };
    }
  }

  async delete(name: string, tag?: string): Promise<void> {
    const b = this.blobs.get(name);
    if (b && (!tag || b.version.etag === tag)) {
      this.blobs.delete(name);
      this.blobs.delete(`${name}.frames`);
    }
  }

  async readRange(name: string, offset: number, count: number | undefined, options: CopyReadOptions = {}): Promise<CopyRead> {
    const b = this.blobs.get(name);
    if (!b) throw new PipelineError(ErrorCodes.NOT_FOUND, 'research copy not found');
    if (options.ifMatch !== undefined && options.ifMatch !== b.version.etag) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'research copy was replaced (412)');
    return Object.assign(chunked(b.data.subarray(offset, count === undefined ? undefined : offset + count)), { etag: b.version.etag, sourceVersion: b.version.sourceVersion, size: b.data.length });
  }

  async findBySource(sourceKey: string): Promise<string[]> {
    return [...this.blobs.entries()].filter(([, b]) => b.version.sourceKey === sourceKey).map(([name]) => name);
  }
}

export class MemoryQuarantineStore implements QuarantineStore {
  readonly copies = new Map<string, { errorCode: string }>();
  constructor(private readonly source: MemorySourceStore) {}

  async quarantine(container: string, blob: string, tag: string, metadata: { errorCode: string }): Promise<string> {
    const b = this.source.blobs.get(`${container}/${blob}`);
    if (!b) throw new PipelineError(ErrorCodes.SOURCE_NOT_FOUND, 'gone');
    if (b.props.etag !== tag) throw new PipelineError(ErrorCodes.SOURCE_CHANGED, 'changed');
    const name = `${container}/${blob}`;
    this.copies.set(name, { errorCode: metadata.errorCode });
    return name;
  }
}

class VersionedMap<T> {
  readonly docs = new Map<string, Versioned<T>>();
  get(key: string): Versioned<T> | undefined {
    const v = this.docs.get(key);
    return v ? { doc: clone(v.doc), etag: v.etag } : undefined;
  }
  put(key: string, doc: T, tag: string | undefined): void {
    const current = this.docs.get(key);
    if ((tag === undefined && current) || (tag !== undefined && current?.etag !== tag)) throw conflict();
    this.docs.set(key, { doc: clone(doc), etag: etag() });
  }
  delete(key: string, tag: string | undefined): void {
    const current = this.docs.get(key);
    if (current && tag !== undefined && current.etag !== tag) throw conflict();
    this.docs.delete(key);
  }
}

export class MemoryIndexStore implements IndexStore {
  readonly map = new VersionedMap<IngestionDocument>();
  async get(id: string) {
    return this.map.get(id);
  }
  async put(doc: IngestionDocument, tag: string | undefined) {
    this.map.put(doc.id, doc, tag);
  }
  async findByResearchInstance(sop: string) {
    return [...this.map.docs.values()].map((v) => clone(v.doc)).filter((d) => d.research?.sopInstanceUid === sop);
  }
  all(): IngestionDocument[] {
    return [...this.map.docs.values()].map((v) => v.doc);
  }
}

export class MemoryResearchCatalog implements ResearchCatalogWriter {
  readonly instances = new VersionedMap<InstanceDocument>();
  readonly series = new Map<string, SeriesDocument>();
  readonly studies = new Map<string, StudyDocument>();

  async getInstance(study: string, sop: string) {
    return this.instances.get(`${study}/${sop}`);
  }
  async putInstance(doc: InstanceDocument, tag: string | undefined) {
    this.instances.put(`${doc.studyInstanceUid}/${doc.sopInstanceUid}`, doc, tag);
  }
  async findInstancesBySource(sourceKey: string) {
    return [...this.instances.docs.values()].filter((v) => v.doc.sourceKey === sourceKey).map((v) => ({ doc: clone(v.doc), etag: v.etag }));
  }
  async deleteInstance(study: string, sop: string, tag: string) {
    this.instances.delete(`${study}/${sop}`, tag);
  }
  async refreshSummaries(study: string, seriesUid: string) {
    const inSeries = [...this.instances.docs.values()].map((v) => v.doc).filter((d) => d.studyInstanceUid === study && d.seriesInstanceUid === seriesUid);
    if (inSeries.length === 0) this.series.delete(seriesUid);
    else {
      this.series.set(seriesUid, {
        id: `series:${seriesUid}`, type: 'series', studyInstanceUid: study, seriesInstanceUid: seriesUid,
        modality: inSeries[0]?.modality ?? '', numberOfSeriesRelatedInstances: inSeries.length,
        sopClassesInSeries: [...new Set(inSeries.map((d) => d.sopClassUid))], dicom: {}, updatedAt: '',
      });
    }
    // As the Cosmos adapter does: the study summary is the sum of its series summaries.
    const series = [...this.series.values()].filter((s) => s.studyInstanceUid === study);
    if (series.length === 0) this.studies.delete(study);
    else {
      this.studies.set(study, {
        id: `study:${study}`, type: 'study', studyInstanceUid: study,
        modalitiesInStudy: [...new Set(series.map((s) => s.modality))].sort(), sopClassesInStudy: [],
        numberOfStudyRelatedSeries: series.length,
        numberOfStudyRelatedInstances: series.reduce((n, s) => n + s.numberOfSeriesRelatedInstances, 0),
        dicom: {}, updatedAt: '',
      });
    }
  }
}

export class CapturingPublisher implements EventPublisher {
  readonly events: { data: InstanceCatalogedData; id: string }[] = [];
  async instanceCataloged(data: InstanceCatalogedData, id: string) {
    this.events.push({ data, id });
  }
  readonly withdrawals: { data: InstanceWithdrawnData; id: string }[] = [];
  async instanceWithdrawn(data: InstanceWithdrawnData, id: string) {
    this.withdrawals.push({ data, id });
  }
}

export class CapturingTelemetry implements Telemetry {
  readonly records: unknown[] = [];
  trackIngestion(t: IngestionTelemetry) {
    this.records.push({ kind: 'ingestion', ...t });
  }
  trackMetric(name: string, value: number, properties?: Record<string, string>) {
    this.records.push({ kind: 'metric', name, value, properties });
  }
  trackFailure(code: string, operation: string) {
    this.records.push({ kind: 'failure', code, operation });
  }
  async flush() {}
}

export class CapturingLogger implements Logger {
  readonly lines: string[] = [];
  info(m: string) {
    this.lines.push(`info ${m}`);
  }
  warn(m: string) {
    this.lines.push(`warn ${m}`);
  }
  error(m: string) {
    this.lines.push(`error ${m}`);
  }
}

export interface MemoryWorld {
  deps: IngestDeps;
  source: MemorySourceStore;
  research: MemoryResearchStore;
  quarantine: MemoryQuarantineStore;
  index: MemoryIndexStore;
  catalog: MemoryResearchCatalog;
  publisher: CapturingPublisher;
  telemetry: CapturingTelemetry;
  log: CapturingLogger;
}

export function memoryWorld(profile: IngestDeps['deid']['profile'], key = Buffer.from('unit-test-key-0123456789abcdefghijklmnop')): MemoryWorld {
  const source = new MemorySourceStore();
  const research = new MemoryResearchStore();
  const quarantine = new MemoryQuarantineStore(source);
  const index = new MemoryIndexStore();
  const catalog = new MemoryResearchCatalog();
  const publisher = new CapturingPublisher();
  const telemetry = new CapturingTelemetry();
  const log = new CapturingLogger();
  const deps: IngestDeps = {
    source, research, quarantine, index, catalog, publisher, telemetry, log,
    deid: { profile, key, keyId: 'k-test' },
    limits: { maxHeaderBytes: 16 * 1024 * 1024 },
    burnedIn: { mode: 'allow' },
  };
  return { deps, source, research, quarantine, index, catalog, publisher, telemetry, log };
}

/** A promise with its resolve function outside, for tests that hold work until they let it go. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
