/**
 * What data sharing keeps: agreements, export jobs with one item per instance, and the
 * append-only record of every file that left. Interfaces here; the Cosmos DB adapter is in
 * cosmosSharing.ts, in-memory fakes in the unit tests.
 */
import type { Versioned } from '../catalog/catalogStore';
import type { Agreement } from './agreement';

export interface AgreementStore {
  /** Creates the agreement. Throws CATALOG_CONFLICT when the id exists, SERVICE_* on faults. */
  create(agreement: Agreement): Promise<void>;
  /** Point read; undefined when missing. Idempotent. */
  get(id: string): Promise<Versioned<Agreement> | undefined>;
  /** Replaces it if unchanged since `etag`. Throws CATALOG_CONFLICT otherwise. */
  replace(agreement: Agreement, etag: string): Promise<void>;
  /** Active `live` agreements (the feed reads them per cataloged instance). A query. */
  listLive(): Promise<Agreement[]>;
  /** Agreements not revoked whose destination is this container of ours (SAS). A query. */
  holdingContainer(container: string): Promise<Agreement[]>;
}

/** One export: a job document and, per instance, one item document in the same partition. */
export interface ExportJob {
  /** = exportId. */
  id: string;
  exportId: string;
  type: 'job';
  agreementId: string;
  partnerId: string;
  /** Instances the cohort named when the job started (live parts: the instances of the part). */
  total: number;
  /**
   * `completed` once the manifest is written and the event published; `failed` the same, for an
   * export whose enqueueing failed part way (`error` says why; the instances never enqueued are
   * recorded failed, so that the counts add up).
   */
  status: 'running' | 'completed' | 'failed';
  /** Why the export ended `failed`: a stable code and a message without PHI. */
  error?: { code: string; message: string };
  /**
   * Items recorded, as the workers count them (incremented after each delivery that records or
   * finds its item: never less than the items, more after redeliveries). A gate only: a worker
   * counts the items (a query) only once this reaches the total. Not a figure to show.
   */
  recorded?: number;
  /** The caller who asked (principal id), or `live-feed`. */
  requestedBy: string;
  profile: string;
  keyId: string;
  startedAt: string;
  finishedAt?: string;
  /** Blob names of the manifest, in the destination. */
  manifest?: { json: string; csv: string };
  /**
   * A dated part of a live agreement's feed (`live-<agreement>-<YYYYMMDD>`): its instances arrive
   * one by one, its total is the count of instances wanted so far, its manifest is rewritten as
   * it grows, and it stays `running`.
   */
  live?: true;
}

/** An instance a live part wants (created once per instance, before its message is sent). */
export interface WantedItem {
  /** `want:<research SOP instance UID>`. */
  id: string;
  exportId: string;
  type: 'want';
}

/** What became of one instance of an export. Created once: a redelivered message finds it and counts nothing twice. */
export interface ExportItem {
  /** `item:<research SOP instance UID>`: one per instance per export. */
  id: string;
  exportId: string;
  type: 'item';
  status: 'done' | 'failed';
  at: string;
  /** Failed: the stable error code. */
  errorCode?: string;
  /** Done: the partner's copy. */
  file?: ExportedFile;
}

/**
 * A partner file withdrawn because its source was deleted: one per instance per export, in the
 * export's partition, created once. The export's withdrawal list is written from these.
 */
export interface WithdrawnItem {
  /** `withdrawn:<research SOP instance UID>`. */
  id: string;
  exportId: string;
  type: 'withdrawal';
  at: string;
  /** `deleted`: the copy was removed from our container; `notified`: the partner was sent VNA.Export.InstanceWithdrawn. */
  outcome: 'deleted' | 'notified';
  file: ExportedFile;
}

export interface ExportedFile {
  /** Blob name in the destination: `<partner study>/<partner series>/<partner instance>.dcm`. */
  blob: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  size: number;
  sha256: string;
}

export interface ExportCounts {
  done: number;
  failed: number;
  bytes: number;
  /** Live parts: instances wanted so far (the part's total). */
  wanted: number;
}

export interface ExportStore {
  /** Creates the job. Throws CATALOG_CONFLICT when it exists. */
  createJob(job: ExportJob): Promise<void>;
  getJob(exportId: string): Promise<Versioned<ExportJob> | undefined>;
  /** Replaces the job if unchanged since `etag`; throws CATALOG_CONFLICT otherwise. */
  replaceJob(job: ExportJob, etag: string): Promise<void>;
  /** Creates the item; 'exists' when an earlier delivery already did (nothing is changed then). */
  recordItem(item: ExportItem): Promise<'created' | 'exists'>;
  getItem(exportId: string, researchSopInstanceUid: string): Promise<ExportItem | undefined>;
  /** Live parts: records that the part wants an instance; 'exists' when it already did. */
  want(item: WantedItem): Promise<'created' | 'exists'>;
  /** Items recorded (done or failed): one query, what the worker that may be the last checks. */
  settled(exportId: string): Promise<number>;
  /**
   * Adds `by` (default one) to the job's `recorded` gate (an atomic increment, no read) and gives the new value.
   * Throws NOT_FOUND when the job does not exist, SERVICE_* on faults. Not idempotent, by design:
   * a redelivery counts again, so the gate may run ahead of the items but never behind them.
   */
  countRecorded(exportId: string, by?: number): Promise<number>;
  /** Live parts still `running` (a cross-partition query), of one agreement or of all. */
  openLiveParts(agreementId?: string): Promise<ExportJob[]>;
  /** Counted from the item documents, so that redelivery never counts twice; `wanted` only when `live`. */
  counts(exportId: string, options?: { live?: boolean }): Promise<ExportCounts>;
  /** The done items, ordered by blob name (the manifest's order). */
  doneItems(exportId: string): Promise<ExportItem[]>;
  /** The done items of one research instance in every export (a cross-partition query): its partner copies. */
  itemsOfInstance(researchSopInstanceUid: string): Promise<ExportItem[]>;
  /** Records a withdrawal; 'exists' when an earlier delivery already did (nothing is changed then). */
  recordWithdrawal(item: WithdrawnItem): Promise<'created' | 'exists'>;
  /** The withdrawals of an export, ordered by blob name (the withdrawal list's order). */
  withdrawals(exportId: string): Promise<WithdrawnItem[]>;
}

/** One file that left: to whom, under which agreement and export, when, at whose request. */
export interface SharedFileRecord {
  /**
   * `<agreementId>:<partner SOP instance UID>` (shared) or the same with `:withdrawn` (withdrawn):
   * a file is recorded once per action however often its message or event is delivered.
   */
  id: string;
  /** Partition key: one partner's record is one logical partition. */
  partnerId: string;
  agreementId: string;
  exportId: string;
  action: 'shared' | 'withdrawn';
  time: string;
  requestedBy: string;
  destination: string;
  blob: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  size: number;
  sha256: string;
  keyId: string;
}

/** The record of files shared: created only, never replaced or deleted (the adapter has no path for either). */
export interface SharingAuditStore {
  /** Records a file; a record with the same id already there is kept as it is (idempotent). Throws SERVICE_* on faults. */
  append(record: SharedFileRecord): Promise<void>;
  /** What a partner has received, oldest first: the one query of docs/sharing.md. */
  byPartner(partnerId: string): Promise<SharedFileRecord[]>;
}
