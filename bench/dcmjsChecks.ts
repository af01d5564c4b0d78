/**
 * The measurements and checks behind docs/decisions/0001-own-dicom-core.md: header parse and
 * write times of the project's DICOM core against dcmjs (header read with `untilTag`), and what
 * dcmjs does with multi-valued character sets (ISO 2022), a large write, and this Node version.
 *
 * Usage: npm run build && node dist/bench/dcmjsChecks.js. Prints a report and one
 * `DCMJS_CHECKS <json>` line. Timings are the median of batches, after a warm-up of both.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { bufferReader } from '../shared/dicom/byteReader';
import { decodeText, parseSpecificCharacterSet } from '../shared/dicom/charset';
import { asciiValue, DicomDataset } from '../shared/dicom/dataset';
import { readHeader } from '../shared/dicom/parser';
import { Tags } from '../shared/dicom/tags';
import { encodeDataset, encodeFileMeta } from '../shared/dicom/writer';
import { ctSliceBytes, multiFrameHeader, writeMultiFrame } from './generate';
import { formatTable } from './stats';

interface DcmjsDict {
  dict: Record<string, { vr?: string; Value?: unknown[] } | undefined>;
  write(): ArrayBuffer;
}
interface Dcmjs {
  data: {
    DicomMessage: { readFile(buffer: ArrayBuffer, options?: { untilTag?: string; noCopy?: boolean; ignoreErrors?: boolean }): DcmjsDict };
    DicomMetaDictionary: { naturalizeDataset(dict: Record<string, unknown>): Record<string, unknown> };
  };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dcmjs = require('dcmjs') as Dcmjs;
const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'dicom', 'pydicom-deb');
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

function arrayBufferOf(buf: Buffer): ArrayBuffer {
  return new Uint8Array(buf).buffer;
}

/** Median time per call (ms) over `batches` batches of `perBatch` calls, after `warmUp` calls. */
async function timeIt(fn: () => unknown, options: { warmUp: number; batches: number; perBatch: number }): Promise<number> {
  for (let i = 0; i < options.warmUp; i++) await fn();
  const perCall: number[] = [];
  for (let b = 0; b < options.batches; b++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < options.perBatch; i++) await fn();
    perCall.push(Number(process.hrtime.bigint() - started) / 1e6 / options.perBatch);
  }
  perCall.sort((a, b) => a - b);
  return perCall[Math.floor((perCall.length - 1) / 2)] as number;
}

interface HeaderTiming {
  header: string;
  headerBytes: number;
  coreParseMs: number;
  dcmjsParseMs: number;
  coreWriteMs: number;
  dcmjsWriteMs: number;
}

async function headerTimings(name: string, file: Buffer, runs: { warmUp: number; batches: number; perBatch: number }): Promise<HeaderTiming> {
  const parseCore = () => readHeader(bufferReader(file), { maxHeaderBytes: MAX_HEADER_BYTES });
  const whole = arrayBufferOf(file);
  const parseDcmjs = () => dcmjs.data.DicomMessage.readFile(whole, { untilTag: '7FE00010', noCopy: true });
  const header = await parseCore();
  const sopClass = asciiValue(header.dataset.get(Tags.SOPClassUID)) ?? '';
  const sopInstance = asciiValue(header.dataset.get(Tags.SOPInstanceUID)) ?? '';
  const writeCore = () => Buffer.concat([encodeFileMeta(sopClass, sopInstance, header.transferSyntaxUid), encodeDataset(header.dataset, header.encoding)]);
  const message = parseDcmjs();
  // dcmjs leaves an entry without a VR for the tag it stopped at; it cannot be written.
  delete message.dict['7FE00010'];
  const writeDcmjs = () => message.write();
  return {
    header: name,
    headerBytes: writeCore().length,
    coreParseMs: await timeIt(parseCore, runs),
    dcmjsParseMs: await timeIt(parseDcmjs, runs),
    coreWriteMs: await timeIt(writeCore, runs),
    dcmjsWriteMs: await timeIt(writeDcmjs, runs),
  };
}

interface CharsetCheck {
  file: string;
  specificCharacterSet: string[];
  expected: string;
  core: string;
  dcmjsStrict: string;
  dcmjsLenient: string;
  dcmjsWrittenCharset: string;
}

/** The first data set, top level or in a sequence item, that holds a non-empty Patient's Name. */
function withPatientName(ds: DicomDataset): DicomDataset | undefined {
  if ((ds.get(0x00100010)?.value?.length ?? 0) > 0) return ds;
  for (const el of ds.values()) for (const item of el.items ?? []) {
    const found = withPatientName(item);
    if (found) return found;
  }
  return undefined;
}

/** dcmjs's naturalized Patient's Name, at the top level or in the first sequence item that has one. */
function dcmjsPatientName(natural: Record<string, unknown>): string | undefined {
  const v = natural.PatientName as unknown[] | object | string | undefined;
  const first = Array.isArray(v) ? v[0] : v;
  // dcmjs splits a name into its component groups; joined again as PS3.5 writes them.
  const groups = first as { Alphabetic?: string; Ideographic?: string; Phonetic?: string } | undefined;
  const text = typeof first === 'string' ? first : groups ? [groups.Alphabetic ?? '', groups.Ideographic ?? '', groups.Phonetic ?? ''].join('=').replace(/=+$/, '') : undefined;
  if (text) return text;
  for (const value of Object.values(natural)) {
    if (!Array.isArray(value)) continue;
    for (const item of value) {
      if (item && typeof item === 'object' && !Array.isArray(item)) {
        const found = dcmjsPatientName(item as Record<string, unknown>);
        if (found) return found;
      }
    }
  }
  return undefined;
}

