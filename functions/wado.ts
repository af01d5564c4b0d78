/**
 * WADO-RS (PS3.18 10.4) over the research copies: instances, metadata, frames and bulk data
 * (shared/retrieve/wado.ts). Like QIDO-RS, each route requires the app role Research.Read and
 * records each answer in the access audit: the research UIDs of the instances it carried. The
 * record is written in advance, once the instances are found, alongside the first read of
 * their copies (recordInAdvance): the answer waits for both, not for one after the other.
 *
 * HTTP streaming is on for the app: without it the worker reads a response body whole before
 * handing it to the host, and a 2 GB instance would be held in memory. With it, the library
 * writes the body without flow control, which functions/httpBackpressure.ts puts back.
 */
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';

import type { AccessTarget } from '../shared/audit/accessAudit';
import { uidsInDicomwebRequest } from '../shared/audit/targets';
import { type HttpHandler, recordInAdvance, requireRole } from '../shared/auth/guard';
import { Roles } from '../shared/auth/principal';
import { ErrorCodes, httpErrorBody, httpStatusFor, isPipelineError } from '../shared/errors';
import type { ResearchInstance } from '../shared/retrieve/researchInstances';
import { retrieve, type WadoResource } from '../shared/retrieve/wado';
import { runtime } from '../shared/runtime';
import { paced } from './httpBackpressure';

app.setup({ enableHttpStream: true });

/** Seconds a client should wait before retrying when storage or the catalog is unavailable. */
const RETRY_AFTER_SECONDS = 5;

/** The instances each answer carried, for the audit (a streamed body cannot be read back). */
const carried = new WeakMap<HttpResponseInit, ResearchInstance[]>();

/** The DICOMweb root a request came through: its URL up to `/studies/`. */
function rootOf(request: HttpRequest): string {
  const url = new URL(request.url);
  const path = url.pathname;
  return `${url.origin}${path.slice(0, path.indexOf('/studies/'))}`;
}

function wadoHandler(resource: WadoResource) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    try {
      const deps = (await runtime()).retrieve;
      const { study, series, instance, frames, path } = request.params;
      const advance = recordInAdvance(request);
      const answer = await retrieve(deps, {
        resource,
        scope: { study: study ?? '', ...(series !== undefined ? { series } : {}), ...(instance !== undefined ? { instance } : {}) },
        ...(frames !== undefined ? { frames } : {}),
        ...(path !== undefined ? { path } : {}),
        accept: request.headers.get('accept'),
        range: request.headers.get('range'),
        root: rootOf(request),
        // The access audit is written while the first bytes are read, not after (shared/auth/guard.ts).
        ...(advance ? { disclosing: (status: number, returned: ResearchInstance[]) => advance(status, accessTargetOf(request, returned)) } : {}),
      });
      // A web stream of the answer's own chunks: given an async iterable, the Response the library
      // builds would copy every chunk into a byte stream of its own. Paced by the response, which
      // the library does not do (functions/httpBackpressure.ts).
      const body = typeof answer.body === 'string' ? answer.body : ReadableStream.from(paced(answer.body, context.invocationId));
      const response: HttpResponseInit = { status: answer.status, headers: answer.headers, body };
      carried.set(response, answer.returned);
      return response;
    } catch (e) {
      const status = httpStatusFor(e);
      // Neither the UIDs nor the copy's content are logged: only the failure class.
      if (status >= 500) context.error(`wado ${resource}: ${status}`, isPipelineError(e) ? e.code : 'unexpected error');
      else context.warn(`wado ${resource}: ${status} ${isPipelineError(e) ? e.code : ''}`);
      const headers: Record<string, string> = {};
      if (status === 503) headers['retry-after'] = String(RETRY_AFTER_SECONDS);
      if (isPipelineError(e, ErrorCodes.RANGE_NOT_SATISFIABLE)) headers['content-range'] = 'bytes */*';
      return { status, headers, jsonBody: httpErrorBody(e) };
    }
  };
}

/** The research UIDs of the instances an answer carries (undefined: none) and the UIDs the request names. */
function accessTargetOf(request: HttpRequest, instances: ResearchInstance[] | undefined): AccessTarget {
  return {
    returned: instances
      ? {
          studies: instances.map((i) => i.studyInstanceUid),
          series: instances.map((i) => i.seriesInstanceUid),
          instances: instances.map((i) => i.sopInstanceUid),
        }
      : undefined,
    requested: uidsInDicomwebRequest(request),
  };
}

/** WADO-RS: the research UIDs of the instances answered and the UIDs asked for. Throws when a success carries no record of them. */
export function wadoAccessTarget(request: HttpRequest, response: HttpResponseInit): AccessTarget {
  const status = response.status ?? 200;
  const instances = carried.get(response);
  if (status < 300 && !instances) throw new Error('a WADO-RS answer without the record of what it carries');
  return accessTargetOf(request, instances);
}

function wado(name: string, resource: WadoResource): HttpHandler {
  return requireRole(runtime, { route: name, role: Roles.ResearchRead, describe: wadoAccessTarget }, wadoHandler(resource));
}

const INSTANCE = 'dicomweb/studies/{study}/series/{series}/instances/{instance}';

const ROUTES: [name: string, resource: WadoResource, route: string][] = [
  ['wadoStudy', 'instances', 'dicomweb/studies/{study}'],
  ['wadoSeries', 'instances', 'dicomweb/studies/{study}/series/{series}'],
  ['wadoInstance', 'instances', INSTANCE],
  ['wadoStudyMetadata', 'metadata', 'dicomweb/studies/{study}/metadata'],
  ['wadoSeriesMetadata', 'metadata', 'dicomweb/studies/{study}/series/{series}/metadata'],
  ['wadoInstanceMetadata', 'metadata', `${INSTANCE}/metadata`],
  ['wadoFrames', 'frames', `${INSTANCE}/frames/{frames}`],
  ['wadoBulkData', 'bulkdata', `${INSTANCE}/bulkdata/{*path}`],
];

export const wadoHandlers: Record<string, HttpHandler> = {};
for (const [name, resource, route] of ROUTES) {
  const handler = wado(name, resource);
  wadoHandlers[name] = handler;
  app.http(name, { methods: ['GET'], authLevel: 'anonymous', route, handler });
}
