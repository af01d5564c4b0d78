/**
 * QIDO-RS (PS3.18 10.6) over the de-identified research catalog.
 *
 * authLevel is anonymous because in Azure these routes sit behind API Management / Easy Auth,
 * which authenticates research users before the request reaches the function.
 */
import { app } from '@azure/functions';

import { createQidoHandler } from '../shared/catalog/qido';
import { runtime } from '../shared/runtime';

const reader = async () => (await runtime()).researchCatalogReader;

app.http('qidoStudies', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/studies', handler: createQidoHandler(reader, 'study') });
app.http('qidoStudySeries', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/studies/{study}/series', handler: createQidoHandler(reader, 'series') });
app.http('qidoSeries', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/series', handler: createQidoHandler(reader, 'series') });
app.http('qidoStudySeriesInstances', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'dicomweb/studies/{study}/series/{series}/instances',
  handler: createQidoHandler(reader, 'instance'),
});
app.http('qidoStudyInstances', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/studies/{study}/instances', handler: createQidoHandler(reader, 'instance') });
app.http('qidoInstances', { methods: ['GET'], authLevel: 'anonymous', route: 'dicomweb/instances', handler: createQidoHandler(reader, 'instance') });
