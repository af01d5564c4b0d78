/**
 * What an export worker keeps between messages, in its process: the export jobs (what a worker
 * reads of a job never changes while it runs) and the agreements, for a few seconds. Two point
 * reads per message were a third of an export's Cosmos DB requests.
 *
 * An agreement is kept at most `agreementTtlMs` (5 s by default): a suspension or revocation
 * made elsewhere reaches a worker within that time, so at most that long of files can still
 * leave after it (each is recorded in the audit as usual). A change made through the same deps
 * (`changeAgreement`) is seen at once.
 */
import type { Versioned } from '../catalog/catalogStore';
import { Lru } from '../lru';
import type { Agreement } from './agreement';
import type { ExportJob } from './stores';

export const AGREEMENT_TTL_MS = 5_000;
/** Entries kept per map: beyond it the oldest go (a worker serves a few exports at a time). */
const MAX_ENTRIES = 256;

export class SharingCache {
  private readonly agreements = new Lru<{ at: number; value: Promise<Versioned<Agreement> | undefined> }>(MAX_ENTRIES);
  private readonly jobs = new Lru<Promise<Versioned<ExportJob> | undefined>>(MAX_ENTRIES);

  constructor(
    private readonly agreementTtlMs = AGREEMENT_TTL_MS,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The agreement, read through `load` at most once per `agreementTtlMs`; a failed or empty read is not kept. */
  agreement(id: string, load: () => Promise<Versioned<Agreement> | undefined>): Promise<Versioned<Agreement> | undefined> {
    const hit = this.agreements.get(id);
    if (hit && this.clock() - hit.at < this.agreementTtlMs) return hit.value;
    const value = load();
    this.agreements.set(id, { at: this.clock(), value });
    value.then((v) => (v ? undefined : this.forgetAgreement(id)), () => this.forgetAgreement(id));
    return value;
  }

  forgetAgreement(id: string): void {
    this.agreements.delete(id);
  }

  /**
   * The job as first read (its status, counters and etag go stale: read the job again for
   * those). A missing or failed read is not kept.
   */
  job(exportId: string, load: () => Promise<Versioned<ExportJob> | undefined>): Promise<Versioned<ExportJob> | undefined> {
    const hit = this.jobs.get(exportId);
    if (hit) return hit;
    const value = load();
    this.jobs.set(exportId, value);
    value.then((v) => (v ? undefined : this.jobs.delete(exportId)), () => this.jobs.delete(exportId));
    return value;
  }
}
