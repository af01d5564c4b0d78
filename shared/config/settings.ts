/**
 * Configuration, read and validated once. A missing or malformed setting fails at start-up
 * with one message naming every bad setting. Secrets are never echoed in that message.
 *
 * Connections follow the Azure Functions conventions: a connection string in `<Name>`, or an
 * identity-based connection in `<Name>__blobServiceUri` / `<Name>__accountEndpoint` /
 * `<Name>__topicEndpoint` (managed identity; `<Name>__clientId` picks a user-assigned one).
 */
import { DEFAULT_LIMITS } from '../dicom/limits';
import { ErrorCodes, PipelineError } from '../errors';

export type StorageConnection =
  | { kind: 'connectionString'; connectionString: string; blobEndpoint: string }
  | { kind: 'identity'; blobServiceUri: string; clientId?: string };

export type CosmosConnection =
  | { kind: 'key'; endpoint: string; key: string }
  | { kind: 'identity'; endpoint: string; clientId?: string };

export interface EventGridTopic {
  endpoint: string;
  /** Access key; absent means managed identity. */
  key?: string;
  clientId?: string;
}

export interface SharingSettings {
  agreementsContainer: string;
  exportsContainer: string;
  /** Append-only: one document per file that left, by partner. */
  sharingAuditContainer: string;
  /** The storage queue the export fans out through (one message per instance); its poison queue is `<name>-poison`. */
  exportQueue: string;
  /** Hours a destination SAS is valid for at most (it also ends with the agreement or its revocation). */
  sasMaxHours: number;
  /**
   * The account of the `sas` destinations' containers (SharingStorage; the research account when
   * unset). A SAS under a stored access policy is signed with the account key, so in Azure this is
   * a connection string to an account of its own that holds partner copies only.
   */
  storage: StorageConnection;
}

export interface Settings {
  sourceStorage: StorageConnection;
  researchStorage: StorageConnection;
  /** Landing containers the archive replicates into; events for other containers are ignored. */
  sourceContainers: string[];
  researchContainer: string;
  quarantineContainer: string;
  cosmos: CosmosConnection;
  cosmosDatabase: string;
  /**
   * Point requests (creates and reads) out at once per catalog container before further ones
   * wait and leave together as one bulk request (shared/catalog/bulkLane.ts); 0 sends every one alone.
   */
  cosmosRequestsInFlight: number;
  /** Restricted, identified index: one document per source file. */
  indexContainer: string;
  /** Research catalog: study, series and instance documents, de-identified values only. */
  researchCatalogContainer: string;
  /** Access audit: one document per served API request, created only, never replaced (research UIDs only). */
  auditContainer: string;
  /** Data-sharing (shared/sharing): agreements, export jobs and their items, the append-only record of files shared. */
  sharing: SharingSettings;
  /** Topic that receives VNA.Catalog.InstanceCataloged events; absent: no publishing. */
  eventGridTopic?: EventGridTopic;
  /** HMAC key for research UIDs, pseudonyms and date shifts. */
  deidKey: Buffer;
  /** Identifier of deidKey, recorded in every output so keys can be rotated. */
  deidKeyId: string;
  /** Path of a de-identification profile file; absent: the built-in default research profile. */
  deidProfilePath?: string;
  appInsightsConnectionString?: string;
  /** Local runs and tests: telemetry records appended to this file as JSON lines. */
  telemetryCaptureFile?: string;
  /** Ingestions running at once in one instance. */
  maxConcurrentIngestions: number;
  /**
   * How long a series or study summary refresh waits, on an idle series, for more instances of
   * it to arrive, so that a burst of one series refreshes once per interval, not once per instance.
   */
  summarySettleMs: number;
  /**
   * Under a sustained stream of one series, the least time between the starts of two refreshes
   * of its summaries: the instances of the interval share one refresh (see shared/catalog/coalesce.ts).
   */
  summaryRefreshIntervalMs: number;
  /** Largest header (everything but the pixel data) held in memory for one file. */
  maxHeaderBytes: number;
  /**
   * The other bounds on one file (see shared/dicom/limits.ts): elements and sequence items per
   * header, sequence nesting, estimated memory of the parsed header, and the inflated size and
   * ratio of a deflated data set.
   */
  headerLimits: { maxElements: number; maxItems: number; maxDepth: number; maxHeaderMemoryBytes: number; maxInflatedBytes: number; maxInflationRatio: number };
  /** Source files whose pixel data may hold burned-in text: 'redact' (default: OCR and black out), 'quarantine' or 'allow'. */
  burnedInPolicy: 'redact' | 'quarantine' | 'allow';
  /** OCR engine workers (OCR_WORKERS), apart from the ingestion concurrency. */
  ocrWorkers: number;
  /** Frames OCR'd per multi-frame instance (OCR_SAMPLE_FRAMES). */
  ocrSampleFrames: number;
  /** Files waiting for OCR at most, beyond the OCR_WORKERS in OCR (OCR_QUEUE_MAX); more are refused with OCR_BUSY (Event Grid retries them). */
  ocrQueueMax: number;
  /** Longest a file waits for OCR, in ms (OCR_WAIT_MAX_MS), before it is refused with OCR_BUSY: well within functionTimeout. */
  ocrWaitMaxMs: number;
  /**
   * Bounds on one QIDO-RS request: wild card patterns (all keys together) of at most
   * QIDO_MAX_PATTERN_LENGTH characters and QIDO_MAX_WILDCARDS wild cards (400 beyond); at most
   * QIDO_MAX_SCANNED_DOCUMENTS catalog documents read and QIDO_TIME_BUDGET_MS spent (413 beyond).
   */
  qidoLimits: { maxPatternLength: number; maxWildcards: number; maxScannedDocuments: number; timeBudgetMs: number };
  /** STATISTICS_MIN_CELL: research-facing statistics withhold cells describing fewer studies (default 11). */
  statisticsMinCell: number;
}

