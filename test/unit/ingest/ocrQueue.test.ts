/**
 * OCR's own bound (issue 17): a file waiting for OCR, or in it, holds no ingestion slot and no
 * source bytes, so the files that need no OCR go on; the OCR queue is bounded in length and in
 * waiting time (OCR_BUSY, transient: Event Grid retries), and a redelivered event joins the OCR
 * already under way. The detector is a fake slow one behind the TextDetector interface: it
 * answers only once the test lets it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { encodeAsciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import type { GrayImage, TextBox, TextDetector } from '../../../shared/dicom/pixels/textDetector';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, isPipelineError } from '../../../shared/errors';
import { EventDeps, EventOutcome, handleIngestEvent } from '../../../shared/ingest/handleEvent';
import { Limiter } from '../../../shared/ingest/limiter';
import { OcrQueue } from '../../../shared/ingest/ocrQueue';
import { SeriesPixelChecks } from '../../../shared/ingest/seriesCheck';
import { SingleFlight } from '../../../shared/singleFlight';
import { CapturingTelemetry, deferred, MemoryWorld,memoryWorld } from '../fakes';
import { encodeWithDataset } from './coreHelpers';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';

/** A slow engine: every call waits until the test opens the gate; it finds no text. */
class GatedDetector implements TextDetector {
  calls = 0;
  private readonly gate = deferred();
  readonly started = deferred();
  async detect(_image: GrayImage): Promise<TextBox[]> {
    this.calls++;
    this.started.resolve();
    await this.gate.promise;
    return [];
  }
  open(): void {
    this.gate.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** `count` copies of a fixture, each its own SOP instance (so that none supersedes another). */
async function copies(fixture: string, count: number, tag: string): Promise<Buffer[]> {
  const src = await parseDicomBuffer(readFileSync(join(FIXTURES, fixture)));
  return Array.from({ length: count }, (_, i) => {
    const ds = new Map(src.dataset);
    const uid = `1.2.826.0.1.3680043.10.1234.${tag}.${i + 1}`;
    ds.set(Tags.SOPInstanceUID, { tag: Tags.SOPInstanceUID, vr: 'UI', value: encodeAsciiValue(uid, 'UI') });
    return encodeWithDataset(src, ds, uid);
  });
}

const blobCreated = (name: string, id = name) => ({ id: `evt-${id}`, eventType: 'Microsoft.Storage.BlobCreated', data: { url: `${ENDPOINT}/anq-replica/${name}` } });

/** Source streams of each blob being read now: started and neither finished nor closed. */
function trackLiveStreams(w: MemoryWorld): Map<string, number> {
  const live = new Map<string, number>();
  const tracked = (name: string, inner: AsyncIterable<Uint8Array>) =>
    (async function* () {
      live.set(name, (live.get(name) ?? 0) + 1);
      try {
        yield* inner;
      } finally {
        live.set(name, (live.get(name) ?? 0) - 1);
      }
    })();
  const open = w.source.open.bind(w.source);
  const readRange = w.source.readRange.bind(w.source);
  w.source.open = async (container, name, count) => {
    const o = await open(container, name, count);
    return o && { ...o, head: tracked(name, o.head) };
  };
  w.source.readRange = async (container, name, etag, offset, count) => tracked(name, await readRange(container, name, etag, offset, count));
  return live;
}

function world(detector: TextDetector, ocrQueue: OcrQueue, slots: number, seriesChecks?: SeriesPixelChecks): { w: MemoryWorld; deps: EventDeps; limiter: Limiter } {
  const w = memoryWorld(defaultProfile());
  w.deps.burnedIn = { mode: 'redact', ocr: { detector, sampleFrames: 5, ...(seriesChecks ? { seriesChecks } : {}) } };
  w.deps.ocrQueue = ocrQueue;
  const limiter = new Limiter(slots);
  return { w, limiter, deps: { sourceBlobEndpoints: [ENDPOINT], settings: { sourceContainers: ['anq-replica'] }, telemetry: new CapturingTelemetry(), ingestions: limiter, deliveries: new SingleFlight(), ingestDeps: () => w.deps } };
}

/** The promise's value, or a rejection saying what was still waiting after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} still waiting after ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const US = 'deid/ultrasounds__GREYSCALE_IMAGE.dcm';
const CT = 'dicom-test-files/dcmqi__segmentations__23x38x3__image__IMG0001.dcm';

describe('given every OCR worker busy on slow ultrasound files', () => {
  it('then a burst of CT files still completes promptly: the files queued for OCR hold no ingestion slot and no source stream', async () => {
    const detector = new GatedDetector();
    const queue = new OcrQueue({ running: 1, maxQueued: 8, maxWaitMs: 60_000 });
    // Two ingestion slots, and two ultrasound files: before, both slots stayed taken by files waiting on OCR.
    const { w, deps, limiter } = world(detector, queue, 2);
    const live = trackLiveStreams(w);
    const us = await copies(US, 2, '1');
    const ct = await copies(CT, 6, '2');
    us.forEach((b, i) => w.source.put('anq-replica', `us-${i}.dcm`, b));
    ct.forEach((b, i) => w.source.put('anq-replica', `ct-${i}.dcm`, b));

    const usDone = us.map((_, i) => handleIngestEvent(blobCreated(`us-${i}.dcm`), deps, w.log));
    await within(detector.started.promise, 20_000, 'the first ultrasound file');
    const ctDone = Promise.all(ct.map((_, i) => handleIngestEvent(blobCreated(`ct-${i}.dcm`), deps, w.log)));
    const outcomes = await within(ctDone, 20_000, 'the CT burst');

    expect(outcomes.map((o) => o.status)).toEqual(ct.map(() => 'cataloged'));
    // The OCR is still blocked: one file in it, the other waiting, neither in a slot or reading its source.
    expect(detector.calls).toBe(1);
    expect([queue.inOcr, queue.queued]).toEqual([1, 1]);
    expect(limiter.inUse).toBe(0);
    expect([live.get('us-0.dcm'), live.get('us-1.dcm')]).toEqual([0, 0]);

    detector.open();
    const usOutcomes = await within(Promise.all(usDone), 20_000, 'the ultrasound files');
    expect(usOutcomes.map((o: EventOutcome) => o.status)).toEqual(['cataloged', 'cataloged']);
    // Read on after OCR from where the header ended: each research copy is whole.
    for (const o of usOutcomes) {
      const research = 'research' in o ? o.research : undefined;
      const copy = [...w.research.blobs.values()].find((b) => research && b.data.includes(Buffer.from(research.sopInstanceUid)));
      expect(copy && (await parseDicomBuffer(copy.data)).pixelValue?.length).toBe(1024 * 768);
    }
    expect(limiter.inUse).toBe(0);
    expect([...live.values()].every((n) => n === 0)).toBe(true);
  }, 90_000);

  it('then a file beyond OCR_QUEUE_MAX is refused with OCR_BUSY, a transient error (Event Grid retries it), and nothing is recorded for it', async () => {
    const detector = new GatedDetector();
    const queue = new OcrQueue({ running: 1, maxQueued: 0, maxWaitMs: 60_000 });
    const { w, deps, limiter } = world(detector, queue, 4);
    const us = await copies(US, 2, '3');
    us.forEach((b, i) => w.source.put('anq-replica', `us-${i}.dcm`, b));
    const first = handleIngestEvent(blobCreated('us-0.dcm'), deps, w.log);
    await within(detector.started.promise, 20_000, 'the first ultrasound file');
    const refused = await handleIngestEvent(blobCreated('us-1.dcm'), deps, w.log).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isPipelineError(refused, ErrorCodes.OCR_BUSY) && refused.transient).toBe(true);
    expect(w.telemetry.records).toContainEqual({ kind: 'failure', code: 'OCR_BUSY', operation: 'ingest' });
    expect(limiter.inUse).toBe(0);
    detector.open();
    expect((await first).status).toBe('cataloged');
    // Only the first has a record: the refused one is left to the redelivery.
    expect(w.index.all().map((d) => d.status)).toEqual(['cataloged']);
  }, 60_000);

  it('then a redelivered event for a file already queued for OCR joins that OCR: the frames are OCR\'d once', async () => {
    const detector = new GatedDetector();
    const queue = new OcrQueue({ running: 1, maxQueued: 8, maxWaitMs: 60_000 });
    const { w, deps } = world(detector, queue, 4);
    const [us] = await copies(US, 1, '4');
    w.source.put('anq-replica', 'us.dcm', us!);
    const first = handleIngestEvent(blobCreated('us.dcm', 'a'), deps, w.log);
    await within(detector.started.promise, 20_000, 'the ultrasound file');
    const again = handleIngestEvent(blobCreated('us.dcm', 'b'), deps, w.log);
    // The redelivery reaches the OCR stage (its header read) before the engine answers.
    await new Promise((r) => setTimeout(r, 500));
    detector.open();
    const statuses = (await Promise.all([first, again])).map((o) => o.status);
    expect(statuses).toContain('cataloged');
    expect(w.index.all().map((d) => d.status)).toEqual(['cataloged']);
    // One frame with no text: one detection pass (nothing to black out, so no gate pass), not two.
    expect(detector.calls).toBe(1);
  }, 60_000);
});

describe('given a burst of one unflagged CT series under the redact policy with the series check', () => {
  it('then one file is OCR\'d for the series while the others wait outside their slots, and all are cataloged once it reads clean; the next burst costs no OCR', async () => {
    const detector = new GatedDetector();
    const queue = new OcrQueue({ running: 1, maxQueued: 8, maxWaitMs: 60_000 });
    const checks = new SeriesPixelChecks();
    // Two slots for six files: were the waiting files to keep their slots, the sample could not take one back after its OCR.
    const { w, deps, limiter } = world(detector, queue, 2, checks);
    const live = trackLiveStreams(w);
    const ct = await copies(CT, 9, '5');
    ct.forEach((b, i) => w.source.put('anq-replica', `ct-${i}.dcm`, b));
    const burst = Promise.all(ct.slice(0, 6).map((_, i) => handleIngestEvent(blobCreated(`ct-${i}.dcm`), deps, w.log)));
    await within(detector.started.promise, 20_000, 'the series\' sample');
    await new Promise((r) => setTimeout(r, 300));
    expect(detector.calls).toBe(1);
    expect(limiter.inUse).toBe(0);
    expect([...live.values()].every((n) => n === 0)).toBe(true);
    expect(w.index.all().filter((d) => d.status === 'cataloged')).toEqual([]);
    detector.open();
    const outcomes = await within(burst, 20_000, 'the burst');
    expect(outcomes.map((o) => o.status)).toEqual(ct.slice(0, 6).map(() => 'cataloged'));
    const afterSample = detector.calls;
    const rest = await within(Promise.all(ct.slice(6).map((_, i) => handleIngestEvent(blobCreated(`ct-${i + 6}.dcm`), deps, w.log))), 20_000, 'the next files');
    expect(rest.map((o) => o.status)).toEqual(['cataloged', 'cataloged', 'cataloged']);
    expect(detector.calls).toBe(afterSample);
    // A clean sample leaves every copy unmarked, as the series' trusted ones.
    expect(w.index.all().filter((d) => d.deidentification?.pixelsCleaned)).toEqual([]);
    expect(checks.size).toBe(1);
  }, 60_000);
});

describe('given an unflagged CT that no decoder here reads (12-bit JPEG), on the OCR queue with the series check', () => {
  it('then it is cataloged whole: the source let go for OCR is read on after the OCR gives up on its pixels', async () => {
    const detector = new GatedDetector();
    detector.open();
    const { w, deps } = world(detector, new OcrQueue({ running: 1, maxQueued: 8, maxWaitMs: 60_000 }), 2, new SeriesPixelChecks());
    const source = readFileSync(join(FIXTURES, 'ms-anonymizer/samples__I341.dcm'));
    w.source.put('anq-replica', 'ct-jpeg12.dcm', source);
    const outcome = await handleIngestEvent(blobCreated('ct-jpeg12.dcm'), deps, w.log);
    expect(outcome.status).toBe('cataloged');
    expect(detector.calls).toBe(0);
    const research = 'research' in outcome ? outcome.research : undefined;
    const copy = [...w.research.blobs.values()].find((b) => research && b.data.includes(Buffer.from(research.sopInstanceUid)));
    expect((await parseDicomBuffer(copy?.data ?? Buffer.alloc(0))).pixelData).toBeDefined();
  }, 60_000);
});

describe('SeriesPixelChecks', () => {
  it('gives the first caller the claim, makes the others wait for its verdict, and keeps text once seen', async () => {
    const checks = new SeriesPixelChecks();
    const key = SeriesPixelChecks.keyOf('1.2.3', 512, 512);
    expect(key).not.toContain('1.2.3');
    const first = await checks.lookup(key);
    expect(first.verdict).toBeUndefined();
    const second = checks.lookup(key);
    let waited = false;
    void second.then(() => (waited = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(waited).toBe(false);
    if (first.verdict === undefined) first.settle('text');
    expect(await second).toEqual({ verdict: 'text' });
    // Another size in the same series is checked on its own.
    expect((await checks.lookup(SeriesPixelChecks.keyOf('1.2.3', 256, 256))).verdict).toBeUndefined();
  });

  it('hands the claim to the next waiter when a check ends without a verdict, and forgets the oldest series beyond its bound', async () => {
    const checks = new SeriesPixelChecks(2);
    const first = await checks.lookup('a');
    const next = checks.lookup('a');
    if (first.verdict === undefined) {
      first.settle(undefined);
      // Settling twice changes nothing.
      first.settle('text');
    }
    const claim = await next;
    expect(claim.verdict).toBeUndefined();
    if (claim.verdict === undefined) claim.settle('clean');
    expect(await checks.lookup('a')).toEqual({ verdict: 'clean' });
    for (const k of ['b', 'c']) {
      const l = await checks.lookup(k);
      if (l.verdict === undefined) l.settle('clean');
    }
    expect(checks.size).toBe(2);
    expect((await checks.lookup('a')).verdict).toBeUndefined();
  });
});

describe('OcrQueue', () => {
  it('given more jobs than places, then `running` run at once, the rest in order, and a job that waits past maxWaitMs is refused with OCR_BUSY', async () => {
    const queue = new OcrQueue({ running: 2, maxQueued: 2, maxWaitMs: 200 });
    const gate = deferred();
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const job = (i: number) => async () => {
      running++;
      peak = Math.max(peak, running);
      await gate.promise;
      order.push(i);
      running--;
      return i;
    };
    const jobs = [0, 1, 2, 3].map((i) => queue.run(`k${i}`, job(i)).catch((e: unknown) => e));
    // A fifth job finds the queue full: refused at once.
    const full = await queue.run('k4', job(4)).catch((e: unknown) => e);
    expect(isPipelineError(full, ErrorCodes.OCR_BUSY) && full.transient).toBe(true);
    expect([queue.inOcr, queue.queued]).toEqual([2, 2]);
    const late = await Promise.all([jobs[2], jobs[3]]);
    expect(late.every((e) => isPipelineError(e, ErrorCodes.OCR_BUSY))).toBe(true);
    expect(queue.queued).toBe(0);
    gate.resolve();
    expect(await Promise.all([jobs[0], jobs[1]])).toEqual([0, 1]);
    expect(peak).toBe(2);
    expect(queue.inOcr).toBe(0);
  });

  it('given a job under a key already queued, then it shares that job\'s result instead of running again', async () => {
    const queue = new OcrQueue({ running: 1, maxQueued: 2, maxWaitMs: 10_000 });
    let runs = 0;
    const job = async () => ++runs;
    expect(await Promise.all([queue.run('same', job), queue.run('same', job), queue.run('other', job)])).toEqual([1, 1, 2]);
    // Once done, the key is free again: a later ingestion of the same version OCRs anew.
    expect(await queue.run('same', job)).toBe(3);
  });
});

describe('Limiter outside the slot', () => {
  it('given a task that waits outside its slot, then the next task runs meanwhile, and the slot is taken again ahead of tasks not yet started', async () => {
    const limiter = new Limiter(1);
    const wait = deferred();
    const order: string[] = [];
    const other = deferred();
    const first = limiter.run(async (_release, outside) => {
      order.push('first: header read');
      await outside(() => wait.promise);
      order.push('first: back in its slot');
    });
    const second = limiter.run(async () => {
      order.push('second: started');
      await other.promise;
      order.push('second: done');
    });
    await new Promise((r) => setImmediate(r));
    const third = limiter.run(async () => void order.push('third: started'));
    wait.resolve();
    await new Promise((r) => setImmediate(r));
    expect(limiter.inUse).toBe(1);
    other.resolve();
    await Promise.all([first, second, third]);
    expect(order).toEqual(['first: header read', 'second: started', 'second: done', 'first: back in its slot', 'third: started']);
    expect(limiter.inUse).toBe(0);
  });
});
