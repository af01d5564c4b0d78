/**
 * QIDO-RS (PS3.18 10.6) over the de-identified research catalog.
 *
 * authLevel is anonymous for the Functions host: the function itself requires a bearer token
 * with the app role Research.Read (shared/auth), and records each answer in the access audit.
 */
import { app } from '@azure/functions';

import { qidoAccessTarget } from '../shared/audit/targets';
import { type HttpHandler, requireRole } from '../shared/auth/guard';
import { Roles } from '../shared/auth/principal';
import { createQidoHandler, type QidoLevel } from '../shared/catalog/qido';
import { runtime } from '../shared/runtime';

const reader = async () => (await runtime()).researchCatalogReader;
const limits = async () => (await runtime()).settings.qidoLimits;

function qido(name: string, level: QidoLevel): HttpHandler {
  return requireRole(runtime, { route: name, role: Roles.ResearchRead, describe: qidoAccessTarget }, createQidoHandler(reader, level, { limits }));
}

export const qidoStudies = qido('qidoStudies', 'study');
export const qidoStudySeries = qido('qidoStudySeries', 'series');
export const qidoSeries = qido('qidoSeries', 'series');
export const qidoStudySeriesInstances = qido('qidoStudySeriesInstances', 'instance');
export const qidoStudyInstances = qido('qidoStudyInstances', 'instance');
export const qidoInstances = qido('qidoInstances', 'instance');

app.http('qidoStudies', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/studies', handler: qidoStudies });
app.http('qidoStudySeries', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/studies/{study}/series', handler: qidoStudySeries });
app.http('qidoSeries', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/series', handler: qidoSeries });
app.http('qidoStudySeriesInstances', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'dicomweb/studies/{study}/series/{series}/instances',
  handler: qidoStudySeriesInstances,
});
app.http('qidoStudyInstances', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/studies/{study}/instances', handler: qidoStudyInstances });
app.http('qidoInstances', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/instances', handler: qidoInstances });
