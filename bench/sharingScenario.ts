/**
 * Data sharing through the local stack (issue 15), in one run:
 *
 * - export throughput: `count` small CT slices are ingested, then exported to a partner
 *   container under an agreement (the queue fan-out, one partner copy per message, the
 *   manifest), timed from the POST to `completed`; against a plain blob copy of the same
 *   research copies (download and upload, 16 at a time) into another container of the same
 *   Azurite, timed the same way;
 * - live latency: a `live` agreement over the CT cohort, then `liveCount` new slices uploaded
 *   one by one; for each, the time from its upload's end to its partner copy's record (the
 *   export item, written right after the copy is committed): p50 and p99.
 *
 * The export's requests are counted in the host's process (bench/requestCounter.ts: Cosmos DB by
 * kind and container, blob by kind, queue by kind), from the POST to `completed`, and given per
 * exported instance. `profileFile` (BENCH_PROFILE) writes a CPU profile of the host over the same
 * span and the summary of its self time by module.
 *
 * The function host runs in a process of its own. Its Event Grid topic is a relay in this
 * process that posts each VNA.Catalog.InstanceCataloged to the host's own webhook for
 * `shareCatalogedInstance`, as the topic's subscription does in Azure.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

import type { Container } from '@azure/cosmos';

import { type HostProcess, startHostProcess } from '../local/hostProcess';
import { closeServer, listen } from '../local/net';
import { createCosmosClient } from '../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../shared/catalog/documents';
import { sourceId } from '../shared/ingest/ingestSourceFile';
import type { ExportItem } from '../shared/sharing/stores';
import { startBenchServices } from './benchServices';
import { ctSliceBytes } from './generate';
import { summarise } from './profileSummary';
import type { RequestCounts } from './requestCounter';
import { percentile, round } from './stats';

export interface SharingScenarioOptions {
  projectRoot: string;
  workDir: string;
  count: number;
  liveCount: number;
  deidKey: string;
  seed: number;
  /** Writes a CPU profile of the host over the export here. */
  profileFile?: string;
}

/** Requests of the export per exported instance, by kind (the host's own, from the POST to completed). */
export interface SharingRequestsPerInstance {
  cosmos: Record<string, number>;
  cosmosByContainer: Record<string, number>;
  blob: Record<string, number>;
  queue: Record<string, number>;
  total: number;
}

export interface SharingResult {
  instances: number;
  bytes: number;
  export: { seconds: number; instancesPerSecond: number; MBps: number };
  plainCopy: { seconds: number; instancesPerSecond: number; MBps: number };
  exportToPlainCopy: number;
  requestsPerInstance: SharingRequestsPerInstance;
  /** CPU time of the function host (every thread) from the POST to completed, per exported instance: less sensitive to the machine's other load than the seconds. */
  hostCpuMsPerInstance: number;
  /** Self time of the host over the export, by module (ms), when profiled. */
  profile?: { totalMs: number; modules: { name: string; ms: number; share: number }[] };
  live: { instances: number; p50Ms: number; p99Ms: number; maxMs: number };
}

function per(counts: Record<string, number>, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, round(v / n, 2)]));
}

/** The export's requests per exported instance; the polls of the bench itself come from this process and are not counted. */
function perInstance(counts: RequestCounts, n: number): SharingRequestsPerInstance {
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  return {
    cosmos: per(counts.cosmosKinds, n),
    cosmosByContainer: per(counts.cosmosContainerKinds, n),
    blob: per(counts.blobKinds, n),
    queue: per(counts.queueKinds, n),
    total: round((sum(counts.cosmosKinds) + sum(counts.blobKinds) + sum(counts.queueKinds)) / n, 2),
  };
}

async function pool<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++] as T);
  }));
}

