/**
 * SHA-256 of a source file's chunks on a worker thread, and the choice between it and the
 * calling thread (the ingestion records the hash of every source it reads).
 *
 * Hashing costs about 0.7 ms per MB on the thread that does it (1.4-1.6 GB/s with the CPU's SHA
 * instructions): for a large source it is the largest single piece of work of an ingestion.
 * The off-thread hasher lets a second core do it while the event loop parses, writes and
 * serves other ingestions. Chunks in shared memory are hashed where they lie; other chunks are
 * copied into staging buffers that travel to the worker and back.
 */
import { Worker } from 'node:worker_threads';

import { ChunkHasher, InlineSha256 } from '../dicom/byteReader';
import { ErrorCodes, PipelineError } from '../errors';

/** Bytes copied per message for chunks that are not in shared memory. */
const STAGE_BYTES = 1024 * 1024;
/** Bytes that may wait for the worker before `ready()` asks the reader to wait. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;
/** Staging buffers kept for reuse (a fresh one costs a page fault per 4 KiB when first written). */
const KEEP_STAGES = 4;

interface UpdateMessage {
  id: number;
  op: 'update';
  buffer: ArrayBuffer | SharedArrayBuffer;
  offset: number;
  length: number;
  /** True when the buffer was transferred and comes back with the answer. */
  staged: boolean;
}
interface DigestMessage {
  id: number;
  op: 'digest' | 'abort';
}
interface Answer {
  id: number;
  length?: number;
  buffer?: ArrayBuffer;
  digest?: string;
}

