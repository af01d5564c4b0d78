/**
 * Cosmos DB adapters of the sharing stores (containers `agreements`, `exports`, `sharing-audit`;
 * created by ensureCatalog).
 */
import type { Container, SqlQuerySpec } from '@azure/cosmos';

import type { Versioned } from '../catalog/catalogStore';
import { withCatalogRecovery, withTransientRetry } from '../catalog/cosmosCatalog';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import type { Agreement } from './agreement';
import type { AgreementStore, ExportCounts, ExportItem, ExportJob, ExportStore, SharedFileRecord, SharingAuditStore, WantedItem, WithdrawnItem } from './stores';

function statusOf(e: unknown): number | undefined {
  const c = e as { code?: unknown; statusCode?: unknown } | null;
  return typeof c?.code === 'number' ? c.code : typeof c?.statusCode === 'number' ? c.statusCode : undefined;
}

function strip<T>(r: T & { _etag?: string; _rid?: string; _self?: string; _ts?: number; _attachments?: string }): T {
  const { _etag, _rid, _self, _ts, _attachments, ...rest } = r;
  void _etag; void _rid; void _self; void _ts; void _attachments;
  return rest as T;
}

async function read<T>(container: Container, id: string, pk: string, what: string): Promise<Versioned<T> | undefined> {
  try {
    const r = await withTransientRetry(() => container.item(id, pk).read<T & { _etag: string }>());
    if (!r.resource) return undefined;
    return { doc: strip<T>(r.resource), etag: r.resource._etag };
  } catch (e) {
    if (statusOf(e) === 404) return undefined;
    throw fromServiceError(e, what);
  }
}

async function create<T extends object>(container: Container, doc: T, what: string): Promise<'created' | 'exists'> {
  try {
    await withCatalogRecovery(container, () => container.items.create(doc));
    return 'created';
  } catch (e) {
    if (statusOf(e) === 409) return 'exists';
    throw fromServiceError(e, what);
  }
}

