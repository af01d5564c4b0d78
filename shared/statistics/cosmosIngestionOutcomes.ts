/** Ingestion outcomes over the restricted index container (partition key /id), without GROUP BY. */
import type { Container } from '@azure/cosmos';

import { withCatalogRecovery } from '../catalog/cosmosCatalog';
import type { IngestionStatus } from '../catalog/documents';
import { fromServiceError } from '../errors';
import type { IngestionOutcomeReader, IngestionOutcomes } from './catalogStatistics';

const STATUSES: readonly IngestionStatus[] = ['processing', 'cataloged', 'failed', 'quarantined', 'deleted'];

/**
 * One COUNT per status (answered from the index on the real service), and a projection of the
 * failed and quarantined files only, tallied by error code here: the server cannot group.
 */
export class CosmosIngestionOutcomes implements IngestionOutcomeReader {
  constructor(private readonly container: Container) {}

  async outcomes(options: { abortSignal?: AbortSignal } = {}): Promise<IngestionOutcomes> {
    const feed = options.abortSignal ? { abortSignal: options.abortSignal } : {};
    try {
      const counts = await Promise.all(STATUSES.map((status) => withCatalogRecovery(this.container, () =>
        this.container.items.query<number>({ query: 'SELECT VALUE COUNT(1) FROM c WHERE c.status = @s', parameters: [{ name: '@s', value: status }] }, feed).fetchAll())));
      const byStatus: Record<string, number> = {};
      STATUSES.forEach((status, i) => (byStatus[status] = counts[i]?.resources[0] ?? 0));
      const { resources } = await withCatalogRecovery(this.container, () => this.container.items.query<{ status: string; errorCode?: string }>(
        { query: "SELECT c.status, c.errorCode FROM c WHERE c.status = 'failed' OR c.status = 'quarantined'", parameters: [] }, feed).fetchAll());
      const tally = new Map<string, { status: string; errorCode: string; files: number }>();
      for (const r of resources) {
        const errorCode = r.errorCode ?? '';
        const key = `${r.status}\u0000${errorCode}`;
        const cell = tally.get(key) ?? { status: r.status, errorCode, files: 0 };
        cell.files += 1;
        tally.set(key, cell);
      }
      return { byStatus, byError: [...tally.values()].sort((a, b) => b.files - a.files || (a.errorCode < b.errorCode ? -1 : 1)) };
    } catch (e) {
      throw fromServiceError(e, 'reading ingestion outcomes');
    }
  }
}