// The worker's program, given as source so that it runs the same from the compiled build and
// from the TypeScript tests. One hash per stream id, updated in the order the messages come.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  let h = hashes.get(m.id);
  if (m.op === 'abort') { hashes.delete(m.id); return; }
  if (!h) { h = createHash('sha256'); hashes.set(m.id, h); }
  if (m.op === 'update') {
    h.update(new Uint8Array(m.buffer, m.offset, m.length));
    if (m.staged) parentPort.postMessage({ id: m.id, length: m.length, buffer: m.buffer }, [m.buffer]);
    else parentPort.postMessage({ id: m.id, length: m.length });
  } else {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, digest: h.digest('hex') });
  }
});
`;

interface StreamHandle {
  answer(a: Answer): void;
  fail(err: Error): void;
}

/** The process's hashing worker, started on first use and kept while streams use it. */
class HashWorker {
  private readonly worker: Worker;
  private readonly streams = new Map<number, StreamHandle>();
  private nextId = 1;
  private failure: Error | undefined;
  readonly stages: ArrayBuffer[] = [];

  constructor(onGone: () => void) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on('message', (a: Answer) => this.streams.get(a.id)?.answer(a));
    const fail = (err: Error) => {
      this.failure ??= err;
      onGone();
      for (const s of this.streams.values()) s.fail(this.failure);
      this.streams.clear();
    };
    // Not the file's fault: a transient error, so that the event is delivered again.
    this.worker.on('error', (err) => fail(new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `the hashing thread failed: ${err.message}`)));
    this.worker.on('exit', (code) => fail(new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `the hashing thread exited (code ${code})`)));
  }

  open(handle: StreamHandle): number {
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    // The worker holds the process open only while a stream waits on it.
    if (this.streams.size === 0) this.worker.ref();
    this.streams.set(id, handle);
    return id;
  }

  close(id: number): void {
    this.streams.delete(id);
    if (this.streams.size === 0) this.worker.unref();
  }

  post(message: UpdateMessage | DigestMessage, transfer?: ArrayBuffer): void {
    this.worker.postMessage(message, transfer ? [transfer] : []);
  }

  /** Stops the thread (tests; a function host never needs to). */
  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

let sharedWorker: HashWorker | undefined;

function hashWorker(): HashWorker {
  if (!sharedWorker) {
    const started: HashWorker = new HashWorker(() => {
      // Only this thread's own end clears it: a stopped thread that reports its exit late must
      // not drop the one started after it.
      if (sharedWorker === started) sharedWorker = undefined;
    });
    sharedWorker = started;
  }
  return sharedWorker;
}

/** Stops the shared hashing thread if one runs (for tests); the next hasher starts a new one. */
export async function stopHashWorker(): Promise<void> {
  const w = sharedWorker;
  sharedWorker = undefined;
  await w?.terminate();
}

/** SHA-256 on the process's hashing thread. */
export class OffThreadSha256 implements ChunkHasher {
  private readonly worker = hashWorker();
  private readonly id: number;
  private stage: Uint8Array | undefined;
  private staged = 0;
  /** Contiguous bytes of one shared buffer not sent yet. */
  private shared: { buffer: SharedArrayBuffer; offset: number; length: number } | undefined;
  /** Bytes posted, and bytes the worker has answered for (it answers in order). */
  private posted = 0;
  private answered = 0;
  private failure: Error | undefined;
  private waiters: { when: () => boolean; resolve: () => void; reject: (e: Error) => void }[] = [];
  private digestWaiter: { resolve: (d: string) => void; reject: (e: Error) => void } | undefined;
  private done = false;

  constructor() {
    this.id = this.worker.open({
      answer: (a) => this.answer(a),
      fail: (err) => this.fail(err),
    });
  }

  update(chunk: Buffer): void {
    if (this.done) throw new Error('hasher already finished');
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    if (chunk.buffer instanceof SharedArrayBuffer) {
      // A parser consumes a header element by element: contiguous pieces of one buffer make
      // one message (thousands of elements would otherwise be thousands of messages).
      const run = this.shared;
      if (run && run.buffer === chunk.buffer && run.offset + run.length === chunk.byteOffset) {
        run.length += chunk.length;
        if (run.length >= STAGE_BYTES) this.flush();
        return;
      }
      this.flush();
      this.shared = { buffer: chunk.buffer, offset: chunk.byteOffset, length: chunk.length };
      return;
    }
    this.flushShared();
    for (let at = 0; at < chunk.length; ) {
      this.stage ??= new Uint8Array(this.worker.stages.pop() ?? new ArrayBuffer(STAGE_BYTES));
      const n = Math.min(chunk.length - at, STAGE_BYTES - this.staged);
      this.stage.set(chunk.subarray(at, at + n), this.staged);
      this.staged += n;
      at += n;
      if (this.staged === STAGE_BYTES) this.flush();
    }
  }

  ready(): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    // Asked before each read of the source: what was consumed so far goes to the thread now.
    this.flush();
    return this.posted - this.answered > MAX_PENDING_BYTES ? this.until(() => this.posted - this.answered <= MAX_PENDING_BYTES) : undefined;
  }

  settled(): Promise<void> {
    this.flush();
    const through = this.posted;
    return this.until(() => this.answered >= through);
  }

  async digest(): Promise<string> {
    if (this.done) throw new Error('hasher already finished');
    this.flush();
    this.done = true;
    if (this.failure) throw this.failure;
    const result = new Promise<string>((resolve, reject) => (this.digestWaiter = { resolve, reject }));
    this.worker.post({ id: this.id, op: 'digest' });
    return result;
  }

  /** Gives up the stream (its result is not needed). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.worker.post({ id: this.id, op: 'abort' });
    this.worker.close(this.id);
  }

  private flushShared(): void {
    const run = this.shared;
    if (!run) return;
    this.shared = undefined;
    this.send({ id: this.id, op: 'update', buffer: run.buffer, offset: run.offset, length: run.length, staged: false });
  }

  /** Sends whatever waits here, in order. */
  private flush(): void {
    this.flushShared();
    if (!this.stage || this.staged === 0) return;
    const buffer = this.stage.buffer as ArrayBuffer;
    this.send({ id: this.id, op: 'update', buffer, offset: 0, length: this.staged, staged: true }, buffer);
    this.stage = undefined;
    this.staged = 0;
  }

  private send(message: UpdateMessage, transfer?: ArrayBuffer): void {
    this.posted += message.length;
    this.worker.post(message, transfer);
  }

  private answer(a: Answer): void {
    if (a.digest !== undefined) {
      this.worker.close(this.id);
      this.digestWaiter?.resolve(a.digest);
      this.digestWaiter = undefined;
      return;
    }
    this.answered += a.length ?? 0;
    if (a.buffer && this.worker.stages.length < KEEP_STAGES) this.worker.stages.push(a.buffer);
    this.waiters = this.waiters.filter((w) => {
      if (!w.when()) return true;
      w.resolve();
      return false;
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    this.digestWaiter?.reject(err);
    this.digestWaiter = undefined;
  }

  private until(when: () => boolean): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (when()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ when, resolve, reject }));
  }
}

/** Sources at least this large are hashed on the hashing thread (smaller ones cost more to send than to hash). */
export const OFF_THREAD_HASH_MIN_BYTES = 8 * 1024 * 1024;

/** The hasher for a source of this size. */
export function sha256For(size: number): ChunkHasher {
  if (size < OFF_THREAD_HASH_MIN_BYTES) return new InlineSha256();
  try {
    return new OffThreadSha256();
  } catch {
    // The thread could not start or has failed: hashing here is slower, never wrong.
    return new InlineSha256();
  }
}