/** The account `UseDevelopmentStorage=true` names (Azurite's; its key lives with the local stack, local/emulators.ts). */
const DEVELOPMENT_STORAGE_ACCOUNT = 'devstoreaccount1';

type Env = Record<string, string | undefined>;

function parseConnectionString(cs: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of cs.split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim().toLowerCase()] = part.slice(i + 1).trim();
  }
  return out;
}

/** Blob endpoint of a storage connection string (explicit BlobEndpoint, development storage, or account name). */
export function blobEndpointOf(cs: string): string | undefined {
  if (cs.trim() === 'UseDevelopmentStorage=true') return `http://127.0.0.1:10000/${DEVELOPMENT_STORAGE_ACCOUNT}`;
  const p = parseConnectionString(cs);
  if (p.blobendpoint) return p.blobendpoint.replace(/\/+$/, '');
  if (p.accountname) {
    return `${p.defaultendpointsprotocol ?? 'https'}://${p.accountname}.blob.${p.endpointsuffix ?? 'core.windows.net'}`;
  }
  return undefined;
}

/** Reads settings and collects every problem, so that one CONFIG_INVALID names them all. */
export class Collector {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  str(name: string, fallback?: string): string {
    const v = this.env[name]?.trim();
    if (v) return v;
    if (fallback !== undefined) return fallback;
    this.problems.push(`${name} is required`);
    return '';
  }

