/**
 * What one benchmark child process does. Each mode runs alone in a fresh process so that its
 * peak RSS is its own, and times only the work (not Node's start-up or module loading, which a
 * warm Functions worker has already paid).
 */
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ByteReader } from '../shared/dicom/byteReader';
import type { DeidContext } from '../shared/dicom/deid/engine';
import { defaultProfile } from '../shared/dicom/deid/profile';
import { prepareDeidentifiedInstance } from '../shared/ingest/deidentifyInstance';

/** A fixed bench key: research identifiers made with it mean nothing anywhere else. */
export const BENCH_DEID_KEY = Buffer.from('vna-bench-deid-key-not-for-production-use-0123456789', 'utf8');
/** Files up to this size are read in one request by the ingestion (shared/ingest/ingestSourceFile.ts). */
const SINGLE_READ_MAX = 4 * 1024 * 1024;

async function* oneChunk(buf: Buffer): AsyncGenerator<Uint8Array> {
  yield buf;
}

/** Files the core works on at once (MAX_CONCURRENT_INGESTIONS defaults to 8). */
const CORE_CONCURRENCY = 4;

/** The function's default MAX_HEADER_BYTES. */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

export interface ChildReport {
  seconds: number;
  files: number;
  bytesIn: number;
  bytesOut: number;
  /** process.resourceUsage().maxRSS, KiB. */
  maxRssKB: number;
}

/** The files of one measurement and where their outputs go. */
export interface WorkList {
  files: string[];
  outDir: string;
}

function outputPath(outDir: string, file: string, index: number): string {
  return path.join(outDir, `${String(index).padStart(5, '0')}-${path.basename(file)}`);
}

async function writeStream(file: string, chunks: AsyncIterable<Uint8Array>): Promise<number> {
  const out = fs.createWriteStream(file, { highWaterMark: 1 << 20 });
  let bytes = 0;
  try {
    for await (const chunk of chunks) {
      bytes += chunk.byteLength;
      if (!out.write(chunk)) await once(out, 'drain');
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  return bytes;
}

/**
 * The pipeline core as the ingest function runs it, with a local file in place of the blobs:
 * stream the source through a hashing reader, de-identify the header, write the output while
 * hashing it, then drain what was not read so that the source hash covers every byte.
 */
export async function runCore(work: WorkList): Promise<ChildReport> {
  const deid: DeidContext = { profile: defaultProfile(), key: BENCH_DEID_KEY, keyId: 'bench' };
  let bytesIn = 0;
  let bytesOut = 0;
  const started = process.hrtime.bigint();
  const one = async (file: string, i: number) => {
    const totalSize = fs.statSync(file).size;
    const target = outputPath(work.outDir, file, i);
    if (totalSize <= SINGLE_READ_MAX) {
      // As the function reads a small blob: one read, one write (memory bounded by the limit).
      const reader = new ByteReader(oneChunk(await fs.promises.readFile(file)), { sha256: true });
      const prepared = await prepareDeidentifiedInstance(reader, { deid, maxHeaderBytes: MAX_HEADER_BYTES, totalSize, burnedIn: { mode: 'allow' } });
      const chunks: Uint8Array[] = [];
      for await (const chunk of prepared.output()) chunks.push(chunk);
      const out = await fs.promises.open(target, 'w');
      try {
        const { bytesWritten } = await out.writev(chunks);
        bytesOut += bytesWritten;
      } finally {
        await out.close();
      }
      await reader.drain();
      reader.sha256();
    } else {
      const reader = new ByteReader(fs.createReadStream(file, { highWaterMark: 1 << 20 }), { sha256: true });
      const prepared = await prepareDeidentifiedInstance(reader, { deid, maxHeaderBytes: MAX_HEADER_BYTES, totalSize, burnedIn: { mode: 'allow' } });
      bytesOut += await writeStream(target, prepared.output());
      await reader.drain();
      reader.sha256();
    }
    bytesIn += totalSize;
  };
  // A few files in flight, as the function runs concurrent ingestions: the JavaScript still
  // runs on one core, and the reads and writes of one file overlap the work on another.
  const queue = work.files.map((file, i) => [file, i] as const);
  const inFlight = work.files.length > 1 ? CORE_CONCURRENCY : 1;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await one(next[0], next[1]);
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, files: work.files.length, bytesIn, bytesOut, maxRssKB: process.resourceUsage().maxRSS };
}

interface DcmjsData {
  DicomMessage: { readFile(buffer: ArrayBuffer): { dict: Record<string, unknown>; write(): ArrayBuffer } };
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
  const started = process.hrtime.bigint();
  for (const [i, file] of work.files.entries()) {
    const buf = await fs.promises.readFile(file);
    const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? (buf.buffer as ArrayBuffer) : buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    const message = data.DicomMessage.readFile(whole);
    const natural = data.DicomMetaDictionary.naturalizeDataset(message.dict);
    natural.PatientName = '';
    natural.PatientID = '';
    message.dict = data.DicomMetaDictionary.denaturalizeDataset(natural);
    const written = Buffer.from(message.write());
    await fs.promises.writeFile(outputPath(work.outDir, file, i), written);
    bytesIn += buf.length;
    bytesOut += written.length;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, files: work.files.length, bytesIn, bytesOut, maxRssKB: process.resourceUsage().maxRSS };
}
