/**
 * DICOM parsing for a pipeline that must not hold pixel data in memory.
 *
 * The header (file meta and every element before the top-level pixel data) is parsed into
 * the data set model from a growing in-memory prefix of the stream; the pixel data is not
 * read here: `readHeader` stops at its element header and leaves the reader positioned at
 * its value, which the caller pipes to the output untouched.
 */
import { createInflateRaw, Inflate } from 'node:zlib';

import { ErrorCodes, PipelineError } from '../errors';
import { bufferReader,ByteReader } from './byteReader';
import { asciiValue, DicomDataset, DicomElement, Encoding, encodingOf, LONG_VRS, TransferSyntax } from './dataset';
import { lookupTag, tagToString } from './dictionary';
import { HeaderBudget, HeaderLimits, INFLATION_RATIO_FLOOR, runSliced, Slicer, STEPS_PER_CHECK, withDefaults } from './limits';
import { Tags } from './tags';

const UNDEFINED_LENGTH = 0xffffffff;
const PIXEL_TAGS: ReadonlySet<number> = new Set([Tags.PixelData, Tags.FloatPixelData, Tags.DoubleFloatPixelData]);

/** Raised inside the parser when the buffered prefix ends inside an element. */
class NeedMoreData extends Error {
  constructor(readonly needed: number) {
    super('need more data');
  }
}

/** What the parse yields to its driver: a byte count it needs buffered (from the buffer's start), or PAUSE. */
type ParseSignal = number;
/** The parse has done a stretch of work: the driver may give the event loop a turn. */
const PAUSE = -1;

export interface ParseLimits extends Partial<HeaderLimits> {
  /** Largest header held in memory (bytes); larger: DICOM_HEADER_TOO_LARGE. */
  maxHeaderBytes: number;
  /** Size of the whole file when known: a declared length past it is DICOM_ELEMENT_TOO_LARGE. */
  totalSize?: number;
}

export interface PixelDataHeader {
  tag: number;
  vr: string;
  /** Value length, or undefined for encapsulated (undefined length) pixel data. */
  length: number | undefined;
}

export interface DicomHeader {
  /** True when the file had the 128-byte preamble and "DICM". */
  part10: boolean;
  /** File meta information (group 0002); empty for a bare data set. */
  meta: DicomDataset;
  transferSyntaxUid: string;
  /** The encoding of `dataset` as read (deflated files are inflated: explicit VR little endian). */
  encoding: Encoding;
  deflated: boolean;
  /** Every element before the top-level pixel data. */
  dataset: DicomDataset;
  /** The top-level pixel data element, when there is one; the reader stands at its value. */
  pixelData?: PixelDataHeader;
  /** The reader to continue from: the source itself, or an inflating reader for deflated files. */
  body: ByteReader;
}

function vrIsValid(a: number, b: number): boolean {
  return a >= 0x41 && a <= 0x5a && b >= 0x41 && b <= 0x5a;
}

/** One string per VR, made once: a header of 100,000 elements would otherwise hold 100,000 copies of "LO". */
const VR_NAMES = new Map<number, string>();
function vrName(a: number, b: number): string {
  const code = (a << 8) | b;
  let name = VR_NAMES.get(code);
  if (name === undefined) {
    name = String.fromCharCode(a, b);
    VR_NAMES.set(code, name);
  }
  return name;
}

interface DatasetEnd {
  offset: number;
  pixel?: PixelDataHeader & { valueOffset: number };
  delimited: boolean;
}

/**
 * Element parser over a growing buffer. Offsets are relative to `buf`, whose start stays at
 * the same place in the file while it grows. The parse is a generator: it yields the byte
 * count it needs when the buffer ends inside an element (the driver grows the buffer and
 * resumes it where it stopped, so nothing is parsed twice) and PAUSE every few hundred
 * elements (the driver may then let the event loop run). Sequences nest by delegation, at most
 * `maxDepth` deep, so the stack stays shallow whatever the file says.
 * `final` says the buffer holds the rest of the source: running out is then a truncated file.
 */
