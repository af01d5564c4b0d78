/**
 * What one benchmark child process does. Each mode runs alone in a fresh process so that its
 * peak RSS is its own, and times only the work (not Node's start-up or module loading, which a
 * warm Functions worker has already paid).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { bufferReader, ByteReader } from '../shared/dicom/byteReader';
import type { DeidContext } from '../shared/dicom/deid/engine';
import { defaultProfile } from '../shared/dicom/deid/profile';
import { OffThreadSha256, sha256For } from '../shared/ingest/chunkHasher';
import { prepareDeidentifiedInstance } from '../shared/ingest/deidentifyInstance';
import { ctSliceBytes, multiFrameHeader, writeMultiFrame } from './generate';

/** A fixed bench key: research identifiers made with it mean nothing anywhere else. */
export const BENCH_DEID_KEY = Buffer.from('vna-bench-deid-key-not-for-production-use-0123456789', 'utf8');
/** Files up to this size are read in one request by the ingestion (shared/ingest/ingestSourceFile.ts). */
const SINGLE_READ_MAX = 4 * 1024 * 1024;

async function* oneChunk(buf: Buffer): AsyncGenerator<Uint8Array> {
  yield buf;
}

/** Files the core works on at once (MAX_CONCURRENT_INGESTIONS defaults to 8). */
const CORE_CONCURRENCY = 4;

/** Most slices that go through the core before the clock starts (see runCore). */
const WARM_UP_SLICES = 500;
const WARM_UP_MULTI_FRAME_HEADERS = 10;
/** Multi-frame files of another series through the large-file path first (20 frames: 10.5 MB, hashed off-thread). */
const WARM_UP_LARGE_FILES = 5;
const WARM_UP_LARGE_FRAMES = 20;

/** The function's default MAX_HEADER_BYTES. */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

export interface ChildReport {
  seconds: number;
  files: number;
  bytesIn: number;
  bytesOut: number;
  /** process.resourceUsage().maxRSS, KiB. */
  maxRssKB: number;
  /** CPU time of the process (all threads, user and system) over the measured work. */
  cpuSeconds: number;
  /** Of that, the kernel's work on the process's behalf (system time). */
  systemSeconds: number;
  /** By file index, when the work list asked for a manifest. */
  outputs?: OutputPlace[];
}

/** The report of a measured run: time first, then what the run used and wrote. */
function childReport(work: WorkList, started: bigint, cpuStart: NodeJS.CpuUsage, bytes: { bytesIn: number; bytesOut: number }, outputs: OutputPlace[]): ChildReport {
  return {
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    files: work.files.length,
    ...bytes,
    maxRssKB: process.resourceUsage().maxRSS,
    ...cpuSince(cpuStart),
    ...(work.manifest ? { outputs } : {}),
  };
}

/** CPU time since `start`: all threads, user and system, and system alone. */
function cpuSince(start: NodeJS.CpuUsage): { cpuSeconds: number; systemSeconds: number } {
  const used = process.cpuUsage(start);
  return { cpuSeconds: (used.user + used.system) / 1e6, systemSeconds: used.system / 1e6 };
}

/** The files of one measurement and where their outputs go. */
export interface WorkList {
  files: string[];
  outDir: string;
  /** Report where each file's output went (`ChildReport.outputs`), for the tests. */
  manifest?: boolean;
}

/** Where one file's output is: a file of its own (offset 0), or a place in the joined output. */
export interface OutputPlace {
  file: string;
  offset: number;
  length: number;
}

function outputPath(outDir: string, file: string, index: number): string {
  return path.join(outDir, `${String(index).padStart(5, '0')}-${path.basename(file)}`);
}

/**
 * The outputs of small files one after the other in one file, as `cat` writes its output:
 * creating a file per slice costs this machine's file system about 0.3 ms each (0.3 s of kernel
 * time per 1,000 slices, measured against one file), work that neither `cat` nor the function,
 * which uploads a blob per instance, does.
 */
class JoinedOutput {
  private fd: number | undefined;
  private end = 0;

  constructor(readonly file: string) {}

