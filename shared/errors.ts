/**
 * Typed pipeline errors with stable string codes.
 *
 * Messages never carry PHI: no names, IDs, dates or UIDs of an identified source. Callers that
 * need to say which file failed log the event id, a content hash or a research UID instead.
 */

/** Every code the pipeline can record. Stable: operations dashboards and alerts key on these. */
export const ErrorCodes = {
  // The source file itself: a retry can never fix these.
  DICOM_NOT_DICOM: 'DICOM_NOT_DICOM',
  DICOM_TRUNCATED: 'DICOM_TRUNCATED',
  DICOM_ELEMENT_TOO_LARGE: 'DICOM_ELEMENT_TOO_LARGE',
  DICOM_HEADER_TOO_LARGE: 'DICOM_HEADER_TOO_LARGE',
  DICOM_MALFORMED: 'DICOM_MALFORMED',
  DICOM_MISSING_UID: 'DICOM_MISSING_UID',
  /** A Study, Series or SOP Instance UID (or SOP Class UID) that is not one valid UID (PS3.5 9.1). */
  DICOM_INVALID_UID: 'DICOM_INVALID_UID',
  DICOM_DICOMDIR: 'DICOM_DICOMDIR',
  /** Too many elements or sequence items in one header (MAX_HEADER_ELEMENTS, MAX_SEQUENCE_ITEMS). */
  DICOM_TOO_MANY_ELEMENTS: 'DICOM_TOO_MANY_ELEMENTS',
  /** The parsed header would take more memory than MAX_HEADER_MEMORY_BYTES. */
  DICOM_HEADER_MEMORY_LIMIT: 'DICOM_HEADER_MEMORY_LIMIT',
  /** A deflated data set inflates past MAX_INFLATED_BYTES or MAX_INFLATION_RATIO. */
  DICOM_INFLATION_LIMIT: 'DICOM_INFLATION_LIMIT',
  /** The declared transfer syntax contradicts the data set's encoding or the pixel data's encapsulation. */
  DICOM_TRANSFER_SYNTAX_MISMATCH: 'DICOM_TRANSFER_SYNTAX_MISMATCH',
  /** An encapsulated document (PDF, CDA, ...): its content cannot be cleaned, so it is held for review. */
  DEID_DOCUMENT_NOT_CLEANED: 'DEID_DOCUMENT_NOT_CLEANED',
  DEID_VERIFICATION_FAILED: 'DEID_VERIFICATION_FAILED',
  DEID_BURNED_IN_ANNOTATION: 'DEID_BURNED_IN_ANNOTATION',
  OCR_FAILED: 'OCR_FAILED',
  /** No place in the OCR queue (OCR_QUEUE_MAX full, or OCR_WAIT_MAX_MS waited): a retry later may find one. */
  OCR_BUSY: 'OCR_BUSY',
  // Where the file is, or what the event says.
  SOURCE_NOT_FOUND: 'SOURCE_NOT_FOUND',
  SOURCE_CHANGED: 'SOURCE_CHANGED',
  SOURCE_NOT_ALLOWED: 'SOURCE_NOT_ALLOWED',
  EVENT_INVALID: 'EVENT_INVALID',
  // Services: a retry may fix these.
  CATALOG_CONFLICT: 'CATALOG_CONFLICT',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  SERVICE_THROTTLED: 'SERVICE_THROTTLED',
  SERVICE_TIMEOUT: 'SERVICE_TIMEOUT',
  // Requests to the HTTP API.
  QUERY_INVALID: 'QUERY_INVALID',
  /** A query that would read more of the catalog, or for longer, than one request may (PS3.18: 413, narrow the query). */
  QUERY_TOO_BROAD: 'QUERY_TOO_BROAD',
  NOT_FOUND: 'NOT_FOUND',
  /** A retrieve whose Accept names no media type or transfer syntax the service can give (PS3.18 8.7.3: 406). */
  NOT_ACCEPTABLE: 'NOT_ACCEPTABLE',
  /** A Range that lies outside the value asked for (RFC 9110 15.5.17: 416). */
  RANGE_NOT_SATISFIABLE: 'RANGE_NOT_SATISFIABLE',
  /** No bearer token, or one that does not validate (expired, another audience or issuer, bad signature). */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** A valid caller without the app role the route needs. */
  FORBIDDEN: 'FORBIDDEN',
  /** A request body that is not what the route takes; the message names the bad field. */
  REQUEST_INVALID: 'REQUEST_INVALID',
  /** An action the resource's state does not allow (an export of a suspended or revoked agreement, a revoked agreement reactivated). */
  STATE_CONFLICT: 'STATE_CONFLICT',
  CONFIG_INVALID: 'CONFIG_INVALID',
  PROFILE_INVALID: 'PROFILE_INVALID',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Codes a retry can fix: the ingestion rethrows these so that Event Grid redelivers. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCodes.SERVICE_UNAVAILABLE,
  ErrorCodes.SERVICE_THROTTLED,
  ErrorCodes.SERVICE_TIMEOUT,
  ErrorCodes.CATALOG_CONFLICT,
  ErrorCodes.SOURCE_CHANGED,
  ErrorCodes.OCR_BUSY,
]);