class SyncParser {
  /** Elements whose value views `buf`: re-pointed when the buffer grows, copied out at the end. */
  private readonly views: DicomElement[] = [];
  private steps = 0;

  constructor(
    private buf: Buffer,
    private readonly enc: Encoding,
    private final: boolean,
    private readonly limits: ParseLimits,
    /** Offset of buf[0] in the file, for limit checks against totalSize. */
    private readonly base: number,
    private readonly budget: HeaderBudget,
  ) {}

  /**
   * Continues on a longer buffer holding the same bytes from the same place in the file.
   * A generator (it yields every STEPS_PER_CHECK * 16 values) because re-pointing a hundred
   * thousand values is a stretch of work of its own; the parse must not resume before its end.
   */
  *grow(buf: Buffer, final: boolean): Generator<void, void> {
    const old = this.buf;
    // The same buffer again when the source had no more to give: only `final` changes.
    if (buf !== old) {
      const views = this.views;
      for (let i = 0; i < views.length; i++) {
        if (i % (STEPS_PER_CHECK * 16) === 0) yield;
        const el = views[i]!;
        const v = el.value;
        if (!v) continue;
        const at = v.byteOffset - old.byteOffset;
        el.value = buf.subarray(at, at + v.byteLength);
      }
    }
    this.buf = buf;
    this.final = final;
  }

  /**
   * Points the parsed values at one copy of `buf[0, end)` (one allocation and copy for the
   * whole header, where a copy per value costs a multi-frame header thousands), so that the
   * reader can release (or its source reuse) its chunks. A generator, as grow.
   */
  *detach(end: number): Generator<void, void> {
    const buf = this.buf;
    const copy = Buffer.from(buf.subarray(0, end));
    const views = this.views;
    for (let i = 0; i < views.length; i++) {
      if (i % (STEPS_PER_CHECK * 16) === 0) yield;
      const el = views[i]!;
      const v = el.value;
      if (!v) continue;
      const at = v.byteOffset - buf.byteOffset;
      el.value = v.buffer === buf.buffer && at >= 0 && at + v.byteLength <= end ? copy.subarray(at, at + v.byteLength) : Buffer.from(v);
    }
    this.views.length = 0;
  }

  private need(offset: number, n: number): void {
    if (offset + n > this.buf.length) {
      if (this.final) {
        throw new PipelineError(ErrorCodes.DICOM_TRUNCATED, `file ends inside an element at byte ${this.base + offset}`);
      }
      throw new NeedMoreData(offset + n);
    }
  }

  private u16(o: number, le = this.enc.littleEndian): number {
    return le ? this.buf.readUInt16LE(o) : this.buf.readUInt16BE(o);
  }

  private u32(o: number, le = this.enc.littleEndian): number {
    return le ? this.buf.readUInt32LE(o) : this.buf.readUInt32BE(o);
  }

  private checkLength(length: number, offset: number, tag: number): void {
    if (length === UNDEFINED_LENGTH) return;
    if (this.limits.totalSize !== undefined && this.base + offset + length > this.limits.totalSize) {
      throw new PipelineError(
        ErrorCodes.DICOM_ELEMENT_TOO_LARGE,
        `element ${tagToString(tag)} declares ${length} bytes, more than the ${this.limits.totalSize - this.base - offset} left in the file`,
      );
    }
    // The header limit counts from where this parse started (the buffer's start), not the file's.
    if (offset + length > this.limits.maxHeaderBytes && !PIXEL_TAGS.has(tag)) {
      throw new PipelineError(
        ErrorCodes.DICOM_HEADER_TOO_LARGE,
        `element ${tagToString(tag)} would take the header past the ${this.limits.maxHeaderBytes}-byte limit`,
      );
    }
  }

