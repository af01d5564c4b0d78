/**
 * WADO-RS through the local stack (issue 14): a large multi-frame file (BENCH_WADO_MB, default
 * 512 MB; the figure is 2 GB) is ingested, then in the same run
 *
 * - once the host is quiet again after the ingestion, its first and last frame are retrieved
 *   through WADO-RS (`.../frames/{n}`) and read from the research blob with a plain ranged read
 *   of the same bytes, all four in turn, `repeats` times each: p50 and p99 of both, and their
 *   ratio (target: within 2x);
 * - the whole instance is retrieved through WADO-RS and downloaded plainly from the blob:
 *   MB/s of both;
 * - the function host's resident set is sampled (/proc) while it streams the instance and the
 *   last frames: the peak above the level before, against the instance's size (flat memory);
 * - then while a slow client takes the instance at SLOW_CLIENT_MBPS for SLOW_CLIENT_SECONDS and
 *   goes away: what the host would hold if it read storage faster than its client takes the
 *   answer (before 0.14.0 it did: functions/httpBackpressure.ts).
 *
 * The function host runs in a process of its own (local/hostProcess.ts), so its RSS is its own;
 * the plain reads go to the same blob endpoint the host reads from. Both reach Azurite itself,
 * as they reach storage in Azure (BENCH_DIRECT=0: both through the Event Grid stand-in's proxy,
 * as in `npm start`); the upload goes through the proxy, which raises its event.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Container, CosmosClient } from '@azure/cosmos';

import { startHostProcess } from '../local/hostProcess';
import type { IngestionDocument } from '../shared/catalog/documents';
import { startBenchServices } from './benchServices';
import { FRAME_BYTES, writeMultiFrame } from './generate';
import { percentile, round } from './stats';

export interface WadoScenarioOptions {
  projectRoot: string;
  workDir: string;
  /** Size of the multi-frame file, MB (whole 512 × 512 × 16-bit frames). */
  megabytes: number;
  /** Timed requests per frame and per kind of read. */
  repeats: number;
  deidKey: string;
  seed: number;
}

export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
}

/** The slow client: how fast it takes the instance, and for how long. */
const SLOW_CLIENT_MBPS = 20;
const SLOW_CLIENT_SECONDS = 5;

export interface WadoResult {
  fileBytes: number;
  frames: number;
  repeats: number;
  ingestSeconds: number;
  firstFrame: { wado: LatencySummary; plain: LatencySummary; p50Ratio: number; p99Ratio: number };
  lastFrame: { wado: LatencySummary; plain: LatencySummary; p50Ratio: number; p99Ratio: number };
  instance: { wadoMBps: number; plainMBps: number; ratio: number; runs: number };
  hostRss: { beforeMB: number; peakMB: number; peakDeltaMB: number; instanceMB: number };
  /** The host's RSS while a slow client takes the instance: the peak above the level before, and what the client took. */
  slowClient: { peakDeltaMB: number; takenMB: number; seconds: number };
  wiring: 'direct' | 'stand-in';
}

/** The resident set of a process, in MiB (Linux /proc). */
function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Samples a process's RSS every 20 ms until stopped; gives the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssMB(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMB(pid));
  }, 20);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssMB(pid));
    },
  };
}

async function drain(body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream | ReadableStream<Uint8Array> | null | undefined): Promise<number> {
  let n = 0;
  if (!body) return n;
  for await (const chunk of body as AsyncIterable<Uint8Array>) n += chunk.length;
  return n;
}

function summary(ms: number[]): LatencySummary {
  return { p50Ms: round(percentile(ms, 50), 2), p99Ms: round(percentile(ms, 99), 2) };
}