/** The one table from error code to HTTP status. Anything not listed is a 500 that says nothing internal. */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  QUERY_INVALID: 400,
  REQUEST_INVALID: 400,
  STATE_CONFLICT: 409,
  QUERY_TOO_BROAD: 413,
  EVENT_INVALID: 400,
  SOURCE_NOT_ALLOWED: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  NOT_ACCEPTABLE: 406,
  RANGE_NOT_SATISFIABLE: 416,
  SOURCE_NOT_FOUND: 404,
  CATALOG_CONFLICT: 409,
  DICOM_ELEMENT_TOO_LARGE: 413,
  DICOM_HEADER_TOO_LARGE: 413,
  DICOM_TOO_MANY_ELEMENTS: 413,
  DICOM_HEADER_MEMORY_LIMIT: 413,
  DICOM_INFLATION_LIMIT: 413,
  SERVICE_THROTTLED: 503,
  SERVICE_UNAVAILABLE: 503,
  SERVICE_TIMEOUT: 503,
  OCR_BUSY: 503,
};

export interface PipelineErrorOptions {
  cause?: unknown;
}

export class PipelineError extends Error {
  override readonly name = 'PipelineError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: PipelineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }

  /** True when a retry of the same operation may succeed. */
  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }
}

export function isPipelineError(e: unknown, code?: ErrorCode): e is PipelineError {
  return e instanceof PipelineError && (code === undefined || e.code === code);
}

export function isTransient(e: unknown): boolean {
  return isPipelineError(e) && e.transient;
}

export function httpStatusFor(e: unknown): number {
  return isPipelineError(e) ? (HTTP_STATUS[e.code] ?? 500) : 500;
}

/** The body of an HTTP error response: the code and message of a PipelineError, nothing internal otherwise. */
export function httpErrorBody(e: unknown): { error: { code: string; message: string } } {
  if (isPipelineError(e) && httpStatusFor(e) !== 500) {
    return { error: { code: e.code, message: e.message } };
  }
  return { error: { code: ErrorCodes.INTERNAL, message: 'internal error' } };
}

/** Socket-level failures: the request may not have reached the service, and a retry may succeed. */
const NETWORK_ERRORS: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'ECONNABORTED',
  'EADDRNOTAVAIL', 'REQUEST_SEND_ERROR', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED', 'ERR_STREAM_PREMATURE_CLOSE',
]);
const TIMEOUT_ERRORS: ReadonlySet<string> = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function errnoOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  // fetch (undici) puts the socket error in `cause`.
  const cause = (e as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof cause === 'string' ? cause : '';
}

/**
 * Wraps a failure from an Azure SDK call (RestError or a network error) as a PipelineError,
 * classifying it by status code. Called once, at the adapter edge.
 *
 * Transient (a retry may fix it): 429, 408 and time-outs, 5xx, socket errors, and 401/403
 * (credentials or role assignments still propagating: the file is not at fault, so it is left
 * to Event Grid's retry and dead-lettering rather than recorded as failed). Permanent: any
 * other 4xx the service answered, and an error the SDK raised itself without reaching the
 * service (an id it refuses, an argument it rejects): no retry can change those.
 */
export function fromServiceError(e: unknown, what: string): PipelineError {
  if (e instanceof PipelineError) return e;
  const status = (e as { statusCode?: number; code?: number | string } | null)?.statusCode ??
    (typeof (e as { code?: unknown } | null)?.code === 'number' ? ((e as { code: number }).code) : undefined);
  const errno = errnoOf(e);
  const name = (e as Error | null)?.name;
  if (status === 429) return new PipelineError(ErrorCodes.SERVICE_THROTTLED, `${what}: throttled (429)`, { cause: e });
  if (status === 408 || TIMEOUT_ERRORS.has(errno) || name === 'AbortError' || name === 'TimeoutError') {
    return new PipelineError(ErrorCodes.SERVICE_TIMEOUT, `${what}: timed out`, { cause: e });
  }
  if (status === 404) return new PipelineError(ErrorCodes.NOT_FOUND, `${what}: not found (404)`, { cause: e });
  if (status === 409) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: conflict (409)`, { cause: e });
  if (status === 412) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: precondition failed (412)`, { cause: e });
  if (status !== undefined && status >= 400 && status < 500 && status !== 401 && status !== 403) {
    // A request the service rejects as malformed (400, 413, 431, ...) is our bug: no retry can fix it.
    return new PipelineError(ErrorCodes.INTERNAL, `${what}: request rejected (${status})`, { cause: e });
  }
  if (status === undefined && !NETWORK_ERRORS.has(errno)) {
    return new PipelineError(ErrorCodes.INTERNAL, `${what}: refused by the client library before it reached the service`, { cause: e });
  }
  return new PipelineError(
    ErrorCodes.SERVICE_UNAVAILABLE,
    `${what}: service error${status ? ` (${status})` : errno ? ` (${errno})` : ''}`,
    { cause: e },
  );
}