  /** Reads an element header at `o`: tag, vr, length and where the value starts. */
  elementHeader(o: number, explicit = this.enc.explicitVR, le = this.enc.littleEndian): { tag: number; vr: string; length: number; valueOffset: number } {
    this.need(o, 8);
    const tag = ((this.u16(o, le) << 16) | this.u16(o + 2, le)) >>> 0;
    // Item and delimitation tags never carry a VR, whatever the transfer syntax.
    if ((tag >>> 16) === 0xfffe) return { tag, vr: '', length: this.u32(o + 4, le), valueOffset: o + 8 };
    if (explicit && vrIsValid(this.buf[o + 4] ?? 0, this.buf[o + 5] ?? 0)) {
      const vr = vrName(this.buf[o + 4] ?? 0, this.buf[o + 5] ?? 0);
      if (LONG_VRS.has(vr)) {
        this.need(o, 12);
        return { tag, vr, length: this.u32(o + 8, le), valueOffset: o + 12 };
      }
      return { tag, vr, length: this.u16(o + 6, le), valueOffset: o + 8 };
    }
    const vr = lookupTag(tag)?.vr ?? 'UN';
    if (explicit) {
      // A broken VR in an explicit-VR file: writers that emit one use either a 2-byte length
      // (as if the VR were valid) or an implicit-VR header. Take the reading after which the
      // next element header is plausible (ascending tag, valid VR).
      const shortLength = this.u16(o + 6, le);
      const next = o + 8 + shortLength;
      if (next + 6 <= this.buf.length) {
        const nextTag = ((this.u16(next, le) << 16) | this.u16(next + 2, le)) >>> 0;
        if (nextTag > tag && (vrIsValid(this.buf[next + 4] ?? 0, this.buf[next + 5] ?? 0) || nextTag >>> 16 === 0xfffe)) {
          return { tag, vr, length: shortLength, valueOffset: o + 8 };
        }
      } else if (!this.final) {
        throw new NeedMoreData(next + 6);
      }
    }
    return { tag, vr, length: this.u32(o + 4, le), valueOffset: o + 8 };
  }

  /** End of an encapsulated OB/OW value inside the header (an icon's pixel data): its items, through the delimiter. */
  private encapsulatedEnd(tag: number, start: number, le: boolean): number {
    let p = start;
    for (;;) {
      const item = this.elementHeader(p, false, le);
      if (item.tag === Tags.SequenceDelimitationItem) return item.valueOffset;
      if (item.tag !== Tags.Item) {
        throw new PipelineError(ErrorCodes.DICOM_MALFORMED, `encapsulated element ${tagToString(tag)} holds something other than items`);
      }
      this.checkLength(item.length, item.valueOffset, tag);
      this.need(item.valueOffset, item.length);
      p = item.valueOffset + item.length;
    }
  }