/** Takes an answer at about SLOW_CLIENT_MBPS for SLOW_CLIENT_SECONDS (reading, then pausing), then goes away. */
async function slowClient(url: string, headers: Record<string, string>): Promise<{ bytes: number; seconds: number }> {
  const controller = new AbortController();
  const started = performance.now();
  const res = await fetch(url, { headers, signal: controller.signal });
  if (res.status !== 200 || !res.body) throw new Error(`slow client: ${res.status}`);
  const reader = res.body.getReader();
  let bytes = 0;
  try {
    while (performance.now() - started < SLOW_CLIENT_SECONDS * 1000) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
      // Behind its pace: wait until it is back on it.
      const due = started + (bytes / (SLOW_CLIENT_MBPS * 1024 * 1024)) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  } finally {
    controller.abort();
    await reader.cancel().catch(() => undefined);
  }
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

async function waitForCataloged(index: Container, blobName: string, timeoutMs: number): Promise<IngestionDocument> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { resources } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.blobName = @b', parameters: [{ name: '@b', value: blobName }] }).fetchAll();
    const doc = resources[0];
    if (doc?.status === 'cataloged') return doc;
    if (doc && doc.status !== 'processing') throw new Error(`the bench file ended ${doc.status} (${doc.errorCode ?? ''})`);
    if (Date.now() > deadline) throw new Error(`the bench file was not cataloged within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Waits (at most a minute) until the host spends under a tenth of a core over half a second. */
async function settled(host: { cpuUsage(): Promise<{ user: number; system: number }> }): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const a = await host.cpuUsage();
    await new Promise((r) => setTimeout(r, 500));
    const b = await host.cpuUsage();
    if ((b.user + b.system - a.user - a.system) / 1000 < 50) return;
  }
}

export async function runWadoScenario(options: WadoScenarioOptions): Promise<WadoResult> {
  const stops: (() => Promise<void>)[] = [];
  try {
    const frames = Math.max(2, Math.floor((options.megabytes * 1024 * 1024) / FRAME_BYTES));
    const file = path.join(options.workDir, 'wado-mf.dcm');
    const fileBytes = writeMultiFrame(file, { seed: options.seed, frames });

    const direct = process.env.BENCH_DIRECT !== '0';
    const { events, cosmosServer, env, settings, blobService, directBlobService } = await startBenchServices({ workDir: options.workDir, deidKey: options.deidKey, direct }, stops);
    const functionHost = await startHostProcess({ projectRoot: options.projectRoot, env, logFile: path.join(options.workDir, 'wado-stack.log') });
    stops.push(() => functionHost.stop());
    events.setWebhookBaseUrl(functionHost.url);

    const cosmosKey = /AccountKey=([^;]+)/.exec(cosmosServer.connectionString)?.[1] ?? '';
    const cosmos = new CosmosClient({ endpoint: cosmosServer.endpoint, key: cosmosKey, connectionPolicy: { enableEndpointDiscovery: false } });
    const index = cosmos.database(settings.cosmosDatabase).container(settings.indexContainer);

    const blobName = 'wado-bench/mf.dcm';
    const ingestStarted = Date.now();
    await blobService.getContainerClient(settings.sourceContainers[0] ?? '').getBlockBlobClient(blobName).uploadFile(file, { blockSize: 8 * 1024 * 1024, concurrency: 4 });
    fs.rmSync(file, { force: true });
    const doc = await waitForCataloged(index, blobName, 30 * 60_000);
    const ingestSeconds = (Date.now() - ingestStarted) / 1000;
    const r = doc.research;
    if (!r) throw new Error('the cataloged bench file has no research instance');

    const token = JSON.parse(fs.readFileSync(path.join(options.workDir, 'tokens.json'), 'utf8')) as { research: string };
    const instanceUrl = `${functionHost.url}/api/dicomweb/studies/${r.studyInstanceUid}/series/${r.seriesInstanceUid}/instances/${r.sopInstanceUid}`;
    const auth = { authorization: `Bearer ${token.research}` };
    const researchBlob = (direct ? directBlobService : blobService).getContainerClient(settings.researchContainer).getBlobClient(r.blob);
    const size = (await researchBlob.getProperties()).contentLength ?? 0;
    // The pixel data is the copy's end (no trailing elements in the generated file): frame n's offset follows.
    const pixelStart = size - frames * FRAME_BYTES;

    const wadoFrame = async (n: number) => {
      const started = performance.now();
      const res = await fetch(`${instanceUrl}/frames/${n}`, { headers: { ...auth, accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' } });
      if (res.status !== 200) throw new Error(`frame ${n}: ${res.status}`);
      const bytes = await drain(res.body);
      if (bytes < FRAME_BYTES) throw new Error(`frame ${n}: ${bytes} bytes`);
      return performance.now() - started;
    };
    const plainFrame = async (n: number) => {
      const started = performance.now();
      const d = await researchBlob.download(pixelStart + (n - 1) * FRAME_BYTES, FRAME_BYTES);
      const bytes = await drain(d.readableStreamBody);
      if (bytes !== FRAME_BYTES) throw new Error(`plain frame ${n}: ${bytes} bytes`);
      return performance.now() - started;
    };
    // Warm-up: the first frame request reads the header (and builds the frame index).
    await wadoFrame(1);
    await plainFrame(1);

    // The work an ingestion leaves behind (the host's and the emulators' collection of a 2 GB
    // upload's garbage) is let finish before timing: the first frames asked took it all before.
    await settled(functionHost);

    const before = rssMB(functionHost.pid);
    const rss = sampleRss(functionHost.pid);
    // First and last frame in turn, each beside its plain read: neither gets a quieter half of the run.
    const times = { first: { wado: [] as number[], plain: [] as number[] }, last: { wado: [] as number[], plain: [] as number[] } };
    for (let i = 0; i < options.repeats; i++) {
      for (const [n, into] of [[1, times.first], [frames, times.last]] as const) {
        into.wado.push(await wadoFrame(n));
        into.plain.push(await plainFrame(n));
      }
    }
    const latency = (t: { wado: number[]; plain: number[] }) => {
      const w = summary(t.wado);
      const p = summary(t.plain);
      return { wado: w, plain: p, p50Ratio: round(w.p50Ms / p.p50Ms, 2), p99Ratio: round(w.p99Ms / p.p99Ms, 2) };
    };
    const firstFrame = latency(times.first);
    const lastFrame = latency(times.last);

    const runs = 2;
    let wadoSeconds = 0;
    let plainSeconds = 0;
    for (let i = 0; i < runs; i++) {
      let started = performance.now();
      const res = await fetch(instanceUrl, { headers: { ...auth, accept: 'application/dicom; transfer-syntax=*' } });
      const got = await drain(res.body);
      if (res.status !== 200 || got !== size) throw new Error(`instance retrieve: ${res.status}, ${got} of ${size} bytes`);
      wadoSeconds += (performance.now() - started) / 1000;
      started = performance.now();
      const plain = await drain((await researchBlob.download(0)).readableStreamBody);
      if (plain !== size) throw new Error(`plain download: ${plain} of ${size} bytes`);
      plainSeconds += (performance.now() - started) / 1000;
    }
    const peak = rss.stop();

    const slowBefore = rssMB(functionHost.pid);
    const slowRss = sampleRss(functionHost.pid);
    const slow = await slowClient(instanceUrl, { ...auth, accept: 'application/dicom; transfer-syntax=*' });
    const slowPeak = slowRss.stop();
    const wadoMBps = round((size * runs) / 1e6 / wadoSeconds, 1);
    const plainMBps = round((size * runs) / 1e6 / plainSeconds, 1);
    return {
      fileBytes,
      frames,
      repeats: options.repeats,
      ingestSeconds: round(ingestSeconds, 1),
      firstFrame,
      lastFrame,
      instance: { wadoMBps, plainMBps, ratio: round(wadoMBps / plainMBps, 2), runs },
      hostRss: { beforeMB: round(before, 1), peakMB: round(peak, 1), peakDeltaMB: round(peak - before, 1), instanceMB: round(size / 1024 / 1024, 1) },
      slowClient: { peakDeltaMB: round(slowPeak - slowBefore, 1), takenMB: round(slow.bytes / 1024 / 1024, 1), seconds: round(slow.seconds, 1) },
      wiring: direct ? 'direct' : 'stand-in',
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}
