/**
 * The gate every protected HTTP function passes through: authenticate the caller, check the
 * route's app role, run the handler, record the access in the audit.
 *
 * - no or an invalid token: 401 with `WWW-Authenticate: Bearer` (RFC 6750), nothing recorded
 *   (an unauthenticated caller must not be able to fill the audit store);
 * - a caller without the role: 403, recorded;
 * - the audit cannot be written: 503 and the answer is withheld. Fail closed: a disclosure that
 *   cannot be accounted for is not made (HIPAA §164.312(b) audit controls). The caller may retry.
 *
 * A handler that knows what it will disclose before its answer is ready may record it in
 * advance (recordInAdvance), so that the audit write overlaps its work; the same rules hold.
 *
 * Logs name the route, the status and the failed check, never a token, a claim or a query value.
 */
import { randomUUID } from 'node:crypto';

import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import { type AccessAuditStore, accessRecord, type AccessTarget, sameTarget } from '../audit/accessAudit';
import { ErrorCodes, httpErrorBody, httpStatusFor, isPipelineError, PipelineError } from '../errors';
import type { Telemetry } from '../telemetry/telemetry';
import type { Authenticator } from './authenticator';
import { EASY_AUTH_PRINCIPAL_HEADER } from './easyAuth';
import { hasRole, type Principal, type Role } from './principal';

export interface GuardDeps {
  auth: Authenticator;
  accessAudit: AccessAuditStore;
  /** Receives `ACCESS_AUDIT_UNAVAILABLE` failures, so that an operator is alerted to withheld answers. */
  telemetry?: Pick<Telemetry, 'trackFailure'>;
}

export type HttpHandler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

/** A handler behind the guard that answers differently by the caller's roles (statistics). */
export type PrincipalHandler = (request: HttpRequest, context: InvocationContext, principal: Principal) => Promise<HttpResponseInit>;

export interface GuardOptions {
  /** The function's name, recorded in the audit. */
  route: string;
  /** The role the route requires; with a list, any one of them (the handler then sees the principal). */
  role: Role | readonly Role[];
  /** What the request and its answer touched (research UIDs, query keys), for the audit. */
  describe?: (request: HttpRequest, response: HttpResponseInit) => AccessTarget;
}

/** The telemetry failure code of an access that could not be recorded (alert on it). */
export const AUDIT_FAILURE = 'ACCESS_AUDIT_UNAVAILABLE';

/** Seconds a client should wait before retrying when the audit could not be written. */
const AUDIT_RETRY_AFTER_SECONDS = 5;

function challenge(request: HttpRequest, e: PipelineError): string {
  // RFC 6750 3.1: a request without credentials gets the bare challenge, an invalid token an error code.
  if (!request.headers.has('authorization') && !request.headers.has(EASY_AUTH_PRINCIPAL_HEADER)) return 'Bearer realm="api"';
  return `Bearer realm="api", error="invalid_token", error_description="${e.message.replace(/["\\]/g, "'")}"`;
}

function codeOf(e: unknown): string {
  return isPipelineError(e) ? e.code : 'unexpected error';
}

/** Records the access of a request in advance: its status and target. */
export type AdvanceRecord = (status: number, target: AccessTarget) => Promise<void>;

const advanceRecorders = new WeakMap<HttpRequest, AdvanceRecord>();

/**
 * For a handler that knows what it will disclose before its answer is ready (WADO-RS: the
 * instances, once found, while their first bytes are read): records the access now, so that
 * the audit write runs alongside that work instead of after it. The handler must not give its
 * answer before the returned promise resolves, and must fail when it rejects; the gate then
 * withholds the answer (503), as when the audit cannot be written after the handler. When the
 * answer comes out otherwise than recorded (another status: the read failed after all), the
 * gate records the final answer too, naming the first record in `supersedes`. Undefined for a
 * request that did not pass requireRole's checks.
 */
export function recordInAdvance(request: HttpRequest): AdvanceRecord | undefined {
  return advanceRecorders.get(request);
}

/** Ends a streamed body that will not be sent (its reads are released). */
async function discardBody(response: HttpResponseInit): Promise<void> {
  const body = response.body as unknown;
  if (body && typeof body === 'object' && Symbol.asyncIterator in body) await (body as AsyncIterable<unknown>)[Symbol.asyncIterator]().return?.();
}

/**
 * Wraps a handler with authentication, the role check and the access audit. `getDeps` is called
 * per request (the runtime is built once, on first use).
 */