  /**
   * Parses elements from `o` up to `end` (or a delimiter when end is undefined) into `ds`.
   * Stops before a top-level pixel data element when `stopAtPixel`. Returns the offset reached
   * and, if it stopped there, the pixel data header. `depth` is the nesting of `ds` (0 at the top).
   */
  *parseDataset(
    ds: DicomDataset,
    o: number,
    end: number | undefined,
    stopAtPixel: boolean,
    depth: number,
    explicit = this.enc.explicitVR,
    le = this.enc.littleEndian,
  ): Generator<ParseSignal, DatasetEnd> {
    let offset = o;
    for (;;) {
      if (end !== undefined && offset >= end) return { offset, delimited: false };
      if (end === undefined && offset >= this.buf.length && this.final) return { offset, delimited: false };
      if (++this.steps % STEPS_PER_CHECK === 0) yield PAUSE;
      // Until the element is complete nothing is kept: when the buffer ends inside it, the
      // element is read again from its start once the buffer has grown.
      let h: ReturnType<SyncParser['elementHeader']>;
      try {
        h = this.elementHeader(offset, explicit, le);
      } catch (e) {
        if (!(e instanceof NeedMoreData)) throw e;
        yield e.needed;
        continue;
      }
      if (h.tag === Tags.ItemDelimitationItem) return { offset: h.valueOffset, delimited: true };
      if (h.tag === Tags.SequenceDelimitationItem) return { offset: h.valueOffset, delimited: true };
      if (stopAtPixel && PIXEL_TAGS.has(h.tag)) {
        return {
          offset,
          pixel: { tag: h.tag, vr: h.vr, length: h.length === UNDEFINED_LENGTH ? undefined : h.length, valueOffset: h.valueOffset },
          delimited: false,
        };
      }
      this.checkLength(h.length, h.valueOffset, h.tag);
      const el: DicomElement = { tag: h.tag, vr: h.vr };
      // An undefined-length UN is a sequence encoded in implicit VR little endian (PS3.5 6.2.2).
      const known = (h.tag >>> 16) % 2 === 0 ? lookupTag(h.tag)?.vr : undefined;
      const asSequence =
        h.vr === 'SQ' ||
        (h.vr === 'UN' && known === 'SQ') ||
        (h.length === UNDEFINED_LENGTH && (h.vr === 'UN' || (!explicit && lookupTag(h.tag) === undefined)));
      let next: number;
      if (asSequence) {
        this.budget.depth(depth + 1);
        this.budget.element(0);
        const seqExplicit = h.vr === 'UN' && explicit ? false : explicit;
        const seqLe = h.vr === 'UN' && explicit ? true : le;
        el.vr = 'SQ';
        el.items = [];
        next = yield* this.parseItems(el.items, h.valueOffset, h.length, seqExplicit, seqLe, depth + 1);
      } else {
        try {
          if (h.length === UNDEFINED_LENGTH) {
            next = this.encapsulatedEnd(h.tag, h.valueOffset, le);
            el.encapsulated = true;
          } else {
            this.need(h.valueOffset, h.length);
            next = h.valueOffset + h.length;
          }
        } catch (e) {
          if (!(e instanceof NeedMoreData)) throw e;
          yield e.needed;
          continue;
        }
        this.budget.element(next - h.valueOffset);
        el.value = this.buf.subarray(h.valueOffset, next);
        this.views.push(el);
        // A public attribute written as UN (by a converter that did not know it) is read as
        // its dictionary VR, so that de-identification and the catalog see its real type.
        if (el.vr === 'UN' && !el.encapsulated && known !== undefined && known !== 'UN') el.vr = known;
      }
      offset = next;
      if (end !== undefined && offset > end) {
        throw new PipelineError(ErrorCodes.DICOM_MALFORMED, `element ${tagToString(h.tag)} runs past the end of its item`);
      }
      ds.set(h.tag, el);
    }
  }

  private *parseItems(items: DicomDataset[], start: number, length: number, explicit: boolean, le: boolean, depth: number): Generator<ParseSignal, number> {
    const end = length === UNDEFINED_LENGTH ? undefined : start + length;
    let o = start;
    for (;;) {
      if (end !== undefined && o >= end) return o;
      if (++this.steps % STEPS_PER_CHECK === 0) yield PAUSE;
      let h: ReturnType<SyncParser['elementHeader']>;
      try {
        h = this.elementHeader(o, false, le);
        if (h.tag === Tags.Item && h.length !== UNDEFINED_LENGTH) {
          this.checkLength(h.length, h.valueOffset, Tags.Item);
          this.need(h.valueOffset, h.length);
        }
      } catch (e) {
        if (!(e instanceof NeedMoreData)) throw e;
        yield e.needed;
        continue;
      }
      if (h.tag === Tags.SequenceDelimitationItem) return h.valueOffset;
      if (h.tag !== Tags.Item) {
        throw new PipelineError(ErrorCodes.DICOM_MALFORMED, `sequence holds ${tagToString(h.tag)} where an item belongs`);
      }
      this.budget.item();
      const item: DicomDataset = new Map();
      if (h.length === UNDEFINED_LENGTH) {
        const r = yield* this.parseDataset(item, h.valueOffset, undefined, false, depth, explicit, le);
        if (!r.delimited) throw new PipelineError(ErrorCodes.DICOM_TRUNCATED, `file ends inside a sequence item at byte ${this.base + r.offset}`);
        o = r.offset;
      } else {
        const r = yield* this.parseDataset(item, h.valueOffset, h.valueOffset + h.length, false, depth, explicit, le);
        o = r.offset;
      }
      items.push(item);
    }
  }
}