  optional(name: string): string | undefined {
    const v = this.env[name]?.trim();
    return v ? v : undefined;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.env[name]?.trim();
    if (!raw) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  url(name: string, value: string): string {
    try {
      const u = new URL(value);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
      return value.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name} must be an http(s) URL`);
      return '';
    }
  }

  /**
   * An http(s) URL that carries identified data or a credential: clear text only to loopback
   * (a local stand-in), and no credentials, fragment or (unless allowed) query in it.
   */
  secureUrl(name: string, value: string, allowQuery = false): string {
    try {
      const u = new URL(value);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
      if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) this.problems.push(`${name} must use https (http is accepted on loopback only)`);
      if (u.username || u.password || (u.search && !allowQuery) || u.hash) this.problems.push(`${name} must not carry credentials, a query or a fragment`);
      return u.search ? value : value.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name} must be an http(s) URL`);
      return '';
    }
  }

  /** Throws the one CONFIG_INVALID naming every problem collected. */
  fail(): never {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, `invalid configuration: ${this.problems.join('; ')}`);
  }

  storage(name: string, fallbackName?: string): StorageConnection {
    const cs = this.optional(name);
    if (cs) {
      const blobEndpoint = blobEndpointOf(cs);
      if (!blobEndpoint) {
        this.problems.push(`${name} is not a storage connection string (needs AccountName or BlobEndpoint)`);
        return { kind: 'connectionString', connectionString: '', blobEndpoint: '' };
      }
      return { kind: 'connectionString', connectionString: cs, blobEndpoint };
    }
    const uri = this.optional(`${name}__blobServiceUri`);
    if (uri) {
      return { kind: 'identity', blobServiceUri: this.url(`${name}__blobServiceUri`, uri), clientId: this.optional(`${name}__clientId`) };
    }
    if (fallbackName && (this.optional(fallbackName) || this.optional(`${fallbackName}__blobServiceUri`))) return this.storage(fallbackName);
    this.problems.push(
      `${name} (connection string) or ${name}__blobServiceUri (managed identity) is required${fallbackName ? ` (${fallbackName} is used when neither is set)` : ''}`,
    );
    return { kind: 'connectionString', connectionString: '', blobEndpoint: '' };
  }

  cosmos(name: string): CosmosConnection {
    const cs = this.optional(name);
    if (cs) {
      const p = parseConnectionString(cs);
      if (!p.accountendpoint || !p.accountkey) {
        this.problems.push(`${name} must hold AccountEndpoint and AccountKey`);
        return { kind: 'key', endpoint: '', key: '' };
      }
      return { kind: 'key', endpoint: this.url(`${name} AccountEndpoint`, p.accountendpoint), key: p.accountkey };
    }
    const endpoint = this.optional(`${name}__accountEndpoint`);
    if (endpoint) {
      return { kind: 'identity', endpoint: this.url(`${name}__accountEndpoint`, endpoint), clientId: this.optional(`${name}__clientId`) };
    }
    this.problems.push(`${name} (connection string) or ${name}__accountEndpoint (managed identity) is required`);
    return { kind: 'key', endpoint: '', key: '' };
  }

  containerName(name: string, fallback: string): string {
    const v = this.str(name, fallback);
    if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(v)) {
      this.problems.push(`${name} must be a valid blob container name (3-63 lower-case letters, digits and single hyphens)`);
    }
    return v;
  }
}

/**
 * Reads and validates the settings. Throws one PipelineError (CONFIG_INVALID) naming every
 * bad setting; never includes a secret's value.
 */
