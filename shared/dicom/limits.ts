/**
 * Bounds on what one file may make the pipeline hold and do. A small crafted header can
 * otherwise declare a million items or elements (hundreds of MB of objects from 8 MB), nest
 * sequences until the stack overflows, or inflate a few hundred KB into gigabytes. Each bound
 * fails the file with its own permanent code (see shared/errors.ts), never a crash.
 */
import { ErrorCodes, PipelineError } from '../errors';

export interface HeaderLimits {
  /** Largest header held in memory (bytes); larger: DICOM_HEADER_TOO_LARGE. */
  maxHeaderBytes: number;
  /** Elements in one header, at every nesting level (items not counted); more: DICOM_TOO_MANY_ELEMENTS. */
  maxElements: number;
  /** Sequence items in one header, at every level; more: DICOM_TOO_MANY_ELEMENTS. */
  maxItems: number;
  /** Sequences nested in sequences; deeper: DICOM_MALFORMED. */
  maxDepth: number;
  /**
   * Estimated memory of the parsed header model (its values plus a fixed cost per element
   * and per item, see ELEMENT_COST / ITEM_COST); more: DICOM_HEADER_MEMORY_LIMIT.
   */
  maxHeaderMemoryBytes: number;
  /** Largest data set a deflated source may inflate to (header and pixel data); more: DICOM_INFLATION_LIMIT. */
  maxInflatedBytes: number;
  /** Largest inflated / deflated ratio, checked once more than INFLATION_RATIO_FLOOR bytes came out; more: DICOM_INFLATION_LIMIT. */
  maxInflationRatio: number;
}

/**
 * The defaults. The largest real header among the fixtures has 2,632 elements, 761 items and
 * nesting 6 deep; an enhanced multi-frame header of 3,000 frames has about 90,000 elements and
 * 24,000 items (an estimated 106 MB, under the memory bound). At the element cap the whole
 * core takes 75-145 MB for a header of tiny elements (more when they are kept texts), 40 MB at
 * the item cap; both caps at once pass the memory bound, which then fails the file. The crafted
 * headers of issue 10 fail at a cap with under 50 MB.
 */
export const DEFAULT_LIMITS: Readonly<HeaderLimits> = {
  maxHeaderBytes: 64 * 1024 * 1024,
  maxElements: 100_000,
  maxItems: 25_000,
  maxDepth: 64,
  maxHeaderMemoryBytes: 128 * 1024 * 1024,
  maxInflatedBytes: 2 * 1024 * 1024 * 1024,
  maxInflationRatio: 200,
};

/** The limits of the ingestion: the header size is always given, the rest default. */
export type IngestLimits = Pick<HeaderLimits, 'maxHeaderBytes'> & Partial<HeaderLimits>;

/** Below this many inflated bytes, the ratio is not checked: small files of zeros compress well and are harmless. */
export const INFLATION_RATIO_FLOOR = 16 * 1024 * 1024;

/**
 * Estimated memory of one element and one item, beyond their value bytes, through the whole
 * core: parse, de-identification, the output header and the gate's re-parse of it (measured
 * with the crafted inputs of tools/fuzzInputs.ts: 100,000 tiny elements raised the RSS by
 * 74 MB, 100,000 kept texts by 104-145 MB, 25,000 empty items by 36-40 MB).
 */
export const ELEMENT_COST = 768;
export const ITEM_COST = 1536;

export function withDefaults(limits: Partial<HeaderLimits> = {}): HeaderLimits {
  const out = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(out) as (keyof HeaderLimits)[]) {
    const v = limits[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * Counts what one parse builds and throws as soon as a bound is passed. One budget covers the
 * header of a file; the elements after the pixel data get their own.
 */
export class HeaderBudget {
  elements = 0;
  items = 0;
  memory = 0;

  constructor(readonly limits: HeaderLimits) {}

  element(valueBytes: number): void {
    this.elements++;
    this.memory += ELEMENT_COST + valueBytes;
    if (this.elements > this.limits.maxElements) {
      throw new PipelineError(ErrorCodes.DICOM_TOO_MANY_ELEMENTS, `header holds more than ${this.limits.maxElements} elements (MAX_HEADER_ELEMENTS)`);
    }
    this.checkMemory();
  }

  item(): void {
    this.items++;
    this.memory += ITEM_COST;
    if (this.items > this.limits.maxItems) {
      throw new PipelineError(ErrorCodes.DICOM_TOO_MANY_ELEMENTS, `header holds more than ${this.limits.maxItems} sequence items (MAX_SEQUENCE_ITEMS)`);
    }
    this.checkMemory();
  }

  depth(depth: number): void {
    if (depth > this.limits.maxDepth) {
      throw new PipelineError(ErrorCodes.DICOM_MALFORMED, `sequences nested more than ${this.limits.maxDepth} deep (MAX_SEQUENCE_DEPTH)`);
    }
  }

  private checkMemory(): void {
    if (this.memory > this.limits.maxHeaderMemoryBytes) {
      throw new PipelineError(
        ErrorCodes.DICOM_HEADER_MEMORY_LIMIT,
        `header would take more than ${this.limits.maxHeaderMemoryBytes} bytes of memory (MAX_HEADER_MEMORY_BYTES)`,
      );
    }
  }
}

/**
 * Runs long synchronous work in slices: the work is a generator that yields now and then
 * (every few hundred elements); between slices longer than `sliceMs` the event loop gets a
 * turn, so that one large header does not stall the other files in flight.
 */
export async function runSliced<T>(work: Generator<unknown, T>, sliceMs = SLICE_MS): Promise<T> {
  const slicer = new Slicer(sliceMs);
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
    const due = slicer.yieldIfDue();
    if (due) await due;
  }
}

/**
 * For async loops that do a little synchronous work per turn (awaits that resolve at once do
 * not let timers or I/O run): `turn()` yields to the event loop once SLICE_MS have passed.
 */
export class Slicer {
  private sliceStart = performance.now();
  private steps = 0;

  constructor(private readonly sliceMs = SLICE_MS) {}

  /** Cheap to call per element: looks at the clock every STEPS_PER_CHECK calls. */
  turn(): Promise<void> | undefined {
    if (++this.steps % STEPS_PER_CHECK !== 0) return undefined;
    return this.yieldIfDue();
  }

  /** Yields when the slice is used up, whatever the step count. */
  yieldIfDue(): Promise<void> | undefined {
    if (performance.now() - this.sliceStart < this.sliceMs) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        this.sliceStart = performance.now();
        resolve();
      }),
    );
  }
}

/** One turn of the event loop: between two stretches of synchronous work that each fit a slice, but not both. */
export function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** Drives sliced work to its end without yielding (for synchronous callers). */
export function runToEnd<T>(work: Generator<unknown, T>): T {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/** Longest stretch of header work between two turns of the event loop. */
export const SLICE_MS = 10;
/** Elements (or items) processed between two checks of the clock. */
export const STEPS_PER_CHECK = 64;
