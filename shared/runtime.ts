/**
 * The composition root: builds the adapters from the settings once per process and hands
 * the use cases their dependencies. Function files call `runtime()`; tests build their own deps.
 */
import { readFileSync } from 'node:fs';

import { anqScopeOf, bothSources } from './anq/sourceRuntime';
import type { AccessAuditStore } from './audit/accessAudit';
import { CosmosAccessAudit } from './audit/cosmosAccessAudit';
import { type Authenticator, createAuthenticator } from './auth/authenticator';
import type { IndexStore } from './catalog/catalogStore';
import { catalogContainer, CosmosIndexStore, CosmosResearchCatalog, createCosmosClient, createDocumentClient, ensureCatalog, withCatalogRecovery } from './catalog/cosmosCatalog';
import { CosmosResearchCatalogReader } from './catalog/cosmosResearchReader';
import type { ResearchCatalogReader } from './catalog/researchCatalog';
import { loadAnqSettings } from './config/anqSettings';
import { loadAuthSettings, loadFreeTextCloudSettings, loadSettings, Settings, StorageConnection } from './config/settings';
import { builtInProfile, defaultProfile, loadProfile, Profile } from './dicom/deid/profile';
import { TesseractDetector } from './dicom/pixels/tesseractDetector';
import { ErrorCodes, PipelineError } from './errors';
import type { AnqScope } from './events/ingestEvents';
import { EventGridPublisher, noopPublisher } from './events/publisher';
import type { IngestDeps, IngestOutcome, Logger } from './ingest/ingestSourceFile';
import { Limiter } from './ingest/limiter';
import { OcrQueue } from './ingest/ocrQueue';
import { SeriesPixelChecks } from './ingest/seriesCheck';
import { createCloudPhiRecognizer } from './language/azureLanguagePii';
import { CatalogFrameIndexSource } from './retrieve/frameIndexSource';
import { MetadataCache } from './retrieve/instanceMetadata';
import { ResearchInstanceCache } from './retrieve/researchInstances';
import type { WadoDeps } from './retrieve/wado';
import { SharingCache } from './sharing/cache';
import { CosmosAgreementStore, CosmosExportStore, CosmosSharingAudit } from './sharing/cosmosSharing';
import { AzureDestinations } from './sharing/destination';
import { AzureExportQueue, EXPORT_QUEUE_CONNECTION, queueServiceFor } from './sharing/exportQueue';
import type { ExportQueue, SharingDeps } from './sharing/sharing';
import { SingleFlight } from './singleFlight';
import type { IngestionOutcomeReader } from './statistics/catalogStatistics';
import { CosmosIngestionOutcomes } from './statistics/cosmosIngestionOutcomes';
import { AzureQuarantineStore, AzureResearchStore, AzureSourceStore, blobServiceClient } from './storage/blobStores';
import { createTelemetry, Telemetry } from './telemetry/telemetry';

export interface Runtime {
  settings: Settings;
  /** Blob endpoints of the source account(s): event URLs must point inside them. */
  sourceBlobEndpoints: string[];
  /** The ANQ export that `anq://` event URLs must point inside; undefined when the ANQ source is off. */
  anqScope?: AnqScope;
  ingestDeps(log: Logger): IngestDeps;
  /** Bounds the ingestions running at once in this runtime (MAX_CONCURRENT_INGESTIONS). */
  ingestions: Limiter;
  /** The ingestions running in this runtime, which a delivery of the same event again joins (handleEvent.ts). */
  deliveries: SingleFlight<IngestOutcome>;
  researchCatalogReader: ResearchCatalogReader;
  /** Files per ingestion status and error code, from the restricted index (statistics, Operations.Read). */
  ingestionOutcomes: IngestionOutcomeReader;
  /** What WADO-RS reads: the research catalog and container only. `frameIndex` may be replaced (tests, the ingestion-built index). */
  retrieve: WadoDeps;
  index: IndexStore;
  telemetry: Telemetry;
  /** Who calls the HTTP API (bearer tokens or Easy Auth, by AUTH_MODE). */
  auth: Authenticator;
  /** The access audit of the HTTP API: append-only. */
  accessAudit: AccessAuditStore;
  /** Data sharing (shared/sharing): agreements, exports, the record of shared files. */
  sharing: SharingDeps;
  /** Checks every dependency; resolves with one entry per dependency. */
  health(): Promise<Record<string, 'ok' | 'unavailable'>>;
}