/** Works out how a file without preamble starts: a bare data set in some encoding, or not DICOM. */
function sniffBareDataset(head: Buffer): Encoding | undefined {
  if (head.length < 8) return undefined;
  const groupLe = head.readUInt16LE(0);
  const groupBe = head.readUInt16BE(0);
  const explicit = vrIsValid(head[4] ?? 0, head[5] ?? 0);
  const plausible = (g: number) => g >= 0x0002 && g <= 0x0010;
  if (plausible(groupLe)) return { explicitVR: explicit, littleEndian: true };
  if (plausible(groupBe)) return { explicitVR: explicit, littleEndian: false };
  return undefined;
}

/**
 * The data set must start in the encoding its transfer syntax declares: read in another, it
 * would be written back under a label that does not describe it. Only a definite contradiction
 * fails (a first element that sniffs as neither is left alone).
 */
function checkDatasetEncoding(head: Buffer, declared: Encoding): void {
  const sniffed = sniffBareDataset(head);
  if (!sniffed) return;
  if (sniffed.explicitVR !== declared.explicitVR || sniffed.littleEndian !== declared.littleEndian) {
    const says = (e: Encoding) => `${e.explicitVR ? 'explicit' : 'implicit'} VR ${e.littleEndian ? 'little' : 'big'} endian`;
    throw new PipelineError(
      ErrorCodes.DICOM_TRANSFER_SYNTAX_MISMATCH,
      `the transfer syntax declares ${says(declared)} but the data set is ${says(sniffed)}`,
    );
  }
}

/**
 * Reads the file meta and the data set up to the top-level pixel data, growing an in-memory
 * prefix as needed (at most `maxHeaderBytes`). Leaves `body` positioned at the pixel data
 * value, or at the end of the data set when there is none. Gives the event loop a turn
 * every SLICE_MS of parsing. A deflated data set is inflated within `maxInflatedBytes` and
 * `maxInflationRatio`; past either, reading `body` fails with DICOM_INFLATION_LIMIT.
 *
 * Throws PipelineError DICOM_NOT_DICOM, DICOM_TRUNCATED, DICOM_ELEMENT_TOO_LARGE,
 * DICOM_HEADER_TOO_LARGE, DICOM_MALFORMED (nesting past `maxDepth` included),
 * DICOM_TOO_MANY_ELEMENTS, DICOM_HEADER_MEMORY_LIMIT, DICOM_INFLATION_LIMIT.
 */
