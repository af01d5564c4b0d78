/**
 * OCR's own bound (issue 17), apart from the ingestion slots (Limiter): files are OCR'd
 * `running` at a time (one per engine worker: a file's frames go one after the other, so that
 * keeps every worker busy and holds the sampled frames of `running` files only), at most
 * `maxQueued` more wait for a place, each for at most `maxWaitMs`. A file beyond the queue, or
 * one that waited too long, is refused with OCR_BUSY: a transient error, so the ingestion
 * rethrows it and Event Grid delivers the event again later (its retry schedule: 10 s, 30 s,
 * 1 min, 5 min, ...), and the invocation ends well within functionTimeout whatever the backlog.
 *
 * A waiting file holds its header only: no ingestion slot, no source bytes, no open response
 * (see ingestSourceFile). Event Grid delivers an event again when the first delivery is not
 * answered within 30 s, which a clip in OCR easily takes: a job for the same source version
 * joins the one queued or running, rather than OCR'ing the file twice.
 */
import { ErrorCodes, PipelineError } from '../errors';
import { SingleFlight } from '../singleFlight';

export interface OcrQueueOptions {
  /** Files in OCR at once (OCR_WORKERS). */
  running: number;
  /** Files waiting for a place at most (OCR_QUEUE_MAX); 0: none wait. */
  maxQueued: number;
  /** Longest a file waits for a place, in ms (OCR_WAIT_MAX_MS). */
  maxWaitMs: number;
}

interface Waiter {
  admit(): void;
}

export class OcrQueue {
  private active = 0;
  private readonly waiting: Waiter[] = [];
  private readonly inFlight = new SingleFlight<unknown>();

  constructor(private readonly options: OcrQueueOptions) {
    if (!Number.isInteger(options.running) || options.running < 1) throw new RangeError('running must be a positive integer');
    if (!Number.isInteger(options.maxQueued) || options.maxQueued < 0) throw new RangeError('maxQueued must be a non-negative integer');
    if (!(options.maxWaitMs > 0)) throw new RangeError('maxWaitMs must be positive');
  }

  /**
   * Runs `job` (the OCR of one source version, named by `key`) once a place is free, or joins
   * the job already queued or running under the same key. Rejects with OCR_BUSY (transient)
   * when the queue is full or the wait too long; otherwise as the job does.
   */
  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    return this.inFlight.run(key, () => this.admitted(job)) as Promise<T>;
  }

  private async admitted<T>(job: () => Promise<T>): Promise<T> {
    if (this.active >= this.options.running) await this.place();
    this.active++;
    try {
      return await job();
    } finally {
      this.active--;
      this.waiting.shift()?.admit();
    }
  }

  private place(): Promise<void> {
    const { maxQueued, maxWaitMs } = this.options;
    if (this.waiting.length >= maxQueued) return Promise.reject(new PipelineError(ErrorCodes.OCR_BUSY, `the OCR queue is full (${maxQueued} files waiting); retry later`));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        admit: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new PipelineError(ErrorCodes.OCR_BUSY, `no OCR worker free within ${Math.round(maxWaitMs / 1000)} s; retry later`));
      }, maxWaitMs);
      this.waiting.push(waiter);
    });
  }

  /** Files in OCR now. */
  get inOcr(): number {
    return this.active;
  }

  /** Files waiting for a place now. */
  get queued(): number {
    return this.waiting.length;
  }
}
