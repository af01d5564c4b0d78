/**
 * Data-sharing agreements and their exports (CONTRACT.md "Sharing"), behind the app role
 * Sharing.Manage; and the queue-triggered worker that writes each partner copy.
 *
 * - `POST /api/agreements` (201), `GET /api/agreements/{id}`, `PATCH /api/agreements/{id}` (status);
 * - `POST /api/agreements/{id}/exports`: 202 with `Location: /api/exports/{exportId}`;
 * - `GET /api/exports/{exportId}`: counts done, failed and left, bytes, started and finished;
 * - `exportInstance`: one message of the export queue (EXPORT_QUEUE) per instance.
 */
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';

import { type HttpHandler, requireRole } from '../shared/auth/guard';
import { Roles } from '../shared/auth/principal';
import { ErrorCodes, httpErrorBody, httpStatusFor, isPipelineError, PipelineError } from '../shared/errors';
import { runtime } from '../shared/runtime';
import { EXPORT_QUEUE_CONNECTION, parseExportMessage } from '../shared/sharing/exportQueue';
import { changeAgreement, createAgreement, exportInstance as exportOne, getAgreement, getExport, startExport } from '../shared/sharing/sharing';

/** The Functions host's default maxDequeueCount (host.json extensions.queues): the last delivery records a failure instead of retrying. */
const MAX_DEQUEUE_COUNT = 5;
const RETRY_AFTER_SECONDS = 5;

async function bodyOf(request: HttpRequest): Promise<unknown> {
  const text = await request.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new PipelineError(ErrorCodes.REQUEST_INVALID, 'body: not JSON');
  }
}

/** The caller's pseudonymous id (the guard has authenticated the request already). */
async function callerOf(request: HttpRequest): Promise<string> {
  return (await (await runtime()).auth.authenticate(request)).callerId;
}

function handle(route: string, work: (request: HttpRequest) => Promise<HttpResponseInit>): HttpHandler {
  const handler = async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    try {
      return await work(request);
    } catch (e) {
      const status = httpStatusFor(e);
      if (status >= 500) context.error(`${route}: ${status}`, isPipelineError(e) ? e.code : 'unexpected error');
      else context.warn(`${route}: ${status} ${isPipelineError(e) ? e.code : ''}`);
      return { status, ...(status === 503 ? { headers: { 'retry-after': String(RETRY_AFTER_SECONDS) } } : {}), jsonBody: httpErrorBody(e) };
    }
  };
  return requireRole(runtime, { route, role: Roles.SharingManage }, handler);
}

export const createAgreementHandler = handle('createAgreement', async (request) => {
  const a = await createAgreement((await runtime()).sharing, await bodyOf(request), await callerOf(request));
  return { status: 201, headers: { location: `/api/agreements/${a.id}` }, jsonBody: a };
});

export const getAgreementHandler = handle('getAgreement', async (request) => ({
  jsonBody: await getAgreement((await runtime()).sharing, request.params.id ?? ''),
}));

export const patchAgreementHandler = handle('patchAgreement', async (request) => ({
  jsonBody: await changeAgreement((await runtime()).sharing, request.params.id ?? '', await bodyOf(request), await callerOf(request)),
}));

export const startExportHandler = handle('startExport', async (request) => {
  const status = await startExport((await runtime()).sharing, request.params.id ?? '', await callerOf(request));
  return { status: 202, headers: { location: `/api/exports/${status.exportId}` }, jsonBody: status };
});

export const getExportHandler = handle('getExport', async (request) => ({
  jsonBody: await getExport((await runtime()).sharing, request.params.exportId ?? ''),
}));

/** One instance of an export. Transient failures throw (the queue delivers the message again); the last delivery records the failure. */
export async function exportInstance(queueItem: unknown, context: InvocationContext): Promise<void> {
  const message = parseExportMessage(queueItem);
  const dequeueCount = Number(context.triggerMetadata?.dequeueCount ?? 1);
  const outcome = await exportOne((await runtime()).sharing, message, { dequeueCount, maxDequeueCount: MAX_DEQUEUE_COUNT });
  // Research UIDs of the export's own partition only; never a source identifier.
  context.log(`export ${message.exportId}: ${outcome}`);
}

app.http('createAgreement', { methods: ['POST'], authLevel: 'anonymous', route: 'agreements', handler: createAgreementHandler });
app.http('getAgreement', { methods: ['GET'], authLevel: 'anonymous', route: 'agreements/{id}', handler: getAgreementHandler });
app.http('patchAgreement', { methods: ['PATCH'], authLevel: 'anonymous', route: 'agreements/{id}', handler: patchAgreementHandler });
app.http('startExport', { methods: ['POST'], authLevel: 'anonymous', route: 'agreements/{id}/exports', handler: startExportHandler });
app.http('getExport', { methods: ['GET'], authLevel: 'anonymous', route: 'exports/{exportId}', handler: getExportHandler });
app.storageQueue('exportInstance', {
  // Read when the worker indexes the functions, from the app settings, as the bindings' %NAME% would be.
  queueName: process.env.EXPORT_QUEUE?.trim() || 'partner-exports',
  connection: EXPORT_QUEUE_CONNECTION,
  handler: exportInstance,
});