export async function readHeader(reader: ByteReader, limits: ParseLimits): Promise<DicomHeader> {
  const bounds = withDefaults(limits);
  const budget = new HeaderBudget(bounds);
  const head = await reader.peek(132);
  let part10 = false;
  let meta: DicomDataset = new Map();
  let transferSyntaxUid: string = TransferSyntax.ExplicitVRLittleEndian;
  let encoding: Encoding;
  let datasetHead: Buffer | undefined;

  if (head.length >= 132 && head.toString('latin1', 128, 132) === 'DICM') {
    part10 = true;
    reader.consume(132);
    meta = await readMeta(reader, limits, budget);
    const ts = asciiValue(meta.get(Tags.TransferSyntaxUID));
    if (!ts) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'file meta information has no TransferSyntaxUID');
    transferSyntaxUid = ts;
    encoding = encodingOf(ts);
    if (ts !== TransferSyntax.DeflatedExplicitVRLittleEndian) datasetHead = Buffer.from(await reader.peek(8));
  } else {
    const sniffed = sniffBareDataset(head);
    if (!sniffed) {
      throw new PipelineError(ErrorCodes.DICOM_NOT_DICOM, 'not a DICOM file: no "DICM" prefix and no data set at the start');
    }
    // A bare data set may still start with a file meta group (written without preamble).
    encoding = sniffed;
    if (head.readUInt16LE(0) === 0x0002) {
      meta = await readMeta(reader, limits, budget);
      const ts = asciiValue(meta.get(Tags.TransferSyntaxUID));
      if (ts) {
        transferSyntaxUid = ts;
        encoding = encodingOf(ts);
      }
    } else {
      transferSyntaxUid = !sniffed.littleEndian
        ? TransferSyntax.ExplicitVRBigEndian
        : sniffed.explicitVR
          ? TransferSyntax.ExplicitVRLittleEndian
          : TransferSyntax.ImplicitVRLittleEndian;
    }
  }

  let body = reader;
  const deflated = transferSyntaxUid === TransferSyntax.DeflatedExplicitVRLittleEndian;
  let bodyLimits: ParseLimits = { ...bounds, totalSize: limits.totalSize };
  if (deflated) {
    // Inflated size is unknown up front, so the total-size check cannot apply; the inflation
    // bounds take its place.
    const inflater = createInflateRaw();
    const source = reader.rest();
    let deflatedBytes = 0;
    void (async () => {
      try {
        for await (const chunk of source) {
          if (inflater.destroyed) break;
          deflatedBytes += chunk.length;
          if (!inflater.write(chunk)) {
            await new Promise<void>((r) => {
              inflater.once('drain', r);
              inflater.once('close', r);
            });
          }
        }
        if (!inflater.destroyed) inflater.end();
      } catch (e) {
        inflater.destroy(e as Error);
      }
    })();
    body = new ByteReader(boundedInflation(inflater, () => deflatedBytes, bounds));
    bodyLimits = { ...bounds, totalSize: undefined };
    encoding = { explicitVR: true, littleEndian: true };
  }

  const dataset: DicomDataset = new Map();
  const pixelData = await parseIncrementally(body, encoding, bodyLimits, budget, dataset, true);
  // After the parse, so that a file the declared encoding cannot even parse keeps the parse's code.
  if (datasetHead) checkDatasetEncoding(datasetHead, encoding);
  return { part10, meta, transferSyntaxUid, encoding, deflated, dataset, pixelData, body };
}

/**
 * The inflated data set, failing with DICOM_INFLATION_LIMIT once it passes `maxInflatedBytes`,
 * or (past INFLATION_RATIO_FLOOR) `maxInflationRatio` times the deflated bytes read so far.
 * Other inflation failures are DICOM_MALFORMED. Closing it stops the inflater.
 */
async function* boundedInflation(inflater: Inflate, deflatedBytes: () => number, limits: HeaderLimits): AsyncGenerator<Uint8Array> {
  let inflated = 0;
  try {
    for await (const chunk of inflater as AsyncIterable<Buffer>) {
      inflated += chunk.length;
      if (inflated > limits.maxInflatedBytes) {
        throw new PipelineError(ErrorCodes.DICOM_INFLATION_LIMIT, `deflated data set inflates past ${limits.maxInflatedBytes} bytes (MAX_INFLATED_BYTES)`);
      }
      if (inflated > INFLATION_RATIO_FLOOR && inflated > limits.maxInflationRatio * Math.max(1, deflatedBytes())) {
        throw new PipelineError(
          ErrorCodes.DICOM_INFLATION_LIMIT,
          `deflated data set inflates more than ${limits.maxInflationRatio} times its size (MAX_INFLATION_RATIO)`,
        );
      }
      yield chunk;
    }
  } catch (e) {
    if (e instanceof PipelineError) throw e;
    throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'deflated data set cannot be inflated', { cause: e });
  } finally {
    inflater.destroy();
  }
}