/**
 * Patient's Name of a pydicom charset fixture (top level, or in a sequence item with a character
 * set of its own) by the core, by dcmjs strict and lenient, and what dcmjs writes back.
 */
async function charsetCheck(name: string, expected: string): Promise<CharsetCheck> {
  const buf = fs.readFileSync(path.join(FIXTURES, `charset_files__${name}.dcm`));
  const header = await readHeader(bufferReader(buf), { maxHeaderBytes: MAX_HEADER_BYTES });
  const holder = withPatientName(header.dataset) ?? header.dataset;
  const charsets = parseSpecificCharacterSet(asciiValue(holder.get(Tags.SpecificCharacterSet) ?? header.dataset.get(Tags.SpecificCharacterSet)));
  const core = decodeText(holder.get(0x00100010)?.value ?? new Uint8Array(), charsets, 'PN').trimEnd();
  const nameOf = (m: DcmjsDict) => dcmjsPatientName(dcmjs.data.DicomMetaDictionary.naturalizeDataset(m.dict as Record<string, unknown>)) ?? '(no name read)';
  let dcmjsStrict: string;
  try {
    dcmjsStrict = nameOf(dcmjs.data.DicomMessage.readFile(arrayBufferOf(buf)));
  } catch (err) {
    dcmjsStrict = `throws: ${(err as Error).message}`;
  }
  // dcmjs logs a warning (stderr) for each character set term it cannot use.
  const lenient = dcmjs.data.DicomMessage.readFile(arrayBufferOf(buf), { ignoreErrors: true });
  const written = dcmjs.data.DicomMessage.readFile(lenient.write(), { ignoreErrors: true });
  return {
    file: name,
    specificCharacterSet: charsets,
    expected,
    core,
    dcmjsStrict,
    dcmjsLenient: nameOf(lenient),
    dcmjsWrittenCharset: String(written.dict['00080005']?.Value?.join('\\') ?? ''),
  };
}

interface LargeWrite {
  fileBytes: number;
  /** What dcmjs write() hands back: one ArrayBuffer of this many bytes. */
  writtenArrayBufferBytes: number;
  /** Peak RSS over the read and the write, MiB. */
  peakRssGrowthMB: number;
}

/** dcmjs reads and writes a multi-frame file; its write returns the whole output at once. */
function largeWrite(frames: number): LargeWrite {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-dcmjs-check-'));
  try {
    const file = path.join(dir, 'mf.dcm');
    const size = writeMultiFrame(file, { seed: 77, frames });
    global.gc?.();
    const before = process.memoryUsage().rss;
    const message = dcmjs.data.DicomMessage.readFile(arrayBufferOf(fs.readFileSync(file)));
    const out = message.write();
    const peak = process.resourceUsage().maxRSS * 1024;
    return { fileBytes: size, writtenArrayBufferBytes: out.byteLength, peakRssGrowthMB: Math.round((peak - before) / (1024 * 1024)) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  // The package's exports do not include its package.json: read it next to its entry point (build/).
  const dcmjsPackage = JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve('dcmjs')), '..', 'package.json'), 'utf8')) as { version: string; engines?: { node?: string } };
  const timings = [
    await headerTimings('CT slice (bench generator)', ctSliceBytes({ seed: 3, study: 0, instance: 1 }), { warmUp: 2000, batches: 9, perBatch: 500 }),
    await headerTimings('Enhanced CT, 400 frames (header only)', multiFrameHeader(5, 400), { warmUp: 30, batches: 9, perBatch: 10 }),
  ];
  const charsets = [
    await charsetCheck('chrH31', 'Yamada^Tarou=山田^太郎=やまだ^たろう'),
    await charsetCheck('chrI2', 'Hong^Gildong=洪^吉洞=홍^길동'),
    await charsetCheck('chrSQEncoding', 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう'),
  ];
  const large = largeWrite(100);
  const result = { node: process.version, dcmjs: dcmjsPackage.version, dcmjsEngines: dcmjsPackage.engines?.node ?? null, timings, charsets, large };
  const ms = (v: number) => v.toFixed(3);
  process.stdout.write(
    `${formatTable([
      ['header', 'bytes', 'parse: core ms', 'dcmjs untilTag ms', 'dcmjs/core', 'write: core ms', 'dcmjs ms', 'dcmjs/core'],
      ...timings.map((t) => [t.header, String(t.headerBytes), ms(t.coreParseMs), ms(t.dcmjsParseMs), `${(t.dcmjsParseMs / t.coreParseMs).toFixed(1)}x`, ms(t.coreWriteMs), ms(t.dcmjsWriteMs), `${(t.dcmjsWriteMs / t.coreWriteMs).toFixed(1)}x`]),
    ])}\n\n`,
  );
  for (const c of charsets) {
    process.stdout.write(`${c.file} [${c.specificCharacterSet.join('\\')}] expected ${c.expected}\n  core: ${c.core}\n  dcmjs strict: ${c.dcmjsStrict}\n  dcmjs ignoreErrors: ${c.dcmjsLenient}\n  dcmjs writes SpecificCharacterSet: ${c.dcmjsWrittenCharset}\n`);
  }
  process.stdout.write(`\ndcmjs write() of a ${(large.fileBytes / 1e6).toFixed(1)} MB file: one ArrayBuffer of ${(large.writtenArrayBufferBytes / 1e6).toFixed(1)} MB; peak RSS grew ${large.peakRssGrowthMB} MiB\n`);
  process.stdout.write(`Node ${result.node}, dcmjs ${result.dcmjs} (engines.node ${result.dcmjsEngines ?? 'none'})\n`);
  process.stdout.write(`DCMJS_CHECKS ${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
