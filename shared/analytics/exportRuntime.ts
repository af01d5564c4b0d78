/**
 * Builds the export's dependencies from its settings: the timer function and
 * `npm run export-parquet` run the same thing.
 */
import { createCosmosClient } from '../catalog/cosmosCatalog';
import type { AnalyticsSettings } from '../config/analyticsSettings';
import { fromServiceError } from '../errors';
import { blobServiceClient } from '../storage/blobStores';
import { BlobAnalyticsStore, CosmosCatalogFeed } from './azureAnalyticsStore';
import { DuckDbColumnarWriter } from './duckdbWriter';
import { exportCatalogSnapshot, type ExportOptions, type ExportResult } from './snapshot';

/** One export run against the configured catalog and account (see exportCatalogSnapshot). */
export async function runAnalyticsExport(settings: AnalyticsSettings, options: ExportOptions & { log?: (m: string) => void } = {}): Promise<ExportResult> {
  const store = new BlobAnalyticsStore(blobServiceClient(settings.storage).getContainerClient(settings.container));
  await store.ensure();
  let research;
  try {
    research = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.researchCatalogContainer);
  } catch (e) {
    throw fromServiceError(e, 'research catalog');
  }
  return exportCatalogSnapshot(
    {
      feed: new CosmosCatalogFeed(research),
      store,
      openWriter: () => DuckDbColumnarWriter.open({ memoryLimitMb: settings.memoryLimitMb }),
      ...(options.log ? { log: options.log } : {}),
    },
    { pageSize: settings.pageSize, ...options },
  );
}