async function replace<T extends { id: string }>(container: Container, doc: T, pk: string, etag: string, what: string): Promise<void> {
  try {
    await withTransientRetry(() => container.item(doc.id, pk).replace(doc, { accessCondition: { type: 'IfMatch', condition: etag } }));
  } catch (e) {
    const s = statusOf(e);
    if (s === 412 || s === 404) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: changed by another writer`, { cause: e });
    throw fromServiceError(e, what);
  }
}

async function query<T>(container: Container, spec: SqlQuerySpec, what: string, partitionKey?: string): Promise<T[]> {
  try {
    const { resources } = await withCatalogRecovery(container, () => container.items.query<T>(spec, partitionKey !== undefined ? { partitionKey } : {}).fetchAll());
    return resources;
  } catch (e) {
    throw fromServiceError(e, what);
  }
}

export class CosmosAgreementStore implements AgreementStore {
  constructor(private readonly container: Container) {}

  async create(agreement: Agreement): Promise<void> {
    if ((await create(this.container, agreement, 'creating an agreement')) === 'exists') {
      throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'creating an agreement: the id exists');
    }
  }

  get(id: string): Promise<Versioned<Agreement> | undefined> {
    return read<Agreement>(this.container, id, id, 'reading an agreement');
  }

  replace(agreement: Agreement, etag: string): Promise<void> {
    return replace(this.container, agreement, agreement.id, etag, 'updating an agreement');
  }

  async listLive(): Promise<Agreement[]> {
    const rows = await query<Agreement>(this.container, { query: 'SELECT * FROM c WHERE c.mode = @m AND c.status = @s', parameters: [{ name: '@m', value: 'live' }, { name: '@s', value: 'active' }] }, 'listing live agreements');
    return rows.map((r) => strip(r));
  }

  async holdingContainer(container: string): Promise<Agreement[]> {
    const rows = await query<Agreement>(this.container, {
      query: 'SELECT * FROM c WHERE c.destination.kind = @k AND c.destination.container = @c AND c.status != @r',
      parameters: [{ name: '@k', value: 'sas' }, { name: '@c', value: container }, { name: '@r', value: 'revoked' }],
    }, 'listing agreements by container');
    return rows.map((r) => strip(r));
  }
}

export class CosmosExportStore implements ExportStore {
  constructor(private readonly container: Container) {}

  async createJob(job: ExportJob): Promise<void> {
    if ((await create(this.container, job, 'creating an export')) === 'exists') throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'creating an export: the id exists');
  }

  getJob(exportId: string): Promise<Versioned<ExportJob> | undefined> {
    return read<ExportJob>(this.container, exportId, exportId, 'reading an export');
  }

  replaceJob(job: ExportJob, etag: string): Promise<void> {
    return replace(this.container, job, job.exportId, etag, 'updating an export');
  }

  recordItem(item: ExportItem): Promise<'created' | 'exists'> {
    return create(this.container, item, 'recording an exported instance');
  }

  async getItem(exportId: string, researchSopInstanceUid: string): Promise<ExportItem | undefined> {
    return (await read<ExportItem>(this.container, `item:${researchSopInstanceUid}`, exportId, 'reading an exported instance'))?.doc;
  }

  async settled(exportId: string): Promise<number> {
    const [n] = await query<number>(this.container, {
      query: 'SELECT VALUE COUNT(1) FROM c WHERE c.exportId = @e AND c.type = @t',
      parameters: [{ name: '@e', value: exportId }, { name: '@t', value: 'item' }],
    }, 'counting an export', exportId);
    return n ?? 0;
  }

  async countRecorded(exportId: string, by = 1): Promise<number> {
    try {
      const r = await withTransientRetry(() => this.container.item(exportId, exportId).patch<ExportJob>([{ op: 'incr', path: '/recorded', value: by }]));
      return r.resource?.recorded ?? 0;
    } catch (e) {
      if (statusOf(e) === 404) throw new PipelineError(ErrorCodes.NOT_FOUND, 'counting an export: the export does not exist', { cause: e });
      throw fromServiceError(e, 'counting an export');
    }
  }

  async openLiveParts(agreementId?: string): Promise<ExportJob[]> {
    const rows = await query<ExportJob>(this.container, {
      query: `SELECT * FROM c WHERE c.type = @t AND c.live = true AND c.status = @s${agreementId ? ' AND c.agreementId = @a' : ''}`,
      parameters: [{ name: '@t', value: 'job' }, { name: '@s', value: 'running' }, ...(agreementId ? [{ name: '@a', value: agreementId }] : [])],
    }, 'listing the open live parts');
    return rows.map((r) => strip(r));
  }

  want(item: WantedItem): Promise<'created' | 'exists'> {
    return create(this.container, item, 'recording a wanted instance');
  }

  async counts(exportId: string, options: { live?: boolean } = {}): Promise<ExportCounts> {
    const count = async (type: string, status?: string) => {
      const [n] = await query<number>(this.container, {
        query: `SELECT VALUE COUNT(1) FROM c WHERE c.exportId = @e AND c.type = @t${status ? ' AND c.status = @s' : ''}`,
        parameters: [{ name: '@e', value: exportId }, { name: '@t', value: type }, ...(status ? [{ name: '@s', value: status }] : [])],
      }, 'counting an export', exportId);
      return n ?? 0;
    };
    const [done, failed, wanted, bytesRows] = await Promise.all([
      count('item', 'done'),
      count('item', 'failed'),
      options.live ? count('want') : Promise.resolve(0),
      query<number>(this.container, {
        query: 'SELECT VALUE SUM(c.file.size) FROM c WHERE c.exportId = @e AND c.type = @t AND c.status = @s',
        parameters: [{ name: '@e', value: exportId }, { name: '@t', value: 'item' }, { name: '@s', value: 'done' }],
      }, 'counting an export', exportId),
    ]);
    return { done, failed, wanted, bytes: bytesRows[0] ?? 0 };
  }

  async doneItems(exportId: string): Promise<ExportItem[]> {
    const rows = await query<ExportItem>(this.container, {
      query: 'SELECT * FROM c WHERE c.exportId = @e AND c.type = @t AND c.status = @s',
      parameters: [{ name: '@e', value: exportId }, { name: '@t', value: 'item' }, { name: '@s', value: 'done' }],
    }, 'listing an export', exportId);
    return rows.map((r) => strip(r)).sort((a, b) => ((a.file?.blob ?? '') < (b.file?.blob ?? '') ? -1 : 1));
  }

  async itemsOfInstance(researchSopInstanceUid: string): Promise<ExportItem[]> {
    const rows = await query<ExportItem>(this.container, {
      query: 'SELECT * FROM c WHERE c.id = @id AND c.type = @t AND c.status = @s',
      parameters: [{ name: '@id', value: `item:${researchSopInstanceUid}` }, { name: '@t', value: 'item' }, { name: '@s', value: 'done' }],
    }, 'finding the exports of an instance');
    return rows.map((r) => strip(r));
  }

  recordWithdrawal(item: WithdrawnItem): Promise<'created' | 'exists'> {
    return create(this.container, item, 'recording a withdrawn file');
  }

  async withdrawals(exportId: string): Promise<WithdrawnItem[]> {
    const rows = await query<WithdrawnItem>(this.container, {
      query: 'SELECT * FROM c WHERE c.exportId = @e AND c.type = @t',
      parameters: [{ name: '@e', value: exportId }, { name: '@t', value: 'withdrawal' }],
    }, 'listing the withdrawals of an export', exportId);
    return rows.map((r) => strip(r)).sort((a, b) => (a.file.blob < b.file.blob ? -1 : 1));
  }
}

export class CosmosSharingAudit implements SharingAuditStore {
  constructor(private readonly container: Container) {}

  async append(record: SharedFileRecord): Promise<void> {
    await create(this.container, record, 'recording a shared file');
  }

  async byPartner(partnerId: string): Promise<SharedFileRecord[]> {
    const rows = await query<SharedFileRecord>(this.container, { query: PARTNER_QUERY, parameters: [{ name: '@partner', value: partnerId }] }, 'reading the sharing record', partnerId);
    return rows.map((r) => strip(r));
  }
}

/** "What has partner X received?": one single-partition query (docs/sharing.md). */
export const PARTNER_QUERY = 'SELECT * FROM c WHERE c.partnerId = @partner ORDER BY c.time';
