/**
 * The backfill as a function (docs/operations.md "Backfill in Azure"; shared/backfill/job.ts):
 *
 * - `POST /api/backfill` (app role Operations.Manage) starts a job over a landing container or
 *   a directory of the ANQ export, at a set rate: 202 with its status; 409 while one is running.
 * - `GET /api/backfill` (Operations.Read or Operations.Manage): the job's status, counts only.
 * - `backfillSlice`, a timer (BACKFILL_SCHEDULE, every minute by default): one slice of the
 *   job per tick, BACKFILL_MAX_RUN_MS long, resumed from the checkpoint in the job's blob; a
 *   tick that loses the claim on that blob (If-Match) does nothing. Timer runs of one function
 *   never overlap on Azure either; the claim covers a run that outlived its tick elsewhere.
 */
import { randomUUID } from 'node:crypto';

import { app, type HttpRequest, type HttpResponseInit, type InvocationContext, type Timer } from '@azure/functions';

import { requireRole } from '../shared/auth/guard';
import { type Principal, Roles } from '../shared/auth/principal';
import { jobStatus, parseBackfillRequest, runBackfillSlice, startBackfillJob } from '../shared/backfill/job';
import { backfillJobStore, backfillSliceDeps } from '../shared/backfill/jobRuntime';
import { ErrorCodes, httpErrorBody, httpStatusFor, isPipelineError, PipelineError } from '../shared/errors';
import { runtime } from '../shared/runtime';

function failure(route: string, e: unknown, context: InvocationContext): HttpResponseInit {
  const status = httpStatusFor(e);
  if (status >= 500) context.error(`${route}: ${status} (${isPipelineError(e) ? e.code : 'unexpected error'})`);
  else context.warn(`${route}: ${status} (${isPipelineError(e) ? e.code : ''})`);
  return { status, jsonBody: httpErrorBody(e) };
}

async function start(request: HttpRequest, context: InvocationContext, principal: Principal): Promise<HttpResponseInit> {
  try {
    let body: unknown;
    try {
      body = JSON.parse(await request.text()) as unknown;
    } catch {
      throw new PipelineError(ErrorCodes.REQUEST_INVALID, 'body: not JSON');
    }
    const { source, ratePerSecond } = parseBackfillRequest(body, (await runtime()).settings.sourceContainers);
    const job = await startBackfillJob(backfillJobStore(), { id: randomUUID(), source, ratePerSecond, requestedBy: principal.callerId });
    context.info(`startBackfill: job ${job.id} (${source.kind}) at ${ratePerSecond}/s`);
    return { status: 202, headers: { location: '/api/backfill' }, jsonBody: jobStatus(job) };
  } catch (e) {
    return failure('startBackfill', e, context);
  }
}

async function status(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  try {
    const r = await backfillJobStore().read();
    if (!r) throw new PipelineError(ErrorCodes.NOT_FOUND, 'no backfill job has been started');
    return { status: 200, jsonBody: jobStatus(r.document) };
  } catch (e) {
    return failure('getBackfill', e, context);
  }
}

export const startBackfill = requireRole(runtime, { route: 'startBackfill', role: Roles.OperationsManage }, start);
export const getBackfill = requireRole(runtime, { route: 'getBackfill', role: [Roles.OperationsRead, Roles.OperationsManage] }, status);

export async function backfillSlice(_timer: Timer, context: InvocationContext): Promise<void> {
  // Without an active job, a tick reads one blob and nothing else (the runtime is not built for it).
  const current = await backfillJobStore().read();
  if (!current || current.document.state === 'done') return;
  const deps = backfillSliceDeps(await runtime());
  const r = await runBackfillSlice(deps, { owner: context.invocationId, maxRunMs: deps.maxRunMs });
  if (!r.ran) {
    if (r.reason !== 'no job' && r.reason !== 'done') context.info(`backfill slice: not run (${r.reason})`);
    return;
  }
  context.info(`backfill slice: ${r.counts.emitted} emitted, ${r.counts.skipped} skipped, ${r.counts.listed} listed so far${r.done ? ', done' : ', to be continued'}${r.error ? ` (stopped: ${r.error})` : ''}`);
}

app.http('startBackfill', { methods: ['POST'], authLevel: 'anonymous', route: 'backfill', handler: startBackfill });
app.http('getBackfill', { methods: ['GET'], authLevel: 'anonymous', route: 'backfill', handler: getBackfill });
// The schedule is read when the app loads (NCRONTAB, seconds first); every minute by default.
app.timer('backfillSlice', { schedule: process.env.BACKFILL_SCHEDULE || '0 */1 * * * *', handler: backfillSlice });
