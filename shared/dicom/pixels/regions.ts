/**
 * Where burned-in text sits, per device: the `burnedIn` part of a de-identification profile.
 *
 *   "burnedIn": { "regions": [
 *     { "manufacturer": "ACME", "model": "X1", "rows": 480, "columns": 640, "boxes": [[0, 0, 640, 40]] }
 *   ] }
 *
 * Devices that burn text in do so at fixed places for a given model and screen layout, which
 * is why the boxes are keyed by Manufacturer, Manufacturer's Model Name and, optionally, the
 * image size. A box is [x, y, width, height] in pixels, from the top left corner.
 */

/** [x, y, width, height] in pixels. */
export type Box = readonly [number, number, number, number];

export interface RegionSet {
  /** Compared with Manufacturer (0008,0070), trimmed and case-insensitively. */
  manufacturer: string;
  /** Manufacturer's Model Name (0008,1090); absent: every model of the manufacturer. */
  model?: string;
  /** When given, the set applies to images of this size only. */
  rows?: number;
  columns?: number;
  boxes: readonly Box[];
}

export interface BurnedInConfig {
  regions: readonly RegionSet[];
}

const REGION_KEYS = new Set(['manufacturer', 'model', 'rows', 'columns', 'boxes']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= 0xffff;
}

function parseRegion(raw: unknown, where: string, faults: string[]): RegionSet | undefined {
  if (!isRecord(raw)) {
    faults.push(`${where}: must be an object with manufacturer and boxes`);
    return undefined;
  }
  const { manufacturer, model, rows, columns, boxes } = raw;
  let ok = true;
  for (const k of Object.keys(raw)) {
    if (REGION_KEYS.has(k)) continue;
    // A misspelt "model" or "rows" would otherwise widen the set to every device.
    faults.push(`${where}: unknown field "${k}"`);
    ok = false;
  }
  if (typeof manufacturer !== 'string' || manufacturer.trim() === '') {
    faults.push(`${where}: manufacturer must be a non-empty string`);
    ok = false;
  }
  if (model !== undefined && (typeof model !== 'string' || model.trim() === '')) {
    faults.push(`${where}: model must be a non-empty string when given`);
    ok = false;
  }
  for (const [name, v] of [['rows', rows], ['columns', columns]] as const) {
    if (v !== undefined && !isCount(v, 1)) {
      faults.push(`${where}: ${name} must be an integer from 1 to 65535 when given`);
      ok = false;
    }
  }
  const parsedBoxes: Box[] = [];
  if (!Array.isArray(boxes) || boxes.length === 0) {
    faults.push(`${where}: boxes must be a non-empty array of [x, y, width, height]`);
    ok = false;
  } else {
    boxes.forEach((b, i) => {
      const at = `${where}.boxes[${i}]`;
      if (!Array.isArray(b) || b.length !== 4 || !isCount(b[0], 0) || !isCount(b[1], 0) || !isCount(b[2], 1) || !isCount(b[3], 1)) {
        faults.push(`${at}: must be [x, y, width, height], integers, x and y from 0, width and height from 1`);
        ok = false;
        return;
      }
      const box = b as [number, number, number, number];
      if ((isCount(columns, 1) && box[0] + box[2] > columns) || (isCount(rows, 1) && box[1] + box[3] > rows)) {
        // A box that leaves the image it was drawn for was measured on another layout.
        faults.push(`${at}: reaches past the ${String(columns ?? '?')}x${String(rows ?? '?')} image it is declared for`);
        ok = false;
        return;
      }
      parsedBoxes.push(box);
    });
  }
  if (!ok) return undefined;
  return {
    manufacturer: (manufacturer as string).trim(),
    ...(model === undefined ? {} : { model: (model as string).trim() }),
    ...(rows === undefined ? {} : { rows: rows as number }),
    ...(columns === undefined ? {} : { columns: columns as number }),
    boxes: parsedBoxes,
  };
}

/**
 * Validates a profile's `burnedIn` value. Returns the configuration and every fault found
 * (empty when valid), so the profile loader can report them with its own.
 */
export function parseBurnedInConfig(raw: unknown): { config: BurnedInConfig; faults: string[] } {
  const faults: string[] = [];
  if (raw === undefined) return { config: { regions: [] }, faults };
  if (!isRecord(raw)) return { config: { regions: [] }, faults: ['burnedIn: must be an object'] };
  for (const k of Object.keys(raw)) if (k !== 'regions') faults.push(`burnedIn: unknown field "${k}"`);
  const regions: RegionSet[] = [];
  if (raw.regions !== undefined) {
    if (!Array.isArray(raw.regions)) faults.push('burnedIn.regions: must be an array');
    else raw.regions.forEach((r, i) => {
      const region = parseRegion(r, `burnedIn.regions[${i}]`, faults);
      if (region) regions.push(region);
    });
  }
  return { config: { regions }, faults };
}

function same(a: string, b: string): boolean {
  return a.trim().toUpperCase() === b.trim().toUpperCase();
}

export interface DeviceImage {
  manufacturer: string;
  model: string;
  rows: number;
  columns: number;
}

/**
 * Every box that applies to an image of this device, clipped to the image. Every matching
 * set contributes: a manufacturer-wide set and a model's own set both black out their boxes,
 * since blacking out too much loses pixels while too little leaks a name.
 */
export function boxesFor(config: BurnedInConfig, image: DeviceImage): Box[] {
  const out: Box[] = [];
  for (const set of config.regions) {
    if (!same(set.manufacturer, image.manufacturer)) continue;
    if (set.model !== undefined && !same(set.model, image.model)) continue;
    if (set.rows !== undefined && set.rows !== image.rows) continue;
    if (set.columns !== undefined && set.columns !== image.columns) continue;
    for (const [x, y, w, h] of set.boxes) {
      const cw = Math.min(x + w, image.columns) - x;
      const ch = Math.min(y + h, image.rows) - y;
      if (cw > 0 && ch > 0) out.push([x, y, cw, ch]);
    }
  }
  return out;
}
