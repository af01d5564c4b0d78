/**
 * What one benchmark child process does. Each mode runs alone in a fresh process so that its
 * peak RSS is its own, and times only the work (not Node's start-up or module loading, which a
 * warm Functions worker has already paid).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ByteReader } from '../shared/dicom/byteReader';
import type { DeidContext } from '../shared/dicom/deid/engine';
import { defaultProfile } from '../shared/dicom/deid/profile';
import { prepareDeidentifiedInstance } from '../shared/ingest/deidentifyInstance';

/** A fixed bench key: research identifiers made with it mean nothing anywhere else. */
export const BENCH_DEID_KEY = Buffer.from('vna-bench-deid-key-not-for-production-use-0123456789', 'utf8');
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
  for (const [i, file] of work.files.entries()) {
    const totalSize = fs.statSync(file).size;
    // A ReadStream copies a short read out of its buffer; sizing the buffer to a small file avoids
    // that copy, which the blob download in production does not make either.
    const highWaterMark = Math.max(64 * 1024, Math.min(1 << 20, totalSize));
    const reader = new ByteReader(fs.createReadStream(file, { highWaterMark }), { sha256: true });
    const prepared = await prepareDeidentifiedInstance(reader, { deid, maxHeaderBytes: MAX_HEADER_BYTES, totalSize, burnedIn: { mode: 'allow' } });
    const outHash = createHash('sha256');
    async function* hashed(): AsyncGenerator<Uint8Array> {
      for await (const chunk of prepared.output()) {
        outHash.update(chunk);
        yield chunk;
      }
    }
    bytesOut += await writeStream(outputPath(work.outDir, file, i), hashed());
    await reader.drain();
    reader.sha256();
    outHash.digest();
    bytesIn += totalSize;
  }
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