export function loadSettings(env: Env = process.env): Settings {
  const c = new Collector(env);
  const sourceStorage = c.storage('SourceStorage', 'AzureWebJobsStorage');
  const researchStorage = c.optional('ResearchStorage') || c.optional('ResearchStorage__blobServiceUri')
    ? c.storage('ResearchStorage')
    : sourceStorage;
  const sourceContainers = c.str('SOURCE_CONTAINERS', 'anq-replica').split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of sourceContainers) {
    if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(name)) c.problems.push(`SOURCE_CONTAINERS: "${name}" is not a valid container name`);
  }
  const researchContainer = c.containerName('RESEARCH_CONTAINER', 'research');
  const quarantineContainer = c.containerName('QUARANTINE_CONTAINER', 'quarantine');
  const cosmos = c.cosmos('CosmosDb');
  const cosmosDatabase = c.str('COSMOS_DATABASE', 'vna');
  const cosmosRequestsInFlight = c.int('COSMOS_REQUESTS_IN_FLIGHT', 1, 0, 64);
  const indexContainer = c.str('COSMOS_INDEX_CONTAINER', 'ingestions');
  const researchCatalogContainer = c.str('COSMOS_RESEARCH_CONTAINER', 'research-catalog');
  const auditContainer = c.str('COSMOS_AUDIT_CONTAINER', 'access-audit');

  const sharing: SharingSettings = {
    agreementsContainer: c.str('COSMOS_AGREEMENTS_CONTAINER', 'agreements'),
    exportsContainer: c.str('COSMOS_EXPORTS_CONTAINER', 'exports'),
    sharingAuditContainer: c.str('COSMOS_SHARING_AUDIT_CONTAINER', 'sharing-audit'),
    exportQueue: c.str('EXPORT_QUEUE', 'partner-exports'),
    sasMaxHours: c.int('SHARING_SAS_MAX_HOURS', 24 * 30, 1, 24 * 365),
    storage: c.optional('SharingStorage') || c.optional('SharingStorage__blobServiceUri') ? c.storage('SharingStorage') : researchStorage,
  };
  if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,56}[a-z0-9]$/.test(sharing.exportQueue)) c.problems.push('EXPORT_QUEUE must be a valid queue name (3-58 lower-case letters, digits and single hyphens)');

  let eventGridTopic: EventGridTopic | undefined;
  const topic = c.optional('EVENTGRID_TOPIC_ENDPOINT');
  if (topic) {
    eventGridTopic = { endpoint: c.url('EVENTGRID_TOPIC_ENDPOINT', topic), key: c.optional('EVENTGRID_TOPIC_KEY'), clientId: c.optional('EVENTGRID_TOPIC_CLIENT_ID') };
  }

  const keyText = c.str('DEID_KEY');
  let deidKey = Buffer.alloc(0);
  if (keyText) {
    deidKey = /^base64:/.test(keyText) ? Buffer.from(keyText.slice(7), 'base64') : Buffer.from(keyText, 'utf8');
    if (deidKey.length < 32) c.problems.push('DEID_KEY must hold at least 32 bytes (text, or base64:...)');
  }
  const deidKeyId = c.str('DEID_KEY_ID', 'k1');
  if (!/^[A-Za-z0-9._-]{1,32}$/.test(deidKeyId)) c.problems.push('DEID_KEY_ID must be 1-32 letters, digits, dots, underscores or hyphens');

  const burned = c.str('BURNED_IN_POLICY', 'redact');
  if (burned !== 'redact' && burned !== 'quarantine' && burned !== 'allow') c.problems.push('BURNED_IN_POLICY must be "redact", "quarantine" or "allow"');

  const settings: Settings = {
    sourceStorage,
    researchStorage,
    sourceContainers,
    researchContainer,
    quarantineContainer,
    cosmos,
    cosmosDatabase,
    cosmosRequestsInFlight,
    indexContainer,
    researchCatalogContainer,
    auditContainer,
    sharing,
    eventGridTopic,
    deidKey,
    deidKeyId,
    deidProfilePath: c.optional('DEID_PROFILE'),
    appInsightsConnectionString: c.optional('APPLICATIONINSIGHTS_CONNECTION_STRING'),
    telemetryCaptureFile: c.optional('TELEMETRY_CAPTURE_FILE'),
    maxConcurrentIngestions: c.int('MAX_CONCURRENT_INGESTIONS', 8, 1, 256),
    summarySettleMs: c.int('SUMMARY_SETTLE_MS', 50, 0, 5000),
    summaryRefreshIntervalMs: c.int('SUMMARY_REFRESH_INTERVAL_MS', 250, 0, 10000),
    maxHeaderBytes: c.int('MAX_HEADER_BYTES', 64 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024),
    headerLimits: {
      maxElements: c.int('MAX_HEADER_ELEMENTS', DEFAULT_LIMITS.maxElements, 1_000, 10_000_000),
      maxItems: c.int('MAX_SEQUENCE_ITEMS', DEFAULT_LIMITS.maxItems, 100, 10_000_000),
      maxDepth: c.int('MAX_SEQUENCE_DEPTH', DEFAULT_LIMITS.maxDepth, 8, 512),
      maxHeaderMemoryBytes: c.int('MAX_HEADER_MEMORY_BYTES', DEFAULT_LIMITS.maxHeaderMemoryBytes, 1024 * 1024, 16 * 1024 * 1024 * 1024),
      maxInflatedBytes: c.int('MAX_INFLATED_BYTES', DEFAULT_LIMITS.maxInflatedBytes, 1024 * 1024, 1024 * 1024 * 1024 * 1024),
      maxInflationRatio: c.int('MAX_INFLATION_RATIO', DEFAULT_LIMITS.maxInflationRatio, 2, 1100),
    },
    burnedInPolicy: burned as 'redact' | 'quarantine' | 'allow',
    ocrWorkers: c.int('OCR_WORKERS', 1, 1, 16),
    ocrSampleFrames: c.int('OCR_SAMPLE_FRAMES', 5, 1, 100),
    ocrQueueMax: c.int('OCR_QUEUE_MAX', 16, 0, 1024),
    ocrWaitMaxMs: c.int('OCR_WAIT_MAX_MS', 240_000, 1_000, 480_000),
    qidoLimits: {
      maxPatternLength: c.int('QIDO_MAX_PATTERN_LENGTH', 128, 1, 4096),
      maxWildcards: c.int('QIDO_MAX_WILDCARDS', 32, 1, 1024),
      maxScannedDocuments: c.int('QIDO_MAX_SCANNED_DOCUMENTS', 50_000, 100, 10_000_000),
      timeBudgetMs: c.int('QIDO_TIME_BUDGET_MS', 10_000, 100, 230_000),
    },
    statisticsMinCell: c.int('STATISTICS_MIN_CELL', 11, 1, 1_000_000),
  };
  if (c.problems.length > 0) {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, `invalid configuration: ${c.problems.join('; ')}`);
  }
  return settings;
}

