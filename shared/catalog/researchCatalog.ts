/** Read access to the research catalog, as the query side (QIDO-RS, statistics) needs it. */
export interface SqlParameter {
  name: string;
  value: string | number | boolean | null | string[] | number[];
}

export interface SqlQuery {
  query: string;
  parameters: SqlParameter[];
}

export interface ResearchCatalogReader {
  /**
   * Runs a parameterised SQL query over the research catalog container and yields the
   * documents (or projections) page by page. Cross-partition unless `partitionKey` (a
   * research StudyInstanceUID) is given. Throws PipelineError SERVICE_* on service faults.
   * Read-only; safe to repeat.
   */
  query<T>(spec: SqlQuery, options?: { partitionKey?: string; pageSize?: number; abortSignal?: AbortSignal }): AsyncIterable<T>;
}
