/**
 * Reliability under faults, on the real local services (Azurite, the Cosmos DB emulator server,
 * the function host; real SDK clients over real sockets). Each scenario runs the same real DICOM
 * files through a fault stack of its own (local/faultStack.ts, in a child process) while faults are
 * injected: 429 and 503 answers, lost answers to writes and latency by a proxy in front of the
 * blob endpoint and the Cosmos DB server, Azurite stopped and restarted with its data, the Cosmos
 * DB server stopped and restarted empty. Every sixth file is deleted again right after the burst.
 * Every file must end in a terminal state and the research side (catalog documents and research
 * copies) must equal what a clean run of the same files makes (same key, same source URLs: the
 * same documents, but for timestamps and the source version).
 */
import type { FaultPlan } from '../../local/faultProxy';
import type { FaultStackStats } from '../../local/faultStackProcess';
import { findReusablePort } from '../../local/net';
import {
  compareWithClean,
  Comparison,
  deleteAll,
  PipelineSnapshot,
  selectFixtures,
  snapshot,
  StackController,
  startFaultStackProcess,
  summaryLine,
  uploadAll,
} from './faults/harness';

const FILES = selectFixtures(48);
/** Every sixth file is deleted again right after the burst, while its events are still being handled. */
const DELETED = new Set([...FILES.keys()].filter((_, i) => i % 6 === 5));
/** Events tried this often before dead-lettering: enough to ride out the outages below (a few s each). */
const EVENT_SOURCE = { maxAttempts: 15, maxBackoffMs: 1000, deliveryTimeoutMs: 20_000 };
const OUTAGE_MS = 2500;
const IDLE_TIMEOUT_MS = 90_000;

interface Scenario {
  /** Before the uploads start. */
  setup?(stack: StackController): Promise<void>;
  /** After each successful upload (done = how many so far). */
  onUploaded?(stack: StackController, done: number): void;
  /** After the last upload, before waiting for the events to settle. */
  afterUploads?(stack: StackController): Promise<void>;
  /** After the events settled and the faults were lifted; returns a note for the summary line. */
  recover?(stack: StackController): Promise<string>;
}

interface ScenarioRun {
  uploaded: string[];
  stats: FaultStackStats;
  result: PipelineSnapshot;
  line: string;
  comparison: Comparison;
  problems: string;
}

let blobProxyPort: number;
let clean: PipelineSnapshot | undefined;
let cleanUploaded: string[] = [];
let cleanComparison: Comparison | undefined;

async function runScenario(name: string, scenario: Scenario): Promise<ScenarioRun> {
  const started = Date.now();
  const stack = await startFaultStackProcess({ blobProxyPort, eventSource: EVENT_SOURCE });
  try {
    await scenario.setup?.(stack);
    const container = stack.settings.sourceContainers[0]!;
    const upload = await uploadAll(stack.info.storageConnectionString, container, FILES, {
      concurrency: 8,
      giveUpAfterMs: 60_000,
      onUploaded: (done) => scenario.onUploaded?.(stack, done),
    });
    await scenario.afterUploads?.(stack);
    const deleteRetries = await deleteAll(stack.info.storageConnectionString, container, [...DELETED], 60_000);
    await stack.idle(IDLE_TIMEOUT_MS);
    await stack.plan('blob', null);
    await stack.plan('cosmos', null);
    const note = [
      upload.retried ? `upload attempts retried ${upload.retried}` : '',
      deleteRetries ? `delete attempts retried ${deleteRetries}` : '',
      (await scenario.recover?.(stack)) ?? '',
    ].filter(Boolean).join('; ');
    const stats = await stack.stats();
    const result = await snapshot(stack);
    // The clean run is compared with itself: what it checks then is that no file was lost.
    const comparison = compareWithClean(upload.uploaded, DELETED, clean ?? result, result);
    const line = clean
      ? summaryLine(name, comparison, stats, note, Date.now() - started)
      : `faults ${name}: files ${upload.uploaded.length} (${comparison.deleted} deleted again), lost ${comparison.lost.length}, research instances ${result.counts.instances}, ` +
        `series ${result.counts.series}, studies ${result.counts.studies}; ${((Date.now() - started) / 1000).toFixed(1)} s`;
    console.log(line);
    return { uploaded: upload.uploaded, stats, result, line, comparison, problems: stack.problems() };
  } finally {
    await stack.stop();
  }
}

