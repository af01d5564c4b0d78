import { createHash, Hash } from 'node:crypto';

import { ErrorCodes, PipelineError } from '../errors';

/**
 * What a ByteReader hands every byte it consumes to: SHA-256 here on the calling thread
 * (`InlineSha256`), or on a worker thread (shared/ingest/chunkHasher.ts).
 */
export interface ChunkHasher {
  /** Adds the chunk's bytes. A chunk in shared memory must not change until `settled()` resolves. */
  update(chunk: Buffer): void;
  /** A promise while too many bytes wait to be hashed (the caller should wait before reading more); otherwise undefined. */
  ready(): Promise<void> | undefined;
  /** Resolves once every byte passed before the call is hashed. */
  settled(): Promise<void>;
  /**
   * The hex digest of everything passed. The hasher cannot be used afterwards. Rejects with
   * PipelineError SERVICE_UNAVAILABLE (transient) when the hashing thread failed meanwhile;
   * `ready()` and `settled()` do the same.
   */
  digest(): Promise<string>;
  /** Gives up without a digest (frees what the hasher holds). */
  abort?(): void;
}

/**
 * The errors of a source that ends early, `missing` bytes before the end of what it declares.
 * Reads by range meet the same ends without an error (a range past the end is cut short): they
 * throw these too, so that a file ends the same way whichever way it was read.
 */
export function endsInsideElement(missing: number): PipelineError {
  return new PipelineError(ErrorCodes.DICOM_TRUNCATED, `file ends ${missing} bytes before the end of an element`);
}

export function endsInsidePixelData(missing: number): PipelineError {
  return new PipelineError(ErrorCodes.DICOM_TRUNCATED, `file ends ${missing} bytes before the end of the pixel data`);
}

/** SHA-256 on the calling thread. */
export class InlineSha256 implements ChunkHasher {
  private readonly hash: Hash = createHash('sha256');

  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }

  ready(): undefined {
    return undefined;
  }

  settled(): Promise<void> {
    return Promise.resolve();
  }

  digest(): Promise<string> {
    return Promise.resolve(this.hash.digest('hex'));
  }
}

/**
 * Pull-based reader over a stream of chunks (a Node Readable, a blob download, a file).
 * Holds only what the caller asked for plus one chunk, so memory does not grow with the
 * size of what flows through `pipe`. Optionally hashes every byte it consumes.
 */
export class ByteReader {
  private iterator: AsyncIterator<Uint8Array>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private consumed = 0;
  private readonly hash?: ChunkHasher;
  private hashTaken = false;

  /** `sha256: true` hashes on this thread; `hasher` takes any ChunkHasher (shared/ingest/chunkHasher.ts has one on a worker thread). */
  constructor(source: AsyncIterable<Uint8Array>, options: { sha256?: boolean; hasher?: ChunkHasher } = {}) {
    this.iterator = source[Symbol.asyncIterator]();
    this.hash = options.hasher ?? (options.sha256 ? new InlineSha256() : undefined);
  }

  /** Bytes handed out so far (read, skipped or piped). */
  get position(): number {
    return this.consumed;
  }

  /** Bytes held in memory now. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    // An off-thread hash that has fallen behind holds the reading back, so memory stays bounded.
    const behind = this.hash?.ready();
    if (behind) await behind;
    const next = await this.iterator.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  /** Buffers at least n bytes if the source has them; returns how many are buffered. */
  async fill(n: number): Promise<number> {
    while (this.buffered < n && (await this.pull()));
    return this.buffered;
  }

  /** True once the source is exhausted and everything buffered was consumed. */
  async atEnd(): Promise<boolean> {
    return (await this.fill(1)) === 0;
  }

  /** The buffered bytes as one contiguous Buffer, without consuming them. */
  peekAll(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Returns up to n buffered bytes without consuming them (fills first). */
  async peek(n: number): Promise<Buffer> {
    await this.fill(n);
    const all = this.peekAll();
    return all.subarray(0, Math.min(n, all.length));
  }

  /** Consumes exactly n bytes; throws DICOM_TRUNCATED when the source ends first. */
  async read(n: number): Promise<Buffer> {
    if ((await this.fill(n)) < n) {
      throw endsInsideElement(n - this.buffered);
    }
    const all = this.peekAll();
    const out = Buffer.from(all.subarray(0, n));
    this.consume(n);
    return out;
  }

  /** Drops n buffered bytes (they must be buffered). */
  consume(n: number): void {
    let left = n;
    while (left > 0) {
      const first = this.chunks[0];
      if (!first) throw new Error('consume past buffered data');
      if (first.length <= left) {
        this.hash?.update(first);
        this.chunks.shift();
        left -= first.length;
      } else {
        this.hash?.update(first.subarray(0, left));
        this.chunks[0] = first.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
    this.consumed += n;
  }

  /** Consumes exactly n bytes as a sequence of chunks; throws DICOM_TRUNCATED when the source ends first. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.pull())) {
        throw endsInsidePixelData(left);
      }
      const first = this.chunks[0];
      if (!first) continue;
      const take = Math.min(left, first.length);
      const part = first.subarray(0, take);
      this.consume(take);
      left -= take;
      yield part;
    }
  }

  /** Consumes everything left (so that the hash covers the whole source). Returns the byte count. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      if (this.buffered === 0 && !(await this.pull())) return total;
      const first = this.chunks[0];
      if (!first) continue;
      this.consume(first.length);
      total += first.length;
    }
  }

  /** The rest of the source as an async iterable (for an inflater); consumes as it goes. */
  async *rest(): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.buffered === 0 && !(await this.pull())) return;
      const first = this.chunks[0];
      if (!first) continue;
      this.consume(first.length);
      yield first;
    }
  }

  /** SHA-256 (hex) of every byte consumed so far; call once, after draining for the whole source. */
  async sha256(): Promise<string | undefined> {
    if (!this.hash) return undefined;
    this.hashTaken = true;
    return this.hash.digest();
  }

  /** Resolves once every byte consumed so far is hashed (memory passed to the hasher may then be reused). */
  hashed(): Promise<void> {
    return this.hash?.settled() ?? Promise.resolve();
  }

  /**
   * Lets go of the source while the caller waits on something else (a file queued for OCR):
   * the bytes buffered beyond `position` are dropped and the source is closed (a response left
   * half read releases its connection). Reading is refused until `resume`. The hash so far is kept.
   */
  async suspend(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    this.ended = true;
    await this.iterator.return?.();
  }

  /**
   * Carries on after `suspend` from `source`, which must yield the same bytes as the first
   * source from `position` on (a ranged read of the same version): the hash stays the source's.
   */
  resume(source: AsyncIterable<Uint8Array>): void {
    this.iterator = source[Symbol.asyncIterator]();
    this.ended = false;
  }

  /**
   * Ends the reading: gives up the hash if sha256() was not taken (a failed ingestion) and
   * closes the source, so that a response left half read releases its connection.
   */
  async close(): Promise<void> {
    if (this.hash && !this.hashTaken) {
      this.hashTaken = true;
      this.hash.abort?.();
    }
    this.chunks = [];
    this.buffered = 0;
    this.ended = true;
    await this.iterator.return?.();
  }
}

/** A ByteReader over one in-memory buffer. */
export function bufferReader(buf: Uint8Array, options: { sha256?: boolean; hasher?: ChunkHasher } = {}): ByteReader {
  async function* one(): AsyncGenerator<Uint8Array> {
    yield buf;
  }
  return new ByteReader(one(), options);
}
