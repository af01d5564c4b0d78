/**
 * The access audit for operators: GET /api/audit?caller=&from=&to=&study=&limit=, newest first.
 * Needs the app role Operations.Read; reading the audit is itself recorded.
 */
import { app, HttpRequest, HttpResponseInit } from '@azure/functions';

import { readAccessAudit } from '../shared/audit/auditView';
import { requireRole } from '../shared/auth/guard';
import { Roles } from '../shared/auth/principal';
import { runtime } from '../shared/runtime';

async function read(request: HttpRequest): Promise<HttpResponseInit> {
  return readAccessAudit((await runtime()).accessAudit, request.query);
}

export const audit = requireRole(runtime, { route: 'audit', role: Roles.OperationsRead, describe: (request) => ({ queryKeys: [...new Set(request.query.keys())] }) }, read);

app.http('audit', { methods: ['GET'], authLevel: 'anonymous', route: 'audit', handler: audit });