async function readMeta(reader: ByteReader, limits: ParseLimits, budget: HeaderBudget): Promise<DicomDataset> {
  // The meta group is always explicit VR little endian; read element by element until the group ends.
  const meta: DicomDataset = new Map();
  const enc = { explicitVR: true, littleEndian: true };
  const slicer = new Slicer();
  let lastTag = -1;
  for (;;) {
    await slicer.turn();
    const peek = await reader.peek(8);
    if (peek.length < 8 || peek.readUInt16LE(0) !== 0x0002) return meta;
    // Meta elements ascend; a tag at or below the last one starts a second group, which belongs
    // to the data set (where it is not allowed) and must not relabel the file.
    const next = ((0x0002 << 16) | peek.readUInt16LE(2)) >>> 0;
    if (next <= lastTag) return meta;
    // One meta element rarely exceeds a few hundred bytes; fill() keeps what is already buffered.
    await reader.fill(Math.min(4096, limits.maxHeaderBytes));
    const buf = reader.peekAll();
    const p = new SyncParser(buf, enc, false, { maxHeaderBytes: Math.min(limits.maxHeaderBytes, 1 << 20) }, reader.position, budget);
    try {
      const h = p.elementHeader(0);
      if (h.length === UNDEFINED_LENGTH || h.valueOffset + h.length > buf.length) {
        if (h.valueOffset + h.length > (1 << 20)) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'file meta element too large');
        await reader.fill(h.valueOffset + h.length);
        if (reader.bufferedBytes < h.valueOffset + h.length) throw new PipelineError(ErrorCodes.DICOM_TRUNCATED, 'file ends inside the file meta information');
        continue;
      }
      budget.element(h.length);
      meta.set(h.tag, { tag: h.tag, vr: h.vr, value: Buffer.from(buf.subarray(h.valueOffset, h.valueOffset + h.length)) });
      lastTag = h.tag;
      reader.consume(h.valueOffset + h.length);
    } catch (e) {
      if (e instanceof NeedMoreData) {
        if ((await reader.fill(e.needed)) < e.needed) throw new PipelineError(ErrorCodes.DICOM_TRUNCATED, 'file ends inside the file meta information');
        continue;
      }
      throw e;
    }
  }
}

/**
 * Parses the data set from the reader's buffered prefix, pulling more (doubling) where the
 * parse needs it and resuming it there. Consumes what it parsed; the reader then stands at
 * the pixel data value.
 */
async function parseIncrementally(
  reader: ByteReader,
  encoding: Encoding,
  limits: ParseLimits,
  budget: HeaderBudget,
  into: DicomDataset,
  stopAtPixel: boolean,
): Promise<PixelDataHeader | undefined> {
  const base = reader.position;
  let want = 64 * 1024;
  let have = await reader.fill(want);
  const parser = new SyncParser(reader.peekAll(), encoding, have < want, limits, base, budget);
  // Straight into the caller's data set (nothing is parsed twice, so nothing to start over
  // from): copying 100,000 entries into it afterwards took hundreds of ms on one turn.
  const work = parser.parseDataset(into, 0, undefined, stopAtPixel, 0);
  const slicer = new Slicer();
  let r: DatasetEnd;
  for (;;) {
    const step = work.next();
    if (step.done) {
      r = step.value;
      break;
    }
    const signal: ParseSignal = step.value;
    if (signal === PAUSE) {
      const due = slicer.yieldIfDue();
      if (due) await due;
      continue;
    }
    if (want >= limits.maxHeaderBytes) {
      throw new PipelineError(ErrorCodes.DICOM_HEADER_TOO_LARGE, `header is larger than the ${limits.maxHeaderBytes}-byte limit`);
    }
    want = Math.min(Math.max(want * 2, signal + 1), limits.maxHeaderBytes);
    have = await reader.fill(want);
    await runSliced(parser.grow(reader.peekAll(), have < want));
  }
  await runSliced(parser.detach(r.pixel ? r.pixel.valueOffset : r.offset));
  if (r.pixel) {
    reader.consume(r.pixel.valueOffset);
    return { tag: r.pixel.tag, vr: r.pixel.vr, length: r.pixel.length };
  }
  reader.consume(r.offset);
  return undefined;
}

