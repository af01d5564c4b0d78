/**
 * Settings of the analytics export (issue 16, shared/analytics): read and validated apart from
 * the ingestion's, so that `npm run export-parquet` needs only the catalog and the research account.
 */
import { ErrorCodes, PipelineError } from '../errors';
import { Collector, type CosmosConnection, type StorageConnection } from './settings';

export interface AnalyticsSettings {
  /** The research account (ResearchStorage; SourceStorage / AzureWebJobsStorage when unset, as for the research copies). */
  storage: StorageConnection;
  /** ANALYTICS_CONTAINER: where the Parquet snapshots and their pointer live (default `analytics`). */
  container: string;
  cosmos: CosmosConnection;
  cosmosDatabase: string;
  researchCatalogContainer: string;
  /** PARQUET_EXPORT_MEMORY_MB: DuckDB's buffer pool during an export (the rest spills to the temporary folder). */
  memoryLimitMb: number;
  /** PARQUET_EXPORT_PAGE_SIZE: catalog documents per read-feed page. */
  pageSize: number;
}

/** Throws one PipelineError CONFIG_INVALID naming every bad setting. */
export function loadAnalyticsSettings(env: Record<string, string | undefined> = process.env): AnalyticsSettings {
  const c = new Collector(env);
  const storage = c.optional('ResearchStorage') || c.optional('ResearchStorage__blobServiceUri') ? c.storage('ResearchStorage') : c.storage('SourceStorage', 'AzureWebJobsStorage');
  const settings: AnalyticsSettings = {
    storage,
    container: c.containerName('ANALYTICS_CONTAINER', 'analytics'),
    cosmos: c.cosmos('CosmosDb'),
    cosmosDatabase: c.str('COSMOS_DATABASE', 'vna'),
    researchCatalogContainer: c.str('COSMOS_RESEARCH_CONTAINER', 'research-catalog'),
    memoryLimitMb: c.int('PARQUET_EXPORT_MEMORY_MB', 256, 64, 65_536),
    pageSize: c.int('PARQUET_EXPORT_PAGE_SIZE', 1000, 10, 10_000),
  };
  if (c.problems.length > 0) throw new PipelineError(ErrorCodes.CONFIG_INVALID, `invalid configuration: ${c.problems.join('; ')}`);
  return settings;
}
