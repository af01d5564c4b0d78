import type { Container, FeedOptions } from '@azure/cosmos';

import { fromServiceError } from '../errors';
import type { ResearchCatalogReader, SqlQuery } from './researchCatalog';

/**
 * The research catalog reader over a Cosmos DB container (partition key /studyInstanceUid).
 * Pages are fetched one round trip at a time, so a consumer that stops iterating (a QIDO page
 * that is full) stops the reading too.
 */
export class CosmosResearchCatalogReader implements ResearchCatalogReader {
  constructor(private readonly container: Container) {}

  /** Throws PipelineError SERVICE_* (or NOT_FOUND for a missing container) on service faults. Read-only. */
  async *query<T>(spec: SqlQuery, options: { partitionKey?: string; pageSize?: number; abortSignal?: AbortSignal } = {}): AsyncIterable<T> {
    const feedOptions: FeedOptions = {
      ...(options.partitionKey !== undefined ? { partitionKey: options.partitionKey } : {}),
      ...(options.pageSize !== undefined ? { maxItemCount: options.pageSize } : {}),
      ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
    };
    const iterator = this.container.items.query<T>(spec, feedOptions);
    while (iterator.hasMoreResults()) {
      let resources: T[];
      try {
        resources = (await iterator.fetchNext()).resources ?? [];
      } catch (e) {
        throw fromServiceError(e, 'research catalog query');
      }
      for (const item of resources) yield item;
    }
  }
}