function endpointOf(conn: StorageConnection): string {
  return conn.kind === 'connectionString' ? conn.blobEndpoint : conn.blobServiceUri;
}

/** DEID_PROFILE: a built-in profile's name (basic, research-default, safe-harbor, limited-data-set) or a profile file's path. */
export function loadDeidProfile(path: string | undefined): Profile {
  if (!path) return defaultProfile();
  const builtIn = builtInProfile(path);
  if (builtIn) return builtIn;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PipelineError(ErrorCodes.PROFILE_INVALID, `DEID_PROFILE: the profile file cannot be read as JSON (${(e as Error).message})`);
  }
  return loadProfile(json);
}

async function build(): Promise<Runtime> {
  const settings = loadSettings();
  // Undefined when ANQ_S3_ENDPOINT is not set: the landing containers are then the only source.
  const anq = loadAnqSettings();
  // Incomplete authentication settings fail the start like any other setting: the API is never served open.
  const auth = createAuthenticator(loadAuthSettings());
  const profile = loadDeidProfile(settings.deidProfilePath);
  const sourceService = blobServiceClient(settings.sourceStorage);
  const researchService = settings.researchStorage === settings.sourceStorage ? sourceService : blobServiceClient(settings.researchStorage);
  const cosmos = createCosmosClient(settings.cosmos);
  const { index: indexContainer, research: researchContainer, audit: auditContainer, sharing: sharingContainers } = await ensureCatalog(settings, cosmos);
  // Point operations on the documents go through the pipeline's own client (cosmosDocuments.ts).
  const documents = createDocumentClient(settings.cosmos, { requestsInFlight: settings.cosmosRequestsInFlight });
  const index = new CosmosIndexStore(catalogContainer(indexContainer, documents));
  const catalog = new CosmosResearchCatalog(catalogContainer(researchContainer, documents), { summarySettleMs: settings.summarySettleMs, summaryRefreshIntervalMs: settings.summaryRefreshIntervalMs });
  const telemetry = createTelemetry({ connectionString: settings.appInsightsConnectionString, captureFile: settings.telemetryCaptureFile });
  const publisher = settings.eventGridTopic ? new EventGridPublisher(settings.eventGridTopic) : noopPublisher;
  const research = new AzureResearchStore(researchService, settings.researchContainer);
  const quarantineContainer = sourceService.getContainerClient(settings.quarantineContainer);
  const blob = { source: new AzureSourceStore(sourceService), quarantine: new AzureQuarantineStore(sourceService, quarantineContainer) };
  // ANQ locations (container `anq/<bucket>`) go to the cluster's S3 API, the others to the landing account.
  const { source, quarantine } = bothSources(blob, anq, quarantineContainer);
  const sourceBlobEndpoints = [endpointOf(settings.sourceStorage)];
  // The free-text detector's cloud option (off by default): FREE_TEXT_CLOUD.
  const cloudPhi = createCloudPhiRecognizer(loadFreeTextCloudSettings());

  const researchCatalogReader = new CosmosResearchCatalogReader(researchContainer);
  const headerLimits = { ...settings.headerLimits, maxHeaderBytes: settings.maxHeaderBytes };
  // One OCR engine pool per instance, apart from the ingestion limiter: its workers start on first use.
  const textDetector = new TesseractDetector({ workers: settings.ocrWorkers });
  // Unflagged images of the other types: one OCR per series and size in this process (seriesCheck.ts).
  const seriesChecks = new SeriesPixelChecks();
  // Files in OCR and waiting for it, bounded apart from the ingestion slots (see ocrQueue.ts).
  const ocrQueue = new OcrQueue({ running: settings.ocrWorkers, maxQueued: settings.ocrQueueMax, maxWaitMs: settings.ocrWaitMaxMs });

  // Built on first send: a process that never exports needs no queue connection.
  let exportQueue: ExportQueue | undefined;
  const queue: ExportQueue = {
    send: (messages) => (exportQueue ??= new AzureExportQueue(queueServiceFor(EXPORT_QUEUE_CONNECTION), settings.sharing.exportQueue)).send(messages),
  };
  const sharing: SharingDeps = {
    agreements: new CosmosAgreementStore(sharingContainers.agreements),
    exports: new CosmosExportStore(sharingContainers.exports),
    audit: new CosmosSharingAudit(sharingContainers.audit),
    destinations: new AzureDestinations(settings.sharing.storage === settings.researchStorage ? researchService : blobServiceClient(settings.sharing.storage)),
    catalog: researchCatalogReader,
    index,
    source,
    queue,
    publisher,
    masterKey: settings.deidKey,
    masterKeyId: settings.deidKeyId,
    sasMaxHours: settings.sharing.sasMaxHours,
    reservedContainers: [...settings.sourceContainers, settings.researchContainer, settings.quarantineContainer],
    limits: headerLimits,
    burnedIn: { mode: settings.burnedInPolicy },
    cache: new SharingCache(),
  };

  return {
    settings,
    sharing,
    sourceBlobEndpoints,
    ...(anq ? { anqScope: anqScopeOf(anq) } : {}),
    index,
    telemetry,
    auth,
    accessAudit: new CosmosAccessAudit(catalogContainer(auditContainer, documents)),
    researchCatalogReader,
    ingestionOutcomes: new CosmosIngestionOutcomes(indexContainer),
    retrieve: {
      catalog: researchCatalogReader,
      research,
      frameIndex: new CatalogFrameIndexSource({ research, catalog }),
      headerLimits,
      metadataCache: new MetadataCache(),
      instanceCache: new ResearchInstanceCache(),
    },
    ingestions: new Limiter(settings.maxConcurrentIngestions),
    deliveries: new SingleFlight<IngestOutcome>(),
    ingestDeps: (log) => ({
      source,
      research,
      quarantine,
      index,
      catalog,
      publisher,
      telemetry,
      log,
      deid: { profile, key: settings.deidKey, keyId: settings.deidKeyId, ...(cloudPhi ? { cloudPhi } : {}) },
      limits: headerLimits,
      burnedIn: { mode: settings.burnedInPolicy, ...(settings.burnedInPolicy === 'redact' ? { ocr: { detector: textDetector, sampleFrames: settings.ocrSampleFrames, seriesChecks } } : {}) },
      ocrQueue,
    }),
    async health() {
      const check = async (f: () => Promise<unknown>) => {
        try {
          await f();
          return 'ok' as const;
        } catch {
          return 'unavailable' as const;
        }
      };
      const [storage, researchStorage, catalogDb] = await Promise.all([
        check(() => sourceService.getContainerClient(settings.sourceContainers[0] ?? '').getProperties()),
        check(() => researchService.getContainerClient(settings.researchContainer).getProperties()),
        // A catalog that lost its containers (a Cosmos server restarted empty) gets them back here.
        check(() => withCatalogRecovery(researchContainer, () => researchContainer.read())),
      ]);
      return { sourceStorage: storage, researchStorage, catalog: catalogDb };
    },
  };
}

let instance: Promise<Runtime> | undefined;

/** The process-wide runtime, built on first use. A failed build is retried on the next call. */
export function runtime(): Promise<Runtime> {
  instance ??= build().catch((e) => {
    instance = undefined;
    throw e;
  });
  return instance;
}

/**
 * Drops the process-wide runtime: the next call builds one from the settings as they are then,
 * as a host restart after a settings change does in Azure (a key rotation, a new profile). For
 * local tools and tests; the runtime dropped keeps serving the calls that hold it.
 */
export function resetRuntime(): void {
  instance = undefined;
}
