/**
 * Where the time of one WADO-RS frame request goes (issue 14's latency target): a small
 * multi-frame file is ingested through the stack, then each step a frame request takes is timed
 * on its own, in this process, against the same services, `repeats` times in turn (round robin):
 *
 * - the bearer token's verification, the catalog lookup of the instance (uncached), the frame
 *   index, a point read of the instance document, the access-audit write, and a ranged read of
 *   the frame (to its headers, then drained);
 * - the retrieve in process without the gate (no token, no audit), then the whole guarded
 *   function (authentication, lookup, first read, audit) called in process as the host calls
 *   it, its body drained;
 * - the same request through the function host (a process of its own, as in the bench), and a
 *   plain ranged read of the same bytes with the storage SDK: the bench's two figures, each also
 *   timed to its response headers.
 *
 * The differences place the fixed cost: the host hop is the last two minus the in-process call,
 * and the audit's share is the guarded function minus the retrieve without it.
 *
 * Usage: npm run build && node dist/bench/wadoProfile.js [repeats, default 40] [frames, default 64]
 *
 * WADO_HOST_NODE_ARGS passes options to the host's Node (e.g. `--trace-gc`, or a V8 heap setting
 * to compare); WADO_PROFILE_CPU=<file> writes the host's CPU profile over the last requests.
 *
 * By default the host and the plain reads reach Azurite itself, as they reach storage in Azure and
 * as the WADO-RS bench wires them (bench/wadoScenario.ts). WADO_DIRECT=0 sends both through the
 * local Event Grid stand-in's proxy, as `npm start` does.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

import { CosmosClient } from '@azure/cosmos';
import { HttpRequest, type HttpResponseInit, InvocationContext } from '@azure/functions';
import { BlobSASPermissions } from '@azure/storage-blob';

import { startHostProcess } from '../local/hostProcess';
import type { IngestionDocument } from '../shared/catalog/documents';
import { startBenchServices } from './benchServices';
import { FRAME_BYTES, writeMultiFrame } from './generate';
import { formatTable, percentile, round } from './stats';

async function drain(body: unknown): Promise<number> {
  let n = 0;
  if (!body || typeof body === 'string') return typeof body === 'string' ? body.length : 0;
  for await (const chunk of body as AsyncIterable<Uint8Array>) n += chunk.length;
  return n;
}

/** Times `step`: to the point it marks, or to its end. */
async function timed(repeats: number, step: (mark: () => void) => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    let marked: number | undefined;
    await step(() => (marked = performance.now()));
    ms.push((marked ?? performance.now()) - t);
  }
  return ms;
}

