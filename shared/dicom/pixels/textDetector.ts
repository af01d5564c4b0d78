/**
 * Finding text in pixels: one 8-bit grey frame in, word boxes out. The OCR engine sits behind
 * this interface (tesseract.js in production, see tesseractDetector.ts); the pipeline only
 * needs the boxes, and the verification gate the words.
 */
import type { Box } from './regions';

/** One frame as 8-bit grey, row by row from the top left corner. */
export interface GrayImage {
  width: number;
  height: number;
  /** width × height bytes. */
  data: Uint8Array;
}

/** One word the engine found. `text` is PHI when it is found in a source: never log it. */
export interface TextBox {
  box: Box;
  text: string;
  /** The engine's confidence, 0 to 100. */
  confidence: number;
}

/**
 * Finds the words in a grey image. Idempotent and without side effects; rejects with
 * PipelineError OCR_FAILED when the engine cannot read the image (the caller holds the file).
 */
export interface TextDetector {
  detect(image: GrayImage, options?: { abortSignal?: AbortSignal }): Promise<TextBox[]>;
  /** Stops the engine's workers; later calls start them again. */
  close(): Promise<void>;
}

/** The image as a binary PGM (P5), a format every OCR engine reads without a codec. */
export function toPgm(image: GrayImage): Buffer {
  return Buffer.concat([Buffer.from(`P5\n${image.width} ${image.height}\n255\n`, 'ascii'), Buffer.from(image.data.buffer, image.data.byteOffset, image.width * image.height)]);
}
