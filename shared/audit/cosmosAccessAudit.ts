/**
 * The access audit in Cosmos DB (container `access-audit`, partition key `/pk` =
 * `<callerId>|<YYYY-MM>`). Records are created, never replaced: the adapter has no update path,
 * and in Azure the function's identity can be given a custom data role without replace and
 * delete on this container.
 */
import type { SqlParameter } from '@azure/cosmos';

import { type CatalogContainer, withCatalogRecovery } from '../catalog/cosmosCatalog';
import { fromServiceError } from '../errors';
import { type AccessAuditStore, type AccessQuery, type AccessRecord, partitionKeyOf } from './accessAudit';

/** The month partitions from `to` back to `from`, newest first. */
export function monthsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  const start = new Date(from);
  const cursor = new Date(Date.UTC(new Date(to).getUTCFullYear(), new Date(to).getUTCMonth(), 1));
  const first = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), 1);
  while (cursor.getTime() >= first) {
    out.push(cursor.toISOString());
    cursor.setUTCMonth(cursor.getUTCMonth() - 1);
  }
  return out;
}

const FIELDS = 'c.id, c.time, c.callerId, c.callerKind, c.appId, c.via, c.route, c.method, c.role, c.status, c.returned, c.requested, c.queryKeys, c.sourceSha256, c.invocationId, c.supersedes';

export class CosmosAccessAudit implements AccessAuditStore {
  constructor(private readonly catalog: CatalogContainer) {}

  async append(record: AccessRecord): Promise<void> {
    try {
      await withCatalogRecovery(this.catalog.container, () => this.catalog.documents.create(record, record.pk));
    } catch (e) {
      throw fromServiceError(e, 'writing the access audit');
    }
  }

  async query(q: AccessQuery): Promise<AccessRecord[]> {
    const where = ['c.time >= @from', 'c.time < @to'];
    const parameters: SqlParameter[] = [{ name: '@from', value: q.from }, { name: '@to', value: q.to }];
    if (q.studyInstanceUid !== undefined) {
      where.push('ARRAY_CONTAINS(c.returned.studies, @study)');
      parameters.push({ name: '@study', value: q.studyInstanceUid });
    }
    try {
      if (q.callerId === undefined) return await this.run(where, parameters, q.limit);
      // One caller: one single-partition query per month, newest month first, until the limit.
      const out: AccessRecord[] = [];
      for (const month of monthsBetween(q.from, q.to)) {
        const pk = partitionKeyOf(q.callerId, month);
        out.push(...(await this.run([...where, 'c.pk = @pk'], [...parameters, { name: '@pk', value: pk }], q.limit - out.length, pk)));
        if (out.length >= q.limit) break;
      }
      return out;
    } catch (e) {
      throw fromServiceError(e, 'reading the access audit');
    }
  }

  private async run(where: string[], parameters: SqlParameter[], limit: number, partitionKey?: string): Promise<AccessRecord[]> {
    const query = `SELECT TOP ${Math.max(1, Math.floor(limit))} ${FIELDS} FROM c WHERE ${where.join(' AND ')} ORDER BY c.time DESC`;
    const { container } = this.catalog;
    const { resources } = await withCatalogRecovery(container, () =>
      container.items.query<AccessRecord>({ query, parameters }, partitionKey !== undefined ? { partitionKey } : {}).fetchAll(),
    );
    // Projections give absent fields as missing or null; drop the nulls.
    return resources.map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null && v !== undefined)) as unknown as AccessRecord);
  }
}
