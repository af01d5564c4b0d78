/**
 * The operations view of one source file: status, error, research UIDs, and the other source
 * files that carry the same instance. Identified data: admin key in Azure, loopback only locally.
 */
import { app, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import { describeIngestion } from '../shared/ingest/operationsView';
import { runtime } from '../shared/runtime';

export async function ingestions(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const source = request.query.get('source');
  const rt = await runtime();
  const result = await describeIngestion(rt, source);
  if (result.status !== 200) context.info(`ingestions: ${result.status}`);
  return result;
}

app.http('ingestions', { methods: ['GET'], authLevel: 'admin', route: 'ingestions', handler: ingestions });
