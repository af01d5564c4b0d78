/**
 * Liveness and readiness: 200 once every dependency answers, 503 naming the one that does not.
 * With the ANQ source on, its S3 endpoint and REST API are dependencies too (shared/anq/health.ts).
 */
import { app, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import { anqHealth } from '../shared/anq/health';
import { runtime } from '../shared/runtime';

export async function health(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  try {
    const [core, anq] = await Promise.all([runtime().then((r) => r.health()), anqHealth()]);
    const checks: Record<string, string> = { ...core, ...anq };
    const ok = Object.values(checks).every((c) => c === 'ok');
    return { status: ok ? 200 : 503, jsonBody: { status: ok ? 'ok' : 'unavailable', checks } };
  } catch (e) {
    context.warn(`health: runtime unavailable (${(e as { code?: string }).code ?? 'error'})`);
    return { status: 503, jsonBody: { status: 'unavailable' } };
  }
}

app.http('health', { methods: ['GET'], authLevel: 'anonymous', route: 'health', handler: health });