/** Where the keys that sign bearer tokens come from: a JWKS URL (fetched once, cached) or a JWKS file. */
export type JwksSource = { kind: 'url'; url: string } | { kind: 'file'; path: string };

/**
 * Who may call the HTTP API. `entra`: a bearer token validated in the process against the
 * tenant's keys (issuer, audience, expiry, signature). `easyauth`: App Service authentication
 * validated the caller and passes its principal in `x-ms-client-principal`; only then may that
 * header be trusted (App Service strips it from client requests), so it is never read in `entra` mode.
 */
export type AuthSettings =
  | { mode: 'entra'; issuers: string[]; audiences: string[]; jwks: JwksSource; clockToleranceSeconds: number }
  | { mode: 'easyauth' };

const ENTRA_AUTHORITY = 'https://login.microsoftonline.com';

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '::1' || hostname === '[::1]' || /^127\./.test(hostname);
}

/** The default of HEAP_GROWING_PERCENT: the heap may grow to three times what a full collection kept (docs/research-access.md, 0.14.1). */
const HEAP_GROWING_PERCENT_DEFAULT = 200;

/**
 * HEAP_GROWING_PERCENT: how far the worker's JavaScript heap may grow above what the last full
 * collection kept before the next one (200: to three times; 0: V8's own factor). Throws
 * CONFIG_INVALID when it is not a whole number from 0 to 300.
 */
export function loadHeapGrowingPercent(env: Env = process.env): number {
  const c = new Collector(env);
  const percent = c.int('HEAP_GROWING_PERCENT', HEAP_GROWING_PERCENT_DEFAULT, 0, 300);
  if (c.problems.length > 0) c.fail();
  return percent;
}

/**
 * Reads and validates the API's authentication settings (AUTH_MODE, AUTH_TENANT_ID, AUTH_ISSUER,
 * AUTH_AUDIENCE, AUTH_JWKS_URI, AUTH_CLOCK_SKEW_SECONDS). Throws one PipelineError (CONFIG_INVALID)
 * naming every missing or bad one. `npm start` and the test stack set them for the local
 * development issuer; in Azure they must be set.
 */