/**
 * Parses what follows the pixel data (digital signatures, padding, private groups): small,
 * held in memory up to the header limit, with a budget of its own.
 */
export async function readTrailing(body: ByteReader, encoding: Encoding, limits: ParseLimits): Promise<DicomDataset> {
  const ds: DicomDataset = new Map();
  if (await body.atEnd()) return ds;
  const bounds = withDefaults(limits);
  await parseIncrementally(body, encoding, bounds, new HeaderBudget(bounds), ds, false);
  return ds;
}

/** A fragment of encapsulated pixel data that declares more bytes than the file holds after its header. */
export function fragmentPastEnd(length: number): PipelineError {
  return new PipelineError(ErrorCodes.DICOM_ELEMENT_TOO_LARGE, `pixel data fragment declares ${length} bytes, more than the file holds`);
}

/**
 * The encapsulated pixel data value (item headers and fragments, through the sequence
 * delimiter) as a sequence of chunks, without holding a whole fragment in memory.
 */
export async function* encapsulatedPixelData(body: ByteReader, littleEndian: boolean, totalSize?: number): AsyncGenerator<Buffer> {
  let items = 0;
  for (;;) {
    const h = await body.read(8);
    const tag = (((littleEndian ? h.readUInt16LE(0) : h.readUInt16BE(0)) << 16) | (littleEndian ? h.readUInt16LE(2) : h.readUInt16BE(2))) >>> 0;
    const length = littleEndian ? h.readUInt32LE(4) : h.readUInt32BE(4);
    // PS3.5 A.4: a basic offset table item (possibly empty), then at least one fragment.
    if (tag === Tags.SequenceDelimitationItem && items < 2) {
      throw new PipelineError(ErrorCodes.DICOM_TRANSFER_SYNTAX_MISMATCH, 'encapsulated pixel data without a basic offset table item and a fragment');
    }
    yield h;
    if (tag === Tags.SequenceDelimitationItem) return;
    items++;
    if (tag !== Tags.Item || length === UNDEFINED_LENGTH) {
      throw new PipelineError(ErrorCodes.DICOM_MALFORMED, `encapsulated pixel data holds ${tagToString(tag)} where a fragment belongs`);
    }
    if (totalSize !== undefined && body.position + length > totalSize) throw fragmentPastEnd(length);
    yield* body.take(length);
  }
}

/** The pixel data value as chunks, whichever its encoding. */
export function pixelDataChunks(header: DicomHeader, totalSize?: number): AsyncGenerator<Buffer> {
  const pixel = header.pixelData;
  if (!pixel) throw new Error('no pixel data');
  return pixel.length === undefined
    ? encapsulatedPixelData(header.body, header.encoding.littleEndian, header.deflated ? undefined : totalSize)
    : header.body.take(pixel.length);
}

/** Everything of a file held in memory: for tests, the verification gate and small files. */
export interface ParsedDicom extends Omit<DicomHeader, 'body'> {
  /** The raw pixel data value (fragments with their item headers when encapsulated). */
  pixelValue?: Buffer;
  trailing: DicomDataset;
}

/** Parses a whole file held in memory. Same errors as readHeader. */
export async function parseDicomBuffer(buf: Uint8Array, limits: Partial<ParseLimits> = {}): Promise<ParsedDicom> {
  const full: ParseLimits = { ...limits, maxHeaderBytes: limits.maxHeaderBytes ?? 1024 * 1024 * 1024, totalSize: limits.totalSize ?? buf.length };
  const reader = bufferReader(buf);
  const header = await readHeader(reader, full);
  const chunks: Buffer[] = [];
  if (header.pixelData) for await (const c of pixelDataChunks(header)) chunks.push(Buffer.from(c));
  const trailing = await readTrailing(header.body, header.encoding, full);
  const { body: _body, ...rest } = header;
  return { ...rest, pixelValue: header.pixelData ? Buffer.concat(chunks) : undefined, trailing };
}