  /** Writes the chunks after the previous ones; returns where they went. */
  append(chunks: Uint8Array[]): OutputPlace {
    this.fd ??= fs.openSync(this.file, 'w');
    const offset = this.end;
    const length = chunks.reduce((n, c) => n + c.byteLength, 0);
    this.end += length;
    const written = fs.writevSync(this.fd, chunks, offset);
    if (written !== length) throw new Error(`short write: ${written} of ${length} bytes`);
    return { file: this.file, offset, length };
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The joined output of a work list's small files. */
function joinedOutput(outDir: string): JoinedOutput {
  return new JoinedOutput(path.join(outDir, 'small-files.out'));
}

/**
 * Read buffers used again and again. A fresh multi-megabyte buffer costs a page fault per 4 KiB
 * on first touch, and on this VM that costs more than the read itself (measured: 200 MB read into
 * fresh 4 MiB buffers 130-220 ms, into reused ones 16-20 ms). Blob downloads in the function
 * arrive in socket-sized chunks that the allocator recycles; a file source has to do it itself.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(private readonly keep: number) {}

  /** A buffer of at least `size` bytes (contents undefined). */
  take(size: number): Buffer {
    const i = this.free.findIndex((b) => b.length >= size);
    if (i >= 0) return this.free.splice(i, 1)[0] as Buffer;
    return this.allocate(size);
  }

  private allocate(size: number): Buffer {
    // Shared memory: the hashing thread reads a chunk where it lies, without a copy.
    return Buffer.from(new SharedArrayBuffer(Math.max(size, 1 << 20)));
  }

  give(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }

  /** Allocates and touches up to `count` buffers of `size` bytes ahead of use. */
  fill(count: number, size: number): void {
    while (this.free.length < Math.min(count, this.keep)) this.free.push(this.allocate(size).fill(0));
  }
}

/** Pooled read buffers the sink has not finished with, by their memory. */
type Lent = Map<ArrayBufferLike, { buf: Buffer; length: number; written: number }>;

/** Read size of a large file (on the 200 MB file, 1, 2 and 4 MiB took 0.25, 0.23 and 0.27 s). */
const CHUNK = 2 * 1024 * 1024;
/** Read buffers kept: chunks waiting to be written or hashed, and the one being read. */
const POOL_BUFFERS = 8;

/**
 * A file as 2 MiB chunks read into pooled buffers; each lent buffer is recorded in `lent`.
 * Synchronous reads, as cat makes them: through the thread pool the same reads and writes
 * took 2.5 times the CPU time here (120 ms against 48 ms for the 200 MB file), on the core
 * the hashing thread needs, and the file gained 20-30 ms end to end.
 */
async function* pooledFileChunks(file: string, pool: BufferPool, lent: Lent): AsyncGenerator<Uint8Array> {
  const fd = fs.openSync(file, 'r');
  try {
    for (let position = 0; ; ) {
      const buf = pool.take(CHUNK);
      const bytesRead = fs.readSync(fd, buf, 0, CHUNK, position);
      if (bytesRead === 0) {
        pool.give(buf);
        return;
      }
      position += bytesRead;
      const chunk = buf.subarray(0, bytesRead);
      lent.set(chunk.buffer, { buf: Buffer.from(chunk.buffer, 0, chunk.buffer.byteLength), length: chunk.length, written: 0 });
      yield chunk;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes chunks one after the other (synchronously, see pooledFileChunks). A pooled buffer
 * goes back to the pool once views of it covering all its bytes were written: the reader
 * consumes a chunk before it hands a view of it on, so nothing else still holds it. A buffer
 * the parser copied from (the header's) never reaches that count and is simply not reused.
 */
async function writeChunks(file: string, chunks: AsyncIterable<Uint8Array>, release: (buf: Buffer) => void, lent: Lent): Promise<number> {
  const fd = fs.openSync(file, 'w');
  let position = 0;
  try {
    for await (const chunk of chunks) {
      for (let done = 0; done < chunk.byteLength; ) done += fs.writeSync(fd, chunk, done, chunk.byteLength - done, position + done);
      position += chunk.byteLength;
      const loan = lent.get(chunk.buffer);
      if (loan && (loan.written += chunk.byteLength) === loan.length) {
        lent.delete(chunk.buffer);
        release(loan.buf);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return position;
}

/**
 * A large file as the function streams a large blob: 2 MiB chunks read into pooled buffers,
 * the source hashed on the hashing thread, the output written as it is made. Returns the bytes
 * written.
 */
async function coreLargeFile(file: string, target: string, totalSize: number, pool: BufferPool, deid: DeidContext): Promise<number> {
  const lent: Lent = new Map();
  // As the function hashes a large source: on the hashing thread (shared/ingest/chunkHasher.ts).
  const reader = new ByteReader(pooledFileChunks(file, pool, lent), { hasher: sha256For(totalSize) });
  const prepared = await prepareDeidentifiedInstance(reader, { deid, maxHeaderBytes: MAX_HEADER_BYTES, totalSize, burnedIn: { mode: 'allow' } });
  // A written buffer is reused once the hashing thread is done with it too.
  const written = await writeChunks(target, prepared.output(), (buf) => void reader.hashed().then(() => pool.give(buf)), lent);
  await reader.drain();
  await reader.sha256();
  return written;
}

/**
 * The pipeline core as the ingest function runs it, with a local file in place of the blobs:
 * stream the source through a hashing reader, de-identify the header, write the output while
 * hashing it, then drain what was not read so that the source hash covers every byte.
 */
export async function runCore(work: WorkList): Promise<ChildReport> {
  const deid: DeidContext = { profile: defaultProfile(), key: BENCH_DEID_KEY, keyId: 'bench' };
  const pool = new BufferPool(POOL_BUFFERS);
  const hasLarge = work.files.some((file) => fs.statSync(file).size > SINGLE_READ_MAX);
  if (hasLarge) {
    // The hashing thread runs, and has sent a staging buffer back and forth, first: the first
    // ArrayBuffer a process transfers makes V8 drop its optimized code for every typed array
    // access (buffers can now be detached), and the warm-up below then compiles it again. An
    // instance that has only had small files has neither (they are hashed inline).
    const warmHash = new OffThreadSha256();
    warmHash.update(Buffer.alloc(1024));
    await warmHash.digest();
  }
  // A warm function instance has loaded its modules and compiled its hot paths. V8 compiles
  // the per-file header work fully only after a few hundred files (measured on one CPU: the
  // first 250 slices take 3.1 ms each, the next 250 1.4 ms, from the 500th on 0.5-0.8 ms), so
  // slices of another series, as many as the measured files up to 500, go through first.
  const warmSlices = Math.min(WARM_UP_SLICES, work.files.length);
  for (let i = 0; i < warmSlices; i++) {
    const reader = bufferReader(ctSliceBytes({ seed: 1, study: i % 4, instance: i }), { sha256: true });
    const warm = await prepareDeidentifiedInstance(reader, { deid, maxHeaderBytes: MAX_HEADER_BYTES, burnedIn: { mode: 'allow' } });
    for await (const chunk of warm.output()) void chunk;
    await reader.sha256();
  }
  // ... and the header work of multi-frame files, whose 400-item sequences take 135 ms through
  // cold code and 7-15 ms warm: the headers (without pixel data) of ten other such files.
  for (let i = 0; i < WARM_UP_MULTI_FRAME_HEADERS; i++) {
    await prepareDeidentifiedInstance(bufferReader(multiFrameHeader(2 + i, 400)), { deid, maxHeaderBytes: MAX_HEADER_BYTES, burnedIn: { mode: 'allow' } });
  }
  // The harness's read buffers exist and are touched before the clock starts: the first write
  // to fresh memory costs a page fault per 4 KiB, which on this VM is about 2 ms per MB.
  pool.fill(POOL_BUFFERS, CHUNK);
  // A large file's path (pooled reads, the hashing thread, chunked writes) is as warm as after
  // a few multi-frame files of another series: the first file through it takes 30-50 ms more
  // before its pixel data flows than later ones.
  if (hasLarge) {
    const warmFile = path.join(work.outDir, '.warm-up-multi-frame.dcm');
    const warmTarget = path.join(work.outDir, '.warm-up-multi-frame.out');
    for (let i = 0; i < WARM_UP_LARGE_FILES; i++) {
      const size = writeMultiFrame(warmFile, { seed: 100 + i, frames: WARM_UP_LARGE_FRAMES });
      await coreLargeFile(warmFile, warmTarget, size, pool, deid);
    }
    fs.rmSync(warmFile, { force: true });
    fs.rmSync(warmTarget, { force: true });
  }
  let bytesIn = 0;
  let bytesOut = 0;
  const outputs: OutputPlace[] = [];
  const joined = joinedOutput(work.outDir);
  const started = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  const one = async (file: string, i: number) => {
    const totalSize = fs.statSync(file).size;
    if (totalSize <= SINGLE_READ_MAX) {
      // As the function reads a small blob: one read, one write (memory bounded by the limit).
      const buf = pool.take(totalSize);
      try {
        // Synchronous calls, as cat makes them: on this VM handing a small read or write to the
        // thread pool costs several times the call itself (measured: 1,000 opens and closes take
        // 50-90 ms through the pool, 7-10 ms synchronously), and there is nothing to overlap.
        const fd = fs.openSync(file, 'r');
        let got = 0;
        try {
          while (got < totalSize) {
            const bytesRead = fs.readSync(fd, buf, got, totalSize - got, got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
        } finally {
          fs.closeSync(fd);
        }
        const reader = new ByteReader(oneChunk(buf.subarray(0, got)), { sha256: true });
        const prepared = await prepareDeidentifiedInstance(reader, { deid, maxHeaderBytes: MAX_HEADER_BYTES, totalSize: got, burnedIn: { mode: 'allow' } });
        const chunks: Uint8Array[] = [];
        for await (const chunk of prepared.output()) chunks.push(chunk);
        const place = joined.append(chunks);
        outputs[i] = place;
        bytesOut += place.length;
        await reader.drain();
        await reader.sha256();
      } finally {
        // Everything that viewed the buffer (reader, output chunks) is done with it here.
        pool.give(buf);
      }
    } else {
      // Not `bytesOut += await ...`: that reads bytesOut before the await, and files run concurrently.
      const written = await coreLargeFile(file, outputPath(work.outDir, file, i), totalSize, pool, deid);
      outputs[i] = { file: outputPath(work.outDir, file, i), offset: 0, length: written };
      bytesOut += written;
    }
    bytesIn += totalSize;
  };
  // A few files in flight, as the function runs concurrent ingestions. With synchronous file
  // I/O they mostly take turns; a large file's hash runs on the hashing thread meanwhile.
  const queue = work.files.map((file, i) => [file, i] as const);
  const inFlight = work.files.length > 1 ? CORE_CONCURRENCY : 1;
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await one(next[0], next[1]);
      }),
    );
  } finally {
    joined.close();
  }
  return childReport(work, started, cpuStart, { bytesIn, bytesOut }, outputs);
}

interface DcmjsData {
  DicomMessage: {
    readFile(buffer: ArrayBuffer, options?: { untilTag?: string; noCopy?: boolean }): { dict: Record<string, { Value?: unknown[] } | undefined>; write(): ArrayBuffer };
  };
  DicomMetaDictionary: {
    naturalizeDataset(dict: Record<string, unknown>): Record<string, unknown>;
    denaturalizeDataset(ds: Record<string, unknown>): Record<string, unknown>;
  };
}

/**
 * What a developer writes first with dcmjs: read the whole file, naturalize, blank the
 * patient's name and ID, write it all back. No UID remapping, dates or verification: the
 * baseline does less de-identification work than the core, never more.
 */
export async function runNaiveDcmjs(work: WorkList): Promise<ChildReport> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { data } = require('dcmjs') as { data: DcmjsData };
  let bytesIn = 0;
  let bytesOut = 0;
  const outputs: OutputPlace[] = [];
  // Written as the core writes: small files' outputs joined in one file, a large one on its own.
  const joined = joinedOutput(work.outDir);
  const started = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  for (const [i, file] of work.files.entries()) {
    const buf = await fs.promises.readFile(file);
    const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? (buf.buffer as ArrayBuffer) : buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    const message = data.DicomMessage.readFile(whole);
    const natural = data.DicomMetaDictionary.naturalizeDataset(message.dict);
    natural.PatientName = '';
    natural.PatientID = '';
    message.dict = data.DicomMetaDictionary.denaturalizeDataset(natural) as typeof message.dict;
    const written = Buffer.from(message.write());
    if (buf.length <= SINGLE_READ_MAX) {
      outputs[i] = joined.append([written]);
    } else {
      await fs.promises.writeFile(outputPath(work.outDir, file, i), written);
      outputs[i] = { file: outputPath(work.outDir, file, i), offset: 0, length: written.length };
    }
    bytesIn += buf.length;
    bytesOut += written.length;
  }
  joined.close();
  return childReport(work, started, cpuStart, { bytesIn, bytesOut }, outputs);
}

/** The tag of the top-level Pixel Data element as it is stored in explicit VR little endian, with its VR. */
const PIXEL_DATA_OW = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57]);
const PIXEL_DATA_OB = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42]);
/** The first read of a file for its header; doubled while the Pixel Data element is not in it. */
const HEADER_PREFIX = 256 * 1024;

/**
 * Where the Pixel Data element starts in an explicit VR little endian file, or -1. dcmjs does not
 * say where its header read stopped (`readFile` returns the data set only), so the baseline looks
 * for the element's tag and VR bytes from the end of the file meta on.
 */
function pixelDataOffset(prefix: Buffer): number {
  const ow = prefix.indexOf(PIXEL_DATA_OW, 132);
  const ob = prefix.indexOf(PIXEL_DATA_OB, 132);
  return ow < 0 ? ob : ob < 0 ? ow : Math.min(ow, ob);
}

/**
 * The fair dcmjs baseline: what a developer who knows dcmjs writes for a header-only edit. Read
 * the header with `untilTag: '7FE00010'` (dcmjs stops before the pixel data), blank the patient's
 * name and ID in the raw data set (no naturalize round trip, which would drop private
 * attributes), write the header with dcmjs and copy the Pixel Data element after it as bytes,
 * never parsed. A small file is one read, as the core reads it; a large one is read in 2 MiB
 * chunks into one reused buffer. No hashing, UID remapping, dates or verification: like the
 * naive baseline, it does less than the core, never more.
 */
export async function runHeaderDcmjs(work: WorkList): Promise<ChildReport> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { data } = require('dcmjs') as { data: DcmjsData };
  let bytesIn = 0;
  let bytesOut = 0;
  const outputs: OutputPlace[] = [];
  const joined = joinedOutput(work.outDir);
  const pool = new BufferPool(POOL_BUFFERS);
  pool.fill(2, CHUNK);
  const started = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  for (const [i, file] of work.files.entries()) {
    const totalSize = fs.statSync(file).size;
    const fd = fs.openSync(file, 'r');
    try {
      const small = totalSize <= SINGLE_READ_MAX;
      // A small file in one read into a reused buffer (as the core reads it); a large one's
      // header from a prefix.
      let prefix = small ? pool.take(totalSize) : Buffer.allocUnsafe(Math.min(totalSize, HEADER_PREFIX));
      let got = 0;
      for (let n = -1; n !== 0 && got < (small ? totalSize : prefix.length); got += n) n = fs.readSync(fd, prefix, got, (small ? totalSize : prefix.length) - got, got);
      let at = pixelDataOffset(prefix.subarray(0, got));
      while (at < 0 && got < totalSize) {
        const bigger = Buffer.allocUnsafe(Math.min(totalSize, prefix.length * 2));
        prefix.copy(bigger, 0, 0, got);
        got += fs.readSync(fd, bigger, got, bigger.length - got, got);
        prefix = bigger;
        at = pixelDataOffset(prefix.subarray(0, got));
      }
      if (at < 0) throw new Error(`${path.basename(file)}: no explicit VR little endian Pixel Data element`);
      // dcmjs takes an ArrayBuffer of the header alone (the pooled buffers are shared memory).
      const view = new Uint8Array(prefix.subarray(0, at)).buffer;
      const message = data.DicomMessage.readFile(view, { untilTag: '7FE00010', noCopy: true });
      for (const tag of ['00100010', '00100020']) {
        const element = message.dict[tag];
        if (element) element.Value = [];
      }
      // dcmjs leaves an entry without a VR for the tag it stopped at; it cannot be written.
      delete message.dict['7FE00010'];
      const header = Buffer.from(message.write());
      if (small) {
        outputs[i] = joined.append([header, prefix.subarray(at, got)]);
        pool.give(prefix);
      } else {
        const target = outputPath(work.outDir, file, i);
        const out = fs.openSync(target, 'w');
        try {
          let position = fs.writeSync(out, header);
          let from = at;
          const buf = pool.take(CHUNK);
          for (;;) {
            const n = fs.readSync(fd, buf, 0, CHUNK, from);
            if (n === 0) break;
            for (let done = 0; done < n; ) done += fs.writeSync(out, buf, done, n - done, position + done);
            position += n;
            from += n;
          }
          pool.give(buf);
          outputs[i] = { file: target, offset: 0, length: position };
        } finally {
          fs.closeSync(out);
        }
      }
      bytesOut += outputs[i]?.length ?? 0;
    } finally {
      fs.closeSync(fd);
    }
    bytesIn += totalSize;
  }
  joined.close();
  return childReport(work, started, cpuStart, { bytesIn, bytesOut }, outputs);
}
