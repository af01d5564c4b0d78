/**
 * The TextDetector on tesseract.js, offline: the English model comes from the npm package
 * `@tesseract.js-data/eng` on disk and nothing is cached or fetched anywhere else.
 *
 * A pool of `workers` engine workers (each a worker thread holding one WebAssembly engine,
 * about 30 MB), started on first use. Jobs beyond the pool wait in a FIFO queue: OCR has its
 * own bound, apart from the ingestion limiter, so a burst of ultrasound clips queues here
 * while the files that need no OCR go on.
 */
import { createRequire } from 'node:module';

import { createWorker, OEM, PSM, type Worker } from 'tesseract.js';

import { ErrorCodes, PipelineError } from '../../errors';
import { GrayImage, TextBox, TextDetector, toPgm } from './textDetector';

export interface TesseractOptions {
  /** Engine workers running at once (1 to 16). */
  workers: number;
}

/** Where the English model lies: the package's own folder (a local path, never a URL). */
function englishModelPath(): string {
  const requireHere = createRequire(__filename);
  const data = requireHere('@tesseract.js-data/eng') as { langPath: string };
  return data.langPath;
}

interface Slot {
  worker: Promise<Worker>;
  busy: boolean;
}

interface Word {
  text: string;
  confidence: number;
  bbox: { x0: number; y0: number; x1: number; y1: number };
}

/** Every detector of this process, for closeAllTextDetectors. */
const live = new Set<TesseractDetector>();

/**
 * Stops the engine workers of every detector in this process (the app's appTerminate hook): a
 * worker thread left running would keep the process (a local host inside a test run) alive.
 */
export async function closeAllTextDetectors(): Promise<void> {
  await Promise.all([...live].map((d) => d.close()));
}

export class TesseractDetector implements TextDetector {
  private slots: Slot[] = [];
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly options: TesseractOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1 || options.workers > 16) throw new RangeError('workers must be an integer from 1 to 16');
    live.add(this);
  }

  private startWorker(): Promise<Worker> {
    return (async () => {
      const worker = await createWorker('eng', OEM.LSTM_ONLY, { langPath: englishModelPath(), gzip: true, cacheMethod: 'none' });
      // Sparse text: overlays are scattered words and lines on an image, not a page. Adaptive
      // (tiled Otsu) thresholds: a light label over one band of an image and a dark one elsewhere.
      await worker.setParameters({ tessedit_pageseg_mode: PSM.SPARSE_TEXT, user_defined_dpi: '96', thresholding_method: '1' });
      return worker;
    })();
  }

  private async acquire(): Promise<Slot> {
    for (;;) {
      const free = this.slots.find((s) => !s.busy);
      if (free) {
        free.busy = true;
        return free;
      }
      if (this.slots.length < this.options.workers) {
        const slot: Slot = { worker: this.startWorker(), busy: true };
        this.slots.push(slot);
        return slot;
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private release(slot: Slot): void {
    slot.busy = false;
    this.waiting.shift()?.();
  }

  /** Jobs waiting for a worker now. */
  get queued(): number {
    return this.waiting.length;
  }

  async detect(image: GrayImage, options: { abortSignal?: AbortSignal } = {}): Promise<TextBox[]> {
    options.abortSignal?.throwIfAborted();
    const slot = await this.acquire();
    try {
      const worker = await slot.worker;
      const result = await worker.recognize(toPgm(image), {}, { blocks: true, text: false });
      const words: Word[] = [];
      for (const block of result.data.blocks ?? []) for (const p of block.paragraphs) for (const l of p.lines) words.push(...l.words);
      return words.map((w) => ({ box: [w.bbox.x0, w.bbox.y0, w.bbox.x1 - w.bbox.x0, w.bbox.y1 - w.bbox.y0] as const, text: w.text, confidence: w.confidence }));
    } catch (e) {
      // A worker that failed is dropped: the next job starts a new one.
      this.slots = this.slots.filter((s) => s !== slot);
      void slot.worker.then((w) => w.terminate()).catch(() => undefined);
      throw new PipelineError(ErrorCodes.OCR_FAILED, 'the OCR engine could not read a frame', { cause: e });
    } finally {
      this.release(slot);
    }
  }

  async close(): Promise<void> {
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map(async (s) => (await s.worker.catch(() => undefined))?.terminate()));
  }
}
