/**
 * In-memory stand-ins for the sharing interfaces (unit tests only), with the adapters'
 * contracts: creates of an existing id answer 'exists' (or CATALOG_CONFLICT), conditional
 * replaces fail with CATALOG_CONFLICT, a partner file is committed once.
 */
import { createHash, randomUUID } from 'node:crypto';

import type { Versioned } from '../../../shared/catalog/catalogStore';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { ExportCompletedData, ExportEventPublisher, ExportInstanceWithdrawnData } from '../../../shared/events/publisher';
import type { Agreement } from '../../../shared/sharing/agreement';
import type { DestinationProvider, PartnerDestination, WrittenFile } from '../../../shared/sharing/destination';
import type { ExportMessage, ExportQueue } from '../../../shared/sharing/sharing';
import type { AgreementStore, ExportCounts, ExportItem, ExportJob, ExportStore, SharedFileRecord, SharingAuditStore, WantedItem, WithdrawnItem } from '../../../shared/sharing/stores';

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const conflict = () => new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed by another writer');

class Versions<T> {
  readonly docs = new Map<string, Versioned<T>>();
  create(id: string, doc: T): boolean {
    if (this.docs.has(id)) return false;
    this.docs.set(id, { doc: clone(doc), etag: randomUUID() });
    return true;
  }
  get(id: string): Versioned<T> | undefined {
    const v = this.docs.get(id);
    return v ? clone(v) : undefined;
  }
  replace(id: string, doc: T, etag: string): void {
    if (this.docs.get(id)?.etag !== etag) throw conflict();
    this.docs.set(id, { doc: clone(doc), etag: randomUUID() });
  }
}

export class MemoryAgreements implements AgreementStore {
  readonly v = new Versions<Agreement>();
  async create(a: Agreement) {
    if (!this.v.create(a.id, a)) throw conflict();
  }
  async get(id: string) {
    return this.v.get(id);
  }
  async replace(a: Agreement, etag: string) {
    this.v.replace(a.id, a, etag);
  }
  private where(keep: (a: Agreement) => boolean): Agreement[] {
    return [...this.v.docs.values()].map((x) => clone(x.doc)).filter(keep);
  }
  async holdingContainer(container: string) {
    return this.where((a) => a.destination.kind === 'sas' && a.destination.container === container && a.status !== 'revoked');
  }
  async listLive() {
    return this.where((a) => a.mode === 'live' && a.status === 'active');
  }
}

export class MemoryExports implements ExportStore {
  readonly v = new Versions<ExportJob | ExportItem | WantedItem | WithdrawnItem>();
  /** Fails the next recordItem once (a worker that crashes after writing the file). */
  failNextRecord = false;
  async createJob(job: ExportJob) {
    if (!this.v.create(`${job.exportId}/${job.id}`, job)) throw conflict();
  }
  async getJob(exportId: string) {
    return this.v.get(`${exportId}/${exportId}`) as Versioned<ExportJob> | undefined;
  }
  async replaceJob(job: ExportJob, etag: string) {
    this.v.replace(`${job.exportId}/${job.id}`, job, etag);
  }
  async recordItem(item: ExportItem) {
    if (this.failNextRecord) {
      this.failNextRecord = false;
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'catalog unavailable');
    }
    return this.add(item);
  }
  /** Creates a document of the export's partition once, as the adapter's create does. */
  private add(doc: ExportItem | WantedItem | WithdrawnItem): 'created' | 'exists' {
    return this.v.create(`${doc.exportId}/${doc.id}`, doc) ? 'created' : 'exists';
  }
  /** The documents of one type in an export's partition. */
  private ofType<T>(exportId: string, type: string): T[] {
    return [...this.v.docs.entries()].filter(([k, d]) => k.startsWith(`${exportId}/`) && d.doc.type === type).map(([, d]) => clone(d.doc as T));
  }
  async getItem(exportId: string, sop: string) {
    return this.v.get(`${exportId}/item:${sop}`)?.doc as ExportItem | undefined;
  }
  async settled(exportId: string) {
    return this.items(exportId).length;
  }
  /** Fails the next countRecorded once (a worker that crashes between its item and the gate). */
  failNextCount = false;
  async countRecorded(exportId: string, by = 1) {
    if (this.failNextCount) {
      this.failNextCount = false;
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'catalog unavailable');
    }
    const found = this.v.docs.get(`${exportId}/${exportId}`);
    if (!found) throw new PipelineError(ErrorCodes.NOT_FOUND, 'no such export');
    const job = found.doc as ExportJob;
    const recorded = (job.recorded ?? 0) + by;
    // An atomic increment: a new etag, as Cosmos DB's patch gives.
    this.v.docs.set(`${exportId}/${exportId}`, { doc: { ...job, recorded }, etag: randomUUID() });
    return recorded;
  }
  async openLiveParts(agreementId?: string) {
    return [...this.v.docs.values()]
      .map((d) => clone(d.doc))
      .filter((d): d is ExportJob => d.type === 'job' && d.live === true && d.status === 'running' && (!agreementId || d.agreementId === agreementId));
  }
  async want(item: WantedItem) {
    return this.add(item);
  }
  private items(exportId: string): ExportItem[] {
    return this.ofType<ExportItem>(exportId, 'item');
  }
  async counts(exportId: string): Promise<ExportCounts> {
    const items = this.items(exportId);
    const done = items.filter((i) => i.status === 'done');
    const wanted = this.ofType<WantedItem>(exportId, 'want').length;
    return { done: done.length, failed: items.length - done.length, wanted, bytes: done.reduce((n, i) => n + (i.file?.size ?? 0), 0) };
  }
  async doneItems(exportId: string) {
    return this.items(exportId).filter((i) => i.status === 'done').sort((a, b) => ((a.file?.blob ?? '') < (b.file?.blob ?? '') ? -1 : 1));
  }
  async itemsOfInstance(sop: string) {
    return [...this.v.docs.values()].map((d) => clone(d.doc)).filter((d): d is ExportItem => d.type === 'item' && d.id === `item:${sop}` && d.status === 'done');
  }
  async recordWithdrawal(item: WithdrawnItem) {
    return this.add(item);
  }
  async withdrawals(exportId: string) {
    return this.ofType<WithdrawnItem>(exportId, 'withdrawal').sort((a, b) => (a.file.blob < b.file.blob ? -1 : 1));
  }
}

