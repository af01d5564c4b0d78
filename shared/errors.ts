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
  DICOM_NOT_PART10: 'DICOM_NOT_PART10',
  DICOM_TRUNCATED: 'DICOM_TRUNCATED',
  DICOM_ELEMENT_TOO_LARGE: 'DICOM_ELEMENT_TOO_LARGE',
  DICOM_HEADER_TOO_LARGE: 'DICOM_HEADER_TOO_LARGE',
  DICOM_MALFORMED: 'DICOM_MALFORMED',
  DICOM_MISSING_UID: 'DICOM_MISSING_UID',
  DICOM_UNSUPPORTED_TRANSFER_SYNTAX: 'DICOM_UNSUPPORTED_TRANSFER_SYNTAX',
  DICOM_DICOMDIR: 'DICOM_DICOMDIR',
  DEID_VERIFICATION_FAILED: 'DEID_VERIFICATION_FAILED',
  DEID_BURNED_IN_ANNOTATION: 'DEID_BURNED_IN_ANNOTATION',
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
  NOT_FOUND: 'NOT_FOUND',
  /** No bearer token, or one that does not validate (expired, another audience or issuer, bad signature). */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** A valid caller without the app role the route needs. */
  FORBIDDEN: 'FORBIDDEN',
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
]);

/** The one table from error code to HTTP status. Anything not listed is a 500 that says nothing internal. */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  QUERY_INVALID: 400,
  EVENT_INVALID: 400,
  SOURCE_NOT_ALLOWED: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  SOURCE_NOT_FOUND: 404,
  CATALOG_CONFLICT: 409,
  DICOM_ELEMENT_TOO_LARGE: 413,
  DICOM_HEADER_TOO_LARGE: 413,
  SERVICE_THROTTLED: 503,
  SERVICE_UNAVAILABLE: 503,
  SERVICE_TIMEOUT: 503,
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

/**
 * Wraps a failure from an Azure SDK call (RestError or a network error) as a PipelineError,
 * classifying it by status code. Called once, at the adapter edge.
 */
export function fromServiceError(e: unknown, what: string): PipelineError {
  if (e instanceof PipelineError) return e;
  const status = (e as { statusCode?: number; code?: number | string } | null)?.statusCode ??
    (typeof (e as { code?: unknown } | null)?.code === 'number' ? ((e as { code: number }).code) : undefined);
  const errno = typeof (e as { code?: unknown } | null)?.code === 'string' ? (e as { code: string }).code : '';
  if (status === 429) return new PipelineError(ErrorCodes.SERVICE_THROTTLED, `${what}: throttled (429)`, { cause: e });
  if (status === 408 || errno === 'ETIMEDOUT' || errno === 'ESOCKETTIMEDOUT' || (e as Error | null)?.name === 'AbortError') {
    return new PipelineError(ErrorCodes.SERVICE_TIMEOUT, `${what}: timed out`, { cause: e });
  }
  if (status === 404) return new PipelineError(ErrorCodes.NOT_FOUND, `${what}: not found (404)`, { cause: e });
  // A request the service rejects as malformed is our bug: no retry can fix it.
  if (status === 400) return new PipelineError(ErrorCodes.INTERNAL, `${what}: request rejected (400)`, { cause: e });
  if (status === 409) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: conflict (409)`, { cause: e });
  if (status === 412) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what}: precondition failed (412)`, { cause: e });
  return new PipelineError(
    ErrorCodes.SERVICE_UNAVAILABLE,
    `${what}: service error${status ? ` (${status})` : errno ? ` (${errno})` : ''}`,
    { cause: e },
  );
}