async function main(): Promise<void> {
  const repeats = Number(process.argv[2] ?? 40);
  const frames = Number(process.argv[3] ?? 64);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wado-profile-'));
  const stops: (() => Promise<void>)[] = [];
  try {
    const file = path.join(workDir, 'mf.dcm');
    writeMultiFrame(file, { seed: 7, frames });
    const { events, cosmosServer, env, settings, blobService: proxied, directBlobService } = await startBenchServices({ workDir, deidKey: 'wado-profile-deid-key-not-for-production-0123456789', direct: process.env.WADO_DIRECT !== '0' }, stops);
    const blobService = process.env.WADO_DIRECT !== '0' ? directBlobService : proxied;
    const nodeArgs = process.env.WADO_HOST_NODE_ARGS?.split(' ').filter(Boolean);
    const host = await startHostProcess({ projectRoot: path.resolve(__dirname, '..', '..'), env, logFile: path.join(workDir, 'host.log'), nodeArgs });
    stops.push(() => host.stop());
    events.setWebhookBaseUrl(host.url);

    const cosmosKey = /AccountKey=([^;]+)/.exec(cosmosServer.connectionString)?.[1] ?? '';
    const cosmos = new CosmosClient({ endpoint: cosmosServer.endpoint, key: cosmosKey, connectionPolicy: { enableEndpointDiscovery: false } });
    const index = cosmos.database(settings.cosmosDatabase).container(settings.indexContainer);
    const researchCatalog = cosmos.database(settings.cosmosDatabase).container(settings.researchCatalogContainer);
    await proxied.getContainerClient(settings.sourceContainers[0] ?? '').getBlockBlobClient('profile/mf.dcm').uploadFile(file);
    let doc: IngestionDocument | undefined;
    // At least 120 s, and 0.4 s a frame (a 2 GB file of 4,096 frames takes two to three minutes to ingest here).
    for (let i = 0; i < Math.max(600, frames * 2) && doc?.status !== 'cataloged'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      ({ resources: [doc] } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.blobName = @b', parameters: [{ name: '@b', value: 'profile/mf.dcm' }] }).fetchAll());
    }
    const r = doc?.research;
    if (!r) throw new Error(`the profile file was not cataloged (${doc?.status ?? 'no record'})`);

    // The functions' settings in this process, so that the runtime and the function files load as in the host.
    Object.assign(process.env, env);
    const { runtime } = await import('../shared/runtime');
    const { wadoHandlers } = await import('../functions/wado');
    const { findResearchInstances } = await import('../shared/retrieve/researchInstances');
    const { accessRecord } = await import('../shared/audit/accessAudit');
    const { retrieve } = await import('../shared/retrieve/wado');
    const rt = await runtime();

    const token = (JSON.parse(fs.readFileSync(path.join(workDir, 'tokens.json'), 'utf8')) as { research: string }).research;
    const headers = { authorization: `Bearer ${token}`, accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' };
    const params = { study: r.studyInstanceUid, series: r.seriesInstanceUid, instance: r.sopInstanceUid, frames: '1' };
    const instanceUrl = `/api/dicomweb/studies/${r.studyInstanceUid}/series/${r.seriesInstanceUid}/instances/${r.sopInstanceUid}`;
    const researchBlob = blobService.getContainerClient(settings.researchContainer).getBlobClient(r.blob);
    const size = (await researchBlob.getProperties()).contentLength ?? 0;
    const frameOffset = size - frames * FRAME_BYTES;
    const copyEtag = (await researchBlob.getProperties()).etag ?? '';
    const sasUrl = await researchBlob.generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 3_600_000) });
    const agent = new http.Agent({ keepAlive: true });
    const httpGet = (url: string, h: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        http
          .get(url, { agent, headers: h }, (res) => {
            let n = 0;
            res.on('data', (d: Buffer) => (n += d.length));
            res.on('end', () => (res.statusCode === 200 || res.statusCode === 206 ? resolve(n) : reject(new Error(`GET: ${res.statusCode}`))));
            res.on('error', reject);
          })
          .on('error', reject);
      });
    const [instance] = await findResearchInstances(rt.retrieve.catalog, { study: r.studyInstanceUid, series: r.seriesInstanceUid, instance: r.sopInstanceUid });
    if (!instance) throw new Error('no instance');
    const principal = await rt.auth.authenticate({ headers: new Headers({ authorization: headers.authorization }) });
    const context = () => new InvocationContext({ functionName: 'wadoFrames', invocationId: randomUUID(), logHandler: () => undefined });

    const steps: [string, (mark: () => void) => Promise<unknown>][] = [
      ['token verification (jose, RS256)', () => rt.auth.authenticate({ headers: new Headers({ authorization: headers.authorization }) })],
      ['catalog lookup of the instance (uncached)', () => findResearchInstances(rt.retrieve.catalog, { study: r.studyInstanceUid, series: r.seriesInstanceUid, instance: r.sopInstanceUid })],
      ['frame index (kept in the document)', () => rt.retrieve.frameIndex.frameIndex(instance)],
      ['instance document point read (a sidecar index took one per frame before 0.10.5)', () => researchCatalog.item(`instance:${r.sopInstanceUid}`, r.studyInstanceUid).read()],
      [
        'access-audit write (Cosmos create)',
        () => rt.accessAudit.append(accessRecord({ id: randomUUID(), time: new Date(), principal, route: 'wadoFrames', method: 'GET', role: 'Research.Read', status: 200, invocationId: 'x', target: { returned: { studies: [r.studyInstanceUid] } } })),
      ],
      [
        'ranged read of the frame: to its headers',
        async (mark) => {
          const body = await rt.retrieve.research.readRange(r.blob, frameOffset, FRAME_BYTES);
          mark();
          return drain(body);
        },
      ],
      ['ranged read of the frame: headers and body', async () => drain(await rt.retrieve.research.readRange(r.blob, frameOffset, FRAME_BYTES))],
      ['the same, If-Match the ETag of the copy (as retrieve reads)', async () => drain(await rt.retrieve.research.readRange(r.blob, frameOffset, FRAME_BYTES, { ifMatch: copyEtag }))],
      [
        'retrieve in process, no access audit (kept lookup)',
        async () => drain((await retrieve(rt.retrieve, { resource: 'frames', scope: { study: r.studyInstanceUid, series: r.seriesInstanceUid, instance: r.sopInstanceUid }, frames: '1', accept: headers.accept, range: null, root: `http://127.0.0.1/api/dicomweb` })).body),
      ],
      [
        'guarded function in process (all of the above)',
        async () => {
          const res = (await (wadoHandlers.wadoFrames as NonNullable<(typeof wadoHandlers)['x']>)(new HttpRequest({ method: 'GET', url: `http://127.0.0.1${instanceUrl}/frames/1`, headers, params }), context())) as HttpResponseInit;
          if (res.status !== 200) throw new Error(`in process: ${res.status}`);
          return drain(res.body);
        },
      ],
      [
        'through the function host (bench: WADO-RS)',
        async () => {
          const res = await fetch(`${host.url}${instanceUrl}/frames/1`, { headers });
          if (res.status !== 200) throw new Error(`through the host: ${res.status}`);
          return drain(res.body);
        },
      ],
      ['plain ranged read, storage SDK (bench: baseline)', async () => drain((await researchBlob.download(frameOffset, FRAME_BYTES)).readableStreamBody)],
      ['through the function host, node:http client', () => httpGet(`${host.url}${instanceUrl}/frames/1`, headers)],
      [
        'through the function host: to its headers',
        async (mark) => {
          const res = await fetch(`${host.url}${instanceUrl}/frames/1`, { headers });
          mark();
          return drain(res.body);
        },
      ],
      [
        'plain ranged read, storage SDK: to its headers',
        async (mark) => {
          const res = await researchBlob.download(frameOffset, FRAME_BYTES);
          mark();
          return drain(res.readableStreamBody);
        },
      ],
      ['plain ranged read, node:http client (SAS URL)', () => httpGet(sasUrl, { range: `bytes=${frameOffset}-${frameOffset + FRAME_BYTES - 1}` })],
      [
        'plain ranged read, fetch (SAS URL; the client of the WADO-RS rows)',
        async () => {
          const res = await fetch(sasUrl, { headers: { range: `bytes=${frameOffset}-${frameOffset + FRAME_BYTES - 1}` } });
          if (res.status !== 206) throw new Error(`plain fetch: ${res.status}`);
          return drain(res.body);
        },
      ],
    ];
    // Round robin, so that a machine busy with other work weighs on every step alike.
    for (const [, step] of steps) await step(() => undefined);
    const times = steps.map((): number[] => []);
    for (let i = 0; i < repeats; i++) {
      for (const [k, [, step]] of steps.entries()) times[k]?.push(...(await timed(1, step)));
    }
    const rows = steps.map(([name], k) => [name, String(round(percentile(times[k] ?? [], 50), 2)), String(round(percentile(times[k] ?? [], 90), 2))]);
    process.stdout.write(`${formatTable([['step', 'p50 ms', 'p90 ms'], ...rows])}\n`);

    // The host's CPU time per frame request (less sensitive to a busy machine than the latency),
    // and its CPU profile when WADO_PROFILE_CPU names a file.
    const through = steps.find(([name]) => name.startsWith('through the function host'))?.[1];
    if (through) {
      const profileFile = process.env.WADO_PROFILE_CPU;
      if (profileFile) await host.startProfile();
      const before = await host.cpuUsage();
      await timed(repeats, through);
      const after = await host.cpuUsage();
      if (profileFile) await host.stopProfile(profileFile);
      const cpuMs = (after.user + after.system - before.user - before.system) / 1000 / repeats;
      process.stdout.write(`function host CPU per frame request: ${round(cpuMs, 2)} ms\n`);
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