/** The machine's other load makes the blob proxy drop a connection now and then: a few tries. */
async function retried<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (e) {
      if (attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`bench sharing: ${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function runSharingScenario(options: SharingScenarioOptions): Promise<SharingResult> {
  const stops: (() => Promise<void>)[] = [];
  try {
    const services = await startBenchServices({ workDir: options.workDir, deidKey: options.deidKey }, stops);
    const { settings, blobService, devIssuer } = services;
    // The topic: a relay to the host's webhook (its URL is known once the host is up).
    let hostUrl = '';
    const relay = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        fetch(`${hostUrl}/runtime/webhooks/eventgrid?functionName=shareCatalogedInstance`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
          body: Buffer.concat(chunks),
        }).then(
          (r) => {
            res.writeHead(r.status);
            res.end();
          },
          () => {
            res.writeHead(503);
            res.end();
          },
        );
      });
    });
    const relayPort = await listen(relay, 0, '127.0.0.1', 'topic relay');
    stops.push(() => closeServer(relay));
    const env = { ...services.env, EVENTGRID_TOPIC_ENDPOINT: `http://127.0.0.1:${relayPort}/api/events`, EVENTGRID_TOPIC_KEY: 'bench-topic-key' };
    const host: HostProcess = await startHostProcess({
      projectRoot: options.projectRoot,
      env,
      logFile: path.join(options.workDir, 'sharing-stack.log'),
      countRequests: { blob: services.events.port, cosmos: services.cosmosServer.port, queue: services.azurite.queuePort },
    });
    stops.push(() => host.stop());
    hostUrl = host.url;
    services.events.setWebhookBaseUrl(host.url);
    const token = devIssuer.tokens.sharing;
    const api = (method: string, p: string, body?: unknown) =>
      fetch(`${host.url}${p}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

    const cosmos = createCosmosClient(settings.cosmos);
    const db = cosmos.database(settings.cosmosDatabase);
    const index: Container = db.container(settings.indexContainer);
    const exportsContainer: Container = db.container(settings.sharing.exportsContainer);
    const landing = blobService.getContainerClient(settings.sourceContainers[0] ?? '');
    const sourceUrl = (name: string) => `${landing.url}/${name}`;
    const cataloged = async (name: string) => {
      const id = sourceId(sourceUrl(name));
      const doc = (await index.item(id, id).read<IngestionDocument>().catch(() => ({ resource: undefined }))).resource;
      return doc?.status === 'cataloged' ? doc : undefined;
    };

    // Ingest the export's instances.
    const names = Array.from({ length: options.count }, (_, i) => `bench-sharing/s${Math.floor(i / 100)}/${i}.dcm`);
    await pool(names, 16, async (name) => {
      const i = Number(/(\d+)\.dcm$/.exec(name)?.[1]);
      const data = ctSliceBytes({ seed: options.seed, study: Math.floor(i / 100), instance: (i % 100) + 1, matrix: 64 });
      await retried(() => landing.getBlockBlobClient(name).uploadData(data));
    });
    const docs: IngestionDocument[] = [];
    for (const name of names) docs.push(await waitFor(`cataloging ${name}`, 600_000, () => cataloged(name)));
    const studies = [...new Set(docs.map((d) => d.research?.studyInstanceUid as string))];

    // The export, timed from the request to completed.
    const agreement = (await (await api('POST', '/api/agreements', {
      partnerId: 'bench-partner', partnerName: 'Bench', profile: { builtIn: 'safe-harbor' }, cohort: { studies }, mode: 'once',
      validFrom: '2026-01-01', validUntil: '2030-01-01', destination: { kind: 'sas', container: 'bench-share' },
    })).json()) as { id: string };
    await host.resetRequests();
    const cpuBefore = await host.cpuUsage();
    if (options.profileFile) await host.startProfile();
    const exportStarted = Date.now();
    const location = (await api('POST', `/api/agreements/${agreement.id}/exports`)).headers.get('location') as string;
    // Polled on the job document from this process (the status route's own queries would be counted as the export's).
    const exportId = location.split('/').pop() as string;
    await waitFor('the export', 1_800_000, async () => {
      const r = await exportsContainer.item(exportId, exportId).read<{ status: string }>().catch(() => ({ resource: undefined }));
      return r.resource && r.resource.status !== 'running' ? r.resource : undefined;
    });
    const exportSeconds = (Date.now() - exportStarted) / 1000;
    // CPU first: the counter classifies the requests it kept when they are read (bench/requestCounter.ts).
    const cpuAfter = await host.cpuUsage();
    const counts = await host.requests();
    const hostCpuMs = (cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system) / 1000;
    const final = (await (await api('GET', location)).json()) as { status: string; done: number; failed: number; bytes: number };
    let profile: SharingResult['profile'];
    if (options.profileFile) {
      await host.stopProfile(options.profileFile);
      const summary = summarise(JSON.parse(fs.readFileSync(options.profileFile, 'utf8')) as Parameters<typeof summarise>[0]);
      profile = { totalMs: round(summary.totalMs, 0), modules: summary.modules.slice(0, 12).map((m) => ({ name: m.name, ms: round(m.ms, 0), share: round(m.share, 3) })) };
    }
    if (final.done !== options.count) throw new Error(`bench sharing: the export did ${final.done} of ${options.count} (${final.failed} failed)`);

    // The baseline: a plain copy of the same research copies, download and upload, 16 at a time.
    const research = blobService.getContainerClient(settings.researchContainer);
    const copyTarget = blobService.getContainerClient('bench-plain-copy');
    await copyTarget.createIfNotExists();
    const copyStarted = Date.now();
    let copiedBytes = 0;
    await pool(docs, 16, async (d) => {
      const data = await retried(() => research.getBlobClient(d.research?.blob as string).downloadToBuffer());
      copiedBytes += data.length;
      await retried(() => copyTarget.getBlockBlobClient(d.research?.blob as string).uploadData(data));
    });
    const copySeconds = (Date.now() - copyStarted) / 1000;

    // Live: one slice at a time, the time from its upload's end to its partner copy's record.
    const live = (await (await api('POST', '/api/agreements', {
      partnerId: 'bench-live', partnerName: 'Bench live', profile: { builtIn: 'safe-harbor' }, cohort: { filter: { Modality: 'CT' } }, mode: 'live',
      validFrom: '2026-01-01', validUntil: '2030-01-01', destination: { kind: 'sas', container: 'bench-live' },
    })).json()) as { id: string };
    const part = `live-${live.id.replace(/^agr-/, '')}-${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`;
    const latencies: number[] = [];
    for (let i = 0; i < options.liveCount; i++) {
      const name = `bench-sharing-live/${i}.dcm`;
      const slice = ctSliceBytes({ seed: options.seed + 1, study: 0, instance: i + 1, matrix: 64 });
      await retried(() => landing.getBlockBlobClient(name).uploadData(slice));
      const uploaded = Date.now();
      const doc = await waitFor(`cataloging ${name}`, 120_000, () => cataloged(name));
      const item = await waitFor(`the live copy of ${name}`, 120_000, async () => {
        const r = await exportsContainer.item(`item:${doc.research?.sopInstanceUid}`, part).read<ExportItem>().catch(() => ({ resource: undefined }));
        return r.resource?.status === 'done' ? r.resource : undefined;
      });
      latencies.push(Date.parse(item.at) - uploaded);
    }

    return {
      instances: options.count,
      bytes: final.bytes,
      export: { seconds: round(exportSeconds, 2), instancesPerSecond: round(options.count / exportSeconds, 1), MBps: round(final.bytes / 1e6 / exportSeconds, 2) },
      plainCopy: { seconds: round(copySeconds, 2), instancesPerSecond: round(options.count / copySeconds, 1), MBps: round(copiedBytes / 1e6 / copySeconds, 2) },
      exportToPlainCopy: round(copySeconds / exportSeconds, 3),
      requestsPerInstance: perInstance(counts, options.count),
      hostCpuMsPerInstance: round(hostCpuMs / options.count, 2),
      ...(profile ? { profile } : {}),
      live: { instances: latencies.length, p50Ms: Math.round(percentile(latencies, 50)), p99Ms: Math.round(percentile(latencies, 99)), maxMs: Math.max(...latencies) },
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}
