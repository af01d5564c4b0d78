/**
 * Counts of the research catalog (GET /api/statistics), small cells withheld, for Research.Read;
 * the ingestion outcomes of the restricted index on top for Operations.Read.
 */
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';

import { statisticsAccessTarget } from '../shared/audit/targets';
import { requireRole } from '../shared/auth/guard';
import { hasRole, type Principal, Roles } from '../shared/auth/principal';
import { runtime } from '../shared/runtime';
import { answerStatistics } from '../shared/statistics/catalogStatistics';

async function handle(request: HttpRequest, context: InvocationContext, principal: Principal): Promise<HttpResponseInit> {
  const rt = await runtime();
  return answerStatistics(request, context, {
    reader: rt.researchCatalogReader,
    outcomes: rt.ingestionOutcomes,
    limits: rt.settings.qidoLimits,
    minCellSize: rt.settings.statisticsMinCell,
  }, { research: hasRole(principal, Roles.ResearchRead), operations: hasRole(principal, Roles.OperationsRead) });
}

export const statistics = requireRole(runtime, { route: 'statistics', role: [Roles.ResearchRead, Roles.OperationsRead], describe: statisticsAccessTarget }, handle);

app.http('statistics', { methods: ['GET'], authLevel: 'anonymous', route: 'statistics', handler: statistics });