export function loadAuthSettings(env: Env = process.env): AuthSettings {
  const c = new Collector(env);
  const mode = c.str('AUTH_MODE', 'entra').toLowerCase();
  if (mode === 'easyauth') return { mode };
  if (mode !== 'entra') {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'invalid configuration: AUTH_MODE must be "entra" (bearer tokens) or "easyauth" (App Service authentication in front)');
  }
  const tenant = c.optional('AUTH_TENANT_ID');
  if (tenant !== undefined && !/^[A-Za-z0-9.-]{1,253}$/.test(tenant)) c.problems.push('AUTH_TENANT_ID must be the tenant id (a GUID) or its domain');
  const list = (name: string) => (c.optional(name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);

  // Entra issues v2.0 tokens, or v1.0 ones (sts.windows.net) when the API's registration asks
  // for them; both are signed with the tenant's keys.
  let issuers = list('AUTH_ISSUER');
  if (issuers.length === 0 && tenant) issuers = [`${ENTRA_AUTHORITY}/${tenant}/v2.0`, `https://sts.windows.net/${tenant}/`];
  if (issuers.length === 0) c.problems.push('AUTH_TENANT_ID (or AUTH_ISSUER) is required when AUTH_MODE is entra');
  const audiences = list('AUTH_AUDIENCE');
  if (audiences.length === 0) c.problems.push('AUTH_AUDIENCE is required when AUTH_MODE is entra (the API\'s application ID URI or client id)');

  let jwks: JwksSource = { kind: 'url', url: '' };
  const jwksSetting = c.optional('AUTH_JWKS_URI');
  if (jwksSetting && /^https?:\/\//i.test(jwksSetting)) {
    const url = c.url('AUTH_JWKS_URI', jwksSetting);
    // Keys fetched in clear text could be swapped on the way; only loopback (the local issuer) may use http.
    if (url && new URL(url).protocol === 'http:' && !isLoopbackHost(new URL(url).hostname)) c.problems.push('AUTH_JWKS_URI must use https (http is accepted on loopback only)');
    jwks = { kind: 'url', url };
  } else if (jwksSetting) {
    jwks = { kind: 'file', path: jwksSetting.replace(/^file:(\/\/)?/i, '') };
  } else if (tenant) {
    jwks = { kind: 'url', url: `${ENTRA_AUTHORITY}/${tenant}/discovery/v2.0/keys` };
  } else if (issuers.length > 0) {
    c.problems.push('AUTH_JWKS_URI is required when AUTH_ISSUER is set without AUTH_TENANT_ID');
  }
  const clockToleranceSeconds = c.int('AUTH_CLOCK_SKEW_SECONDS', 60, 0, 300);
  if (c.problems.length > 0) {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, `invalid configuration: ${c.problems.join('; ')}`);
  }
  return { mode: 'entra', issuers, audiences, jwks, clockToleranceSeconds };
}

/**
 * The cloud option of the free-text detector (README "Free text"): Azure AI Language PII
 * detection in its PHI domain, assisting the local detector. Off unless FREE_TEXT_CLOUD is
 * `azure-language`. The key, when set, authenticates; otherwise a managed identity does (the
 * user-assigned one of AZURE_LANGUAGE_CLIENT_ID, or DefaultAzureCredential), which needs the
 * Cognitive Services User role on the Language resource.
 */
export interface FreeTextCloudSettings {
  endpoint: string;
  key?: string;
  clientId?: string;
  /** The language the documents are declared in (the service's PHI model is English first). */
  language: string;
  /** Entities the service is less sure of than this are not redacted (0 to 1). */
  minConfidence: number;
}

/** Reads FREE_TEXT_CLOUD and the AZURE_LANGUAGE_* settings; undefined when the option is off. Throws CONFIG_INVALID naming every bad one. */
export function loadFreeTextCloudSettings(env: Env = process.env): FreeTextCloudSettings | undefined {
  const c = new Collector(env);
  const option = c.str('FREE_TEXT_CLOUD', 'off').toLowerCase();
  if (option === 'off' || option === '') return undefined;
  if (option !== 'azure-language') {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'invalid configuration: FREE_TEXT_CLOUD must be "off" or "azure-language"');
  }
  const endpointText = c.optional('AZURE_LANGUAGE_ENDPOINT');
  // The texts sent are PHI: only loopback (a local stand-in) may be reached in clear text.
  const endpoint = endpointText ? c.secureUrl('AZURE_LANGUAGE_ENDPOINT', endpointText) : '';
  if (!endpointText) c.problems.push('AZURE_LANGUAGE_ENDPOINT is required when FREE_TEXT_CLOUD is azure-language');
  const language = c.str('AZURE_LANGUAGE_DOCUMENT_LANGUAGE', 'en');
  if (!/^[a-z]{2,3}(-[A-Za-z]{2,4})?$/.test(language)) c.problems.push('AZURE_LANGUAGE_DOCUMENT_LANGUAGE must be a language code such as en or zh-hans');
  const confidenceText = c.str('AZURE_LANGUAGE_MIN_CONFIDENCE', '0.6');
  const minConfidence = Number(confidenceText);
  if (!/^(0(\.\d+)?|1(\.0+)?)$/.test(confidenceText)) c.problems.push('AZURE_LANGUAGE_MIN_CONFIDENCE must be a number from 0 to 1');
  if (c.problems.length > 0) {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, `invalid configuration: ${c.problems.join('; ')}`);
  }
  return { endpoint, key: c.optional('AZURE_LANGUAGE_KEY'), clientId: c.optional('AZURE_LANGUAGE_CLIENT_ID'), language, minConfidence };
}