export class MemorySharingAudit implements SharingAuditStore {
  readonly records = new Map<string, SharedFileRecord>();
  async append(r: SharedFileRecord) {
    if (!this.records.has(r.id)) this.records.set(r.id, clone(r));
  }
  async byPartner(partnerId: string) {
    return [...this.records.values()].filter((r) => r.partnerId === partnerId).sort((a, b) => (a.time < b.time ? -1 : 1));
  }
}

export class MemoryDestinations implements DestinationProvider {
  /** `<container>/<blob>` to the stored bytes. */
  readonly files = new Map<string, Buffer>();
  /** Commits attempted, including those that found the file there. */
  commits = 0;
  readonly policies = new Map<string, string>();

  open(a: Agreement): PartnerDestination {
    const d = a.destination;
    const container = d.container;
    const files = this.files;
    return {
      label: d.kind === 'sas' ? `sas:${container}` : `${d.accountUrl}/${container}`,
      writeOnce: async (blob: string, data: AsyncIterable<Uint8Array>): Promise<WrittenFile> => {
        const chunks: Buffer[] = [];
        for await (const c of data) chunks.push(Buffer.from(c));
        this.commits += 1;
        const key = `${container}/${blob}`;
        const existing = files.get(key);
        if (existing) return { size: existing.length, sha256: createHash('sha256').update(existing).digest('hex'), created: false };
        const body = Buffer.concat(chunks);
        files.set(key, body);
        return { size: body.length, sha256: createHash('sha256').update(body).digest('hex'), created: true };
      },
      async putText(blob: string, text: string) {
        files.set(`${container}/${blob}`, Buffer.from(text));
      },
      async delete(blob: string) {
        files.delete(`${container}/${blob}`);
      },
    };
  }

  async grant(a: Agreement, expiresOn: Date) {
    this.policies.set(a.destination.container, a.id);
    return { policyId: a.id, url: `https://example.invalid/${a.destination.container}?si=${a.id}`, expiresOn: expiresOn.toISOString() };
  }

  async revokeGrant(a: Agreement) {
    this.policies.delete(a.destination.container);
  }
}

export class CapturingQueue implements ExportQueue {
  readonly messages: ExportMessage[] = [];
  /** Set: the queue takes this many more messages, then fails (SERVICE_UNAVAILABLE) part way through a send. */
  failAfter?: number;
  async send(messages: ExportMessage[]) {
    for (const m of messages) {
      if (this.failAfter !== undefined && this.failAfter-- <= 0) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'enqueuing an export: queue unavailable');
      this.messages.push(clone(m));
    }
  }
}

export class CapturingExportEvents implements ExportEventPublisher {
  readonly events: { id: string; data: ExportCompletedData }[] = [];
  readonly withdrawals: { id: string; data: ExportInstanceWithdrawnData }[] = [];
  async exportCompleted(data: ExportCompletedData, id: string) {
    this.events.push({ id, data: clone(data) });
  }
  async exportInstanceWithdrawn(data: ExportInstanceWithdrawnData, id: string) {
    this.withdrawals.push({ id, data: clone(data) });
  }
}