/** Fails with the figures, what was lost or differs, and the host's warnings and errors. */
function expectSameAsClean(run: ScenarioRun): void {
  const c = run.comparison;
  if (c.lost.length || c.diverged.length || c.catalogDiff.length) {
    throw new Error(
      [
        run.line,
        ...c.lost.slice(0, 20).map((l) => `lost: ${l}`),
        ...c.diverged.slice(0, 20).map((l) => `diverged: ${l}`),
        ...c.catalogDiff.slice(0, 20).map((l) => `catalog: ${l}`),
        '--- host warnings and errors ---',
        run.problems,
      ].join('\n'),
    );
  }
  expect({ files: c.files, lost: c.lost.length, diverged: c.diverged.length, catalogDifferences: c.catalogDiff.length }).toEqual({
    files: FILES.size,
    lost: 0,
    diverged: 0,
    catalogDifferences: 0,
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const WAIT_LIMIT_MS = 60_000;

/** Waits until one of `names` is recorded cataloged in the index. */
async function waitForCataloged(stack: StackController, names: ReadonlySet<string>): Promise<void> {
  for (const deadline = Date.now() + WAIT_LIMIT_MS; Date.now() < deadline; await delay(100)) {
    const { index } = await snapshot(stack);
    if ([...names].some((n) => index.get(n)?.status === 'cataloged')) return;
  }
  throw new Error(`none of the ${names.size} files to be deleted was cataloged within ${WAIT_LIMIT_MS} ms\n${stack.problems()}`);
}

/** Waits until at least `count` events were delivered or dead-lettered; returns how many were. */
async function waitForProcessed(stack: StackController, count: number): Promise<number> {
  for (const deadline = Date.now() + WAIT_LIMIT_MS; Date.now() < deadline; await delay(50)) {
    const { events } = await stack.stats();
    if (events.delivered + events.deadLettered >= count) return events.delivered + events.deadLettered;
  }
  throw new Error(`fewer than ${count} events were processed within ${WAIT_LIMIT_MS} ms\n${stack.problems()}`);
}

describe('the pipeline under injected faults, compared with a clean run of the same files', () => {
  beforeAll(async () => {
    blobProxyPort = await findReusablePort();
    const run = await runScenario('clean run', {});
    // The reference must itself be complete, or every comparison below would be against nothing.
    const kept = run.uploaded.filter((n) => !DELETED.has(n));
    const unfinished = kept.filter((n) => !['cataloged', 'failed', 'quarantined'].includes(run.result.index.get(n)?.status ?? ''));
    if (unfinished.length > 0 || run.comparison.lost.length > 0 || run.uploaded.length !== FILES.size || run.result.counts.instances === 0) {
      throw new Error(
        `the clean run did not finish every file (${unfinished.length} unfinished, ${run.comparison.lost.length} lost, ${run.result.counts.instances} instances)\n` +
          `${[...run.comparison.lost, ...run.comparison.diverged].join('\n')}\n${run.problems}`,
      );
    }
    clean = run.result;
    cleanUploaded = run.uploaded;
    cleanComparison = run.comparison;
  }, 120_000);

  it('given a clean run, then every kept file ends cataloged, failed or quarantined, every deleted one deleted, and the research catalog holds instances', () => {
    expect(cleanUploaded).toHaveLength(FILES.size);
    expect({ deleted: cleanComparison!.deleted, lost: cleanComparison!.lost, diverged: cleanComparison!.diverged }).toEqual({ deleted: DELETED.size, lost: [], diverged: [] });
    expect(clean!.counts.instances).toBeGreaterThan((FILES.size - DELETED.size) / 2);
    expect(clean!.researchBlobs.size).toBe(clean!.counts.instances);
  });

  it('given 429 and 503 answers on a share of blob and Cosmos requests during a burst of uploads, then no file is lost and the catalog equals the clean run', async () => {
    const cosmosPlan: FaultPlan = {
      seed: 1,
      rules: [
        { action: { kind: 'status', status: 429, retryAfterMs: 50 }, probability: 0.12 },
        { action: { kind: 'status', status: 503 }, probability: 0.06 },
        // Writes in the first seconds of the burst: every fifth refused.
        { action: { kind: 'status', status: 503 }, everyNth: 5, methods: ['POST', 'PUT'], window: { fromMs: 0, toMs: 5000 } },
      ],
    };
    const blobPlan: FaultPlan = {
      seed: 2,
      rules: [
        { action: { kind: 'status', status: 503 }, probability: 0.1 },
        { action: { kind: 'status', status: 429, retryAfterMs: 100 }, probability: 0.06 },
      ],
    };
    const run = await runScenario('429/503', {
      async setup(stack) {
        await stack.plan('cosmos', cosmosPlan);
        await stack.plan('blob', blobPlan);
      },
    });
    expectSameAsClean(run);
    for (const target of ['blob', 'cosmos'] as const) {
      expect(run.stats.proxies[target].throttled).toBeGreaterThan(0);
      expect(run.stats.proxies[target].unavailable).toBeGreaterThan(0);
    }
  }, 150_000);

  it('given the Cosmos DB server stopped mid-burst and restarted empty, then after a re-emission of every landing blob no file is lost and the catalog equals the clean run', async () => {
    let outage: Promise<void> | undefined;
    let processedAtStop = 0;
    const run = await runScenario('cosmos restarted empty', {
      onUploaded(stack, done) {
        if (done !== 1) return;
        // Stopped once ingestion is well under way, not merely once the uploads are, and once a
        // file that is deleted later is cataloged (its deletion then meets an index without it).
        outage = (async () => {
          processedAtStop = await waitForProcessed(stack, Math.floor(FILES.size / 4));
          await waitForCataloged(stack, DELETED);
          await stack.command({ command: 'stopCosmos' });
          // A stopped server refuses connections; the proxy does the same meanwhile.
          await stack.command({ command: 'proxyDown', target: 'cosmos', down: true });
          await delay(OUTAGE_MS);
          await stack.command({ command: 'startCosmos' });
          await stack.command({ command: 'proxyDown', target: 'cosmos', down: false });
        })();
      },
      async afterUploads() {
        await outage;
      },
      async recover(stack) {
        const emitted = await stack.command<number>({ command: 'reconcile' });
        await stack.idle(IDLE_TIMEOUT_MS);
        return `stopped after ${processedAtStop} events processed, down ${OUTAGE_MS} ms, re-emitted ${emitted} landing blobs`;
      },
    });
    expect(processedAtStop).toBeLessThan(FILES.size);
    expectSameAsClean(run);
  }, 150_000);

  it('given a cataloged file whose index record was lost with the Cosmos DB server, when the file is deleted before the backfill, then its research copy is withdrawn too', async () => {
    const name = [...FILES.keys()].find((n) => !DELETED.has(n) && clean!.index.get(n)?.status === 'cataloged')!;
    const stack = await startFaultStackProcess({ blobProxyPort, eventSource: EVENT_SOURCE });
    try {
      const container = stack.settings.sourceContainers[0]!;
      await uploadAll(stack.info.storageConnectionString, container, new Map([[name, FILES.get(name)!]]), { concurrency: 1, giveUpAfterMs: 10_000 });
      await stack.idle(IDLE_TIMEOUT_MS);
      const before = await snapshot(stack);
      expect({ status: before.index.get(name)?.status, researchCopies: before.researchBlobs.size }).toEqual({ status: 'cataloged', researchCopies: 1 });

      await stack.command({ command: 'stopCosmos' });
      await stack.command({ command: 'startCosmos' });
      await deleteAll(stack.info.storageConnectionString, container, [name], 10_000);
      await stack.idle(IDLE_TIMEOUT_MS);
      const emitted = await stack.command<number>({ command: 'reconcile' });
      await stack.idle(IDLE_TIMEOUT_MS);

      const after = await snapshot(stack);
      console.log(`faults index lost, then a source deleted: re-emitted ${emitted}, research copies left ${after.researchBlobs.size}, catalog documents ${after.catalog.size}`);
      expect({ landing: after.landing, researchCopies: [...after.researchBlobs.keys()], catalogDocuments: after.catalog.size }).toEqual({
        landing: [],
        researchCopies: [],
        catalogDocuments: 0,
      });
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it('given a research copy written and the instance document failing to be written, when the source is deleted before a retry succeeds, then the research copy is withdrawn too', async () => {
    const name = [...FILES.keys()].find((n) => !DELETED.has(n) && clean!.index.get(n)?.status === 'cataloged')!;
    const stack = await startFaultStackProcess({ blobProxyPort, eventSource: EVENT_SOURCE });
    try {
      const container = stack.settings.sourceContainers[0]!;
      // Every create or replace in the research catalog fails (queries, also POSTs, pass): ingestion
      // gets as far as the research copy.
      const catalogDocs = `/colls/${stack.settings.researchCatalogContainer}/docs`;
      await stack.plan('cosmos', {
        seed: 7,
        rules: [{ action: { kind: 'status', status: 503 }, methods: ['POST', 'PUT'], pathPattern: catalogDocs, unlessHeader: 'x-ms-documentdb-isquery' }],
      });
      await uploadAll(stack.info.storageConnectionString, container, new Map([[name, FILES.get(name)!]]), { concurrency: 1, giveUpAfterMs: 10_000 });
      for (const deadline = Date.now() + WAIT_LIMIT_MS; (await stack.stats()).proxies.cosmos.unavailable === 0; await delay(50)) {
        if (Date.now() > deadline) throw new Error(`no research catalog write was attempted within ${WAIT_LIMIT_MS} ms\n${stack.problems()}`);
      }
      const during = await snapshot(stack);
      expect(during.researchBlobs.size).toBe(1);

      // The catalog writes keep failing until every event settled: the create event's next
      // attempt starts after the deletion and finds the source gone.
      await deleteAll(stack.info.storageConnectionString, container, [name], 10_000);
      await stack.idle(IDLE_TIMEOUT_MS);
      await stack.plan('cosmos', null);

      const after = await snapshot(stack);
      console.log(`faults instance write failing, then the source deleted: research copies left ${after.researchBlobs.size}, index ${after.index.get(name)?.status ?? 'no record'}`);
      expect({ landing: after.landing, researchCopies: [...after.researchBlobs.keys()], catalogDocuments: after.catalog.size }).toEqual({
        landing: [],
        researchCopies: [],
        catalogDocuments: 0,
      });
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it('given Azurite stopped mid-burst and restarted with its data, then no file is lost and the catalog equals the clean run', async () => {
    let outage: Promise<void> | undefined;
    let uploadedAtStop = 0;
    let processedAtStop = 0;
    const run = await runScenario('azurite restarted', {
      onUploaded(stack, done) {
        if (done !== Math.floor(FILES.size / 2)) return;
        uploadedAtStop = done;
        outage = (async () => {
          const { events } = await stack.stats();
          processedAtStop = events.delivered + events.deadLettered;
          await stack.command({ command: 'stopAzurite' });
          await delay(OUTAGE_MS);
          await stack.command({ command: 'startAzurite' });
        })();
      },
      async afterUploads() {
        await outage;
      },
      recover: () => Promise.resolve(`stopped after ${uploadedAtStop} uploads and ${processedAtStop} events processed, down ${OUTAGE_MS} ms`),
    });
    expect(outage).toBeDefined();
    expectSameAsClean(run);
  }, 150_000);

  it('given the answers to a share of blob and Cosmos writes lost after the writes took effect, then no file is lost and the catalog equals the clean run', async () => {
    const run = await runScenario('lost write responses', {
      async setup(stack) {
        await stack.plan('blob', { seed: 5, rules: [{ action: { kind: 'dropResponse' }, probability: 0.1, methods: ['PUT', 'DELETE'] }] });
        await stack.plan('cosmos', { seed: 6, rules: [{ action: { kind: 'dropResponse' }, probability: 0.1, methods: ['POST', 'PUT', 'DELETE'] }] });
      },
    });
    expectSameAsClean(run);
    expect(run.stats.proxies.blob.responsesDropped).toBeGreaterThan(0);
    expect(run.stats.proxies.cosmos.responsesDropped).toBeGreaterThan(0);
  }, 150_000);

  it('given slow storage and a slow Cosmos DB server, then no file is lost and the catalog equals the clean run', async () => {
    const run = await runScenario('slow services', {
      async setup(stack) {
        await stack.plan('blob', { seed: 3, rules: [{ action: { kind: 'latency', minMs: 20, maxMs: 150 } }] });
        await stack.plan('cosmos', { seed: 4, rules: [{ action: { kind: 'latency', minMs: 10, maxMs: 100 } }] });
      },
    });
    expectSameAsClean(run);
    expect(run.stats.proxies.blob.delayed).toBeGreaterThan(0);
    expect(run.stats.proxies.cosmos.delayed).toBeGreaterThan(0);
  }, 150_000);
});