export function requireRole(getDeps: () => Promise<GuardDeps>, options: GuardOptions, handler: HttpHandler | PrincipalHandler): HttpHandler {
  const { route } = options;
  const accepted: readonly Role[] = typeof options.role === 'string' ? [options.role] : options.role;
  return async (request, context) => {
    let deps: GuardDeps;
    try {
      deps = await getDeps();
    } catch (e) {
      context.error(`${route}: runtime unavailable (${codeOf(e)})`);
      return { status: httpStatusFor(e), jsonBody: httpErrorBody(e) };
    }

    let principal: Principal;
    try {
      principal = await deps.auth.authenticate(request);
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.UNAUTHENTICATED)) {
        context.warn(`${route}: 401 (${e.message})`);
        return { status: 401, headers: { 'www-authenticate': challenge(request, e) }, jsonBody: httpErrorBody(e) };
      }
      context.error(`${route}: authentication unavailable (${codeOf(e)})`);
      const status = httpStatusFor(e);
      return { status: status === 500 ? 503 : status, jsonBody: httpErrorBody(status === 500 ? new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'authentication is not available') : e) };
    }

    const role = accepted.find((r) => hasRole(principal, r)) ?? (accepted[0] as Role);
    const record = async (status: number, target?: AccessTarget, id = randomUUID(), supersedes?: string) =>
      deps.accessAudit.append(
        accessRecord({ id, time: new Date(), principal, route, method: request.method, role, status, invocationId: context.invocationId, target, supersedes }),
      );

    if (!accepted.some((r) => hasRole(principal, r))) {
      context.warn(`${route}: 403 (caller lacks ${accepted.join(' or ')})`);
      // Nothing is disclosed on a 403, so a failed audit write does not change the answer; it is logged as an error.
      await record(403).catch((e: unknown) => {
        context.error(`${route}: access audit not written for a 403 (${codeOf(e)})`);
        deps.telemetry?.trackFailure(AUDIT_FAILURE, route);
      });
      const denied = new PipelineError(ErrorCodes.FORBIDDEN, `this route needs the app role ${accepted.join(' or ')}`);
      return { status: 403, headers: { 'www-authenticate': 'Bearer realm="api", error="insufficient_scope"' }, jsonBody: httpErrorBody(denied) };
    }

    // The latest record made in advance, if the handler made one.
    let advance: { id: string; status: number; target: AccessTarget; written: Promise<{ ok: true } | { ok: false; error: unknown }> } | undefined;
    advanceRecorders.set(request, (status, target) => {
      if (advance && advance.status === status && sameTarget(advance.target, target)) return advance.written.then((w) => (w.ok ? undefined : Promise.reject(w.error)));
      const id = randomUUID();
      const written = record(status, target, id, advance?.id).then(
        () => ({ ok: true as const }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      advance = { id, status, target, written };
      return written.then((w) => (w.ok ? undefined : Promise.reject(w.error)));
    });

    let response: HttpResponseInit;
    try {
      response = await handler(request, context, principal);
    } catch (e) {
      context.error(`${route}: handler failed (${codeOf(e)})`);
      response = { status: httpStatusFor(e), jsonBody: httpErrorBody(e) };
    } finally {
      advanceRecorders.delete(request);
    }
    const status = response.status ?? 200;
    let target: AccessTarget | undefined;
    try {
      target = options.describe?.(request, response);
    } catch (e) {
      // The answer cannot be described, so it cannot be accounted for: withheld like an unwritable audit.
      context.error(`${route}: access audit could not describe the answer (${codeOf(e)})`);
      deps.telemetry?.trackFailure(AUDIT_FAILURE, route);
      await discardBody(response).catch(() => undefined);
      return auditUnavailable();
    }
    if (advance) {
      const early = await advance.written;
      if (!early.ok) {
        context.error(`${route}: access audit not written, answer withheld (${codeOf(early.error)})`);
        deps.telemetry?.trackFailure(AUDIT_FAILURE, route);
        await discardBody(response).catch(() => undefined);
        return auditUnavailable();
      }
      // Recorded as it came out: nothing more to write.
      if (advance.status === status && sameTarget(advance.target, target)) return response;
    }
    try {
      await record(status, target, randomUUID(), advance?.id);
    } catch (e) {
      context.error(`${route}: access audit not written, answer withheld (${codeOf(e)})`);
      deps.telemetry?.trackFailure(AUDIT_FAILURE, route);
      return auditUnavailable();
    }
    return response;
  };
}

function auditUnavailable(): HttpResponseInit {
  return {
    status: 503,
    headers: { 'retry-after': String(AUDIT_RETRY_AFTER_SECONDS) },
    jsonBody: httpErrorBody(new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'the access audit cannot be written, so the request was not answered; retry later')),
  };
}
