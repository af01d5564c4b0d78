/**
 * The operations view of one source file: status, error, research UIDs, and the other source
 * files that carry the same instance. Identified data: a bearer token with the app role
 * Operations.Read (shared/auth); each answer is recorded in the access audit.
 */
import { app, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import { ingestionAccessTarget } from '../shared/audit/targets';
import { requireRole } from '../shared/auth/guard';
import { Roles } from '../shared/auth/principal';
import { describeIngestion } from '../shared/ingest/operationsView';
import { runtime } from '../shared/runtime';

async function describe(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const result = await describeIngestion(await runtime(), request.query.get('source'));
  if (result.status !== 200) context.info(`ingestions: ${result.status}`);
  return result;
}

export const ingestions = requireRole(runtime, { route: 'ingestions', role: Roles.OperationsRead, describe: ingestionAccessTarget }, describe);

app.http('ingestions', { methods: ['GET'], authLevel: 'anonymous', route: 'ingestions', handler: ingestions });
