/**
 * One frame of native pixel data as 8-bit grey, for OCR: what a screen would show, close
 * enough for text to stand out. 8-bit monochrome as is; wider samples windowed (the header's
 * first window, else the frame's own range); colour as its luma (Rec. 601), as a grey screen
 * would show it.
 */
import { asciiValue, DicomDataset, uintValue } from '../dataset';
import { Tags } from '../tags';
import type { PixelGeometry } from './blackout';
import type { GrayImage } from './textDetector';

/** How to read the samples, from the Image Pixel module. */
export interface PixelLook {
  photometric: string;
  bitsStored: number;
  signed: boolean;
  littleEndian: boolean;
  window?: { center: number; width: number };
}

/** The look of a data set's pixels, or why they cannot be turned into grey (a category, never a value). */
export function pixelLook(ds: DicomDataset, littleEndian: boolean, g: PixelGeometry): { look: PixelLook } | { reason: string } {
  const photometric = asciiValue(ds.get(Tags.PhotometricInterpretation))?.toUpperCase() ?? '';
  if (g.samplesPerPixel === 1 && photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2') return { reason: `photometric interpretation ${photometric || 'missing'} not read for OCR` };
  if (g.samplesPerPixel === 3 && photometric !== 'RGB' && photometric !== 'YBR_FULL') return { reason: `photometric interpretation ${photometric || 'missing'} not read for OCR` };
  if (g.samplesPerPixel !== 1 && g.samplesPerPixel !== 3) return { reason: 'samples per pixel other than 1 or 3' };
  if (g.bytesPerSample > 2) return { reason: 'samples wider than 16 bits' };
  const bitsStored = uintValue(ds.get(Tags.BitsStored), littleEndian) ?? g.bytesPerSample * 8;
  const signed = uintValue(ds.get(Tags.PixelRepresentation), littleEndian) === 1;
  const first = (tag: number) => Number(asciiValue(ds.get(tag))?.split('\\')[0]);
  const center = first(Tags.WindowCenter);
  const width = first(Tags.WindowWidth);
  const window = Number.isFinite(center) && Number.isFinite(width) && width > 0 ? { center, width } : undefined;
  return { look: { photometric, bitsStored: Math.min(bitsStored, g.bytesPerSample * 8), signed, littleEndian, ...(window ? { window } : {}) } };
}

/** The frame's bytes (one frame, `g.frameBytes` long) as grey. */
export function grayFrame(frame: Uint8Array, g: PixelGeometry, look: PixelLook): GrayImage {
  const n = g.rows * g.columns;
  const out = new Uint8Array(n);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const mask = look.bitsStored >= 16 ? 0xffff : (1 << look.bitsStored) - 1;
  const sample = (i: number): number => {
    if (g.bytesPerSample === 1) return frame[i] ?? 0;
    const raw = view.getUint16(i * 2, look.littleEndian) & mask;
    return look.signed && raw & (1 << (look.bitsStored - 1)) ? raw - (mask + 1) : raw;
  };
  const spp = g.samplesPerPixel;
  const at = (pixel: number, s: number) => (g.planar ? s * n + pixel : pixel * spp + s);
  // Per pixel: its luma (YBR_FULL carries it as the first channel).
  const value = (p: number) => {
    if (spp === 1) return sample(p);
    if (look.photometric === 'YBR_FULL') return sample(at(p, 0));
    return 0.299 * sample(at(p, 0)) + 0.587 * sample(at(p, 1)) + 0.114 * sample(at(p, 2));
  };
  let lo: number;
  let hi: number;
  if (g.bytesPerSample === 1) {
    lo = 0;
    hi = 255;
  } else if (look.window) {
    lo = look.window.center - look.window.width / 2;
    hi = look.window.center + look.window.width / 2;
  } else {
    lo = Infinity;
    hi = -Infinity;
    for (let p = 0; p < n; p++) {
      const v = value(p);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const invert = look.photometric === 'MONOCHROME1';
  for (let p = 0; p < n; p++) {
    const v = value(p);
    const grey = v <= lo ? 0 : v >= hi ? 255 : Math.round((v - lo) * scale);
    out[p] = invert ? 255 - grey : grey;
  }
  return { width: g.columns, height: g.rows, data: out };
}
