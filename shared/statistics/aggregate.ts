/**
 * Catalog statistics as arithmetic: a series' share (from its instances), the aggregate of the
 * matching series, and the small-cell suppression that research-facing answers get. No I/O.
 *
 * Why series shares: the local Cosmos server has no GROUP BY, and a counter kept at ingestion
 * would be applied twice by a redelivered event or a retried attempt. The series summary is
 * already recomputed from its instance documents after every change (cosmosCatalog.ts), with
 * optimistic concurrency, so its share is a recomputation as well: idempotent under
 * redelivery, deletes and re-ingestion by construction. An answer then reads one document per
 * series instead of one per instance.
 */
import type { SeriesStatistics } from '../catalog/documents';
import type { DicomJson } from '../dicom/json';

/** The default of STATISTICS_MIN_CELL: cells describing fewer studies are withheld. */
export const DEFAULT_MIN_CELL = 11;

/** A series' share of the statistics, from its instances' projections; keys sorted, so equal shares serialise alike. */
export function seriesStatistics(rows: readonly { sopClassUid: string; size?: number; transferSyntaxUid?: string }[]): SeriesStatistics {
  const tally = (key: (r: (typeof rows)[number]) => string) => {
    const out: Record<string, { instances: number; bytes: number }> = {};
    const sorted = [...rows].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    for (const r of sorted) {
      const cell = (out[key(r)] ??= { instances: 0, bytes: 0 });
      cell.instances += 1;
      cell.bytes += r.size ?? 0;
    }
    return out;
  };
  return {
    bytes: rows.reduce((n, r) => n + (r.size ?? 0), 0),
    sopClasses: tally((r) => r.sopClassUid),
    transferSyntaxes: tally((r) => r.transferSyntaxUid ?? ''),
  };
}

/** What the aggregation reads of one series summary document. */
export interface SeriesRow {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  modality?: string;
  dicom: DicomJson;
  statistics: SeriesStatistics;
}

export const BREAKDOWNS = ['modality', 'bodyPart', 'sopClass', 'manufacturerModel', 'year', 'transferSyntax'] as const;
export type Breakdown = (typeof BREAKDOWNS)[number];

export interface Counts {
  studies: number;
  series: number;
  instances: number;
  bytes: number;
}

/** One cell of a breakdown; `value` is '' when the attribute is absent. */
export interface Cell extends Counts {
  value: string;
}

/** Before suppression: each cell keeps the studies it describes, which suppression needs. */
export interface RawCell extends Cell {
  studyUids: ReadonlySet<string>;
}

export interface RawStatistics {
  totals: Counts;
  breakdowns: Record<Breakdown, RawCell[]>;
}

export interface BreakdownAnswer {
  cells: Cell[];
  /** Cells withheld (fewer than the minimum studies, or withheld so that they cannot be derived); never their counts. */
  suppressedCells: number;
}

export interface StatisticsAnswer {
  minCellSize: number;
  /** Absent when the matching catalog holds fewer studies than the minimum: then no breakdown is shown either. */
  totals?: Counts;
  breakdowns: Record<Breakdown, BreakdownAnswer>;
}

const TAG = {
  Modality: '00080060',
  BodyPartExamined: '00180015',
  Manufacturer: '00080070',
  ManufacturerModelName: '00081090',
  StudyDate: '00080020',
} as const;

function text(dicom: DicomJson, tag: string): string {
  const v = dicom[tag]?.Value?.[0];
  return typeof v === 'string' || typeof v === 'number' ? String(v).trim() : '';
}

class Tally {
  readonly studyUids = new Set<string>();
  readonly seriesUids = new Set<string>();
  instances = 0;
  bytes = 0;
  add(row: SeriesRow, instances: number, bytes: number): void {
    this.studyUids.add(row.studyInstanceUid);
    this.seriesUids.add(row.seriesInstanceUid);
    this.instances += instances;
    this.bytes += bytes;
  }
  cell(value: string): RawCell {
    return { value, studies: this.studyUids.size, series: this.seriesUids.size, instances: this.instances, bytes: this.bytes, studyUids: this.studyUids };
  }
}

function instancesOf(s: SeriesStatistics): number {
  return Object.values(s.sopClasses).reduce((n, c) => n + c.instances, 0);
}

/** Aggregates series shares. A series is counted once per breakdown value it carries. */
export function aggregate(rows: Iterable<SeriesRow>): RawStatistics {
  const total = new Tally();
  const maps = Object.fromEntries(BREAKDOWNS.map((b) => [b, new Map<string, Tally>()])) as Record<Breakdown, Map<string, Tally>>;
  const into = (b: Breakdown, value: string, row: SeriesRow, instances: number, bytes: number) => {
    const m = maps[b];
    let t = m.get(value);
    if (!t) m.set(value, (t = new Tally()));
    t.add(row, instances, bytes);
  };
  for (const row of rows) {
    const s = row.statistics;
    const instances = instancesOf(s);
    if (instances === 0) continue;
    total.add(row, instances, s.bytes);
    into('modality', row.modality ?? text(row.dicom, TAG.Modality), row, instances, s.bytes);
    into('bodyPart', text(row.dicom, TAG.BodyPartExamined).toUpperCase(), row, instances, s.bytes);
    const maker = text(row.dicom, TAG.Manufacturer);
    const model = text(row.dicom, TAG.ManufacturerModelName);
    into('manufacturerModel', maker === '' && model === '' ? '' : `${maker} / ${model}`, row, instances, s.bytes);
    into('year', text(row.dicom, TAG.StudyDate).slice(0, 4), row, instances, s.bytes);
    for (const [uid, c] of Object.entries(s.sopClasses)) into('sopClass', uid, row, c.instances, c.bytes);
    for (const [uid, c] of Object.entries(s.transferSyntaxes)) into('transferSyntax', uid, row, c.instances, c.bytes);
  }
  const breakdowns = Object.fromEntries(BREAKDOWNS.map((b) => [
    b,
    [...maps[b]].map(([value, t]) => t.cell(value)).sort((x, y) => y.studies - x.studies || y.instances - x.instances || (x.value < y.value ? -1 : 1)),
  ])) as Record<Breakdown, RawCell[]>;
  const t = total.cell('');
  return { totals: { studies: t.studies, series: t.series, instances: t.instances, bytes: t.bytes }, breakdowns };
}

function publicCell(c: RawCell): Cell {
  return { value: c.value, studies: c.studies, series: c.series, instances: c.instances, bytes: c.bytes };
}

/**
 * Small-cell suppression (disclosure control): a cell describing fewer than `k` studies is
 * withheld. Since the totals are shown, the withheld cells of a breakdown could be recovered
 * by subtraction when they are few, so further cells (smallest first) are withheld until the
 * withheld ones together describe at least `k` studies. When the matching catalog itself
 * holds fewer than `k` studies, nothing but the minimum is shown.
 */
export function suppressSmallCells(raw: RawStatistics, k: number): StatisticsAnswer {
  const hidden = raw.totals.studies < k;
  const breakdowns = Object.fromEntries(BREAKDOWNS.map((b) => {
    const cells = raw.breakdowns[b];
    if (hidden) return [b, { cells: [], suppressedCells: cells.length }];
    const withheld = new Set(cells.filter((c) => c.studies < k));
    if (withheld.size > 0) {
      const union = new Set<string>();
      for (const c of withheld) for (const u of c.studyUids) union.add(u);
      // Smallest first: the least information is withheld to protect the rest.
      const shown = cells.filter((c) => !withheld.has(c)).sort((x, y) => x.studies - y.studies || x.instances - y.instances);
      for (const c of shown) {
        if (union.size >= k) break;
        withheld.add(c);
        for (const u of c.studyUids) union.add(u);
      }
    }
    return [b, { cells: cells.filter((c) => !withheld.has(c)).map(publicCell), suppressedCells: withheld.size }];
  })) as Record<Breakdown, BreakdownAnswer>;
  return { minCellSize: k, ...(hidden ? {} : { totals: raw.totals }), breakdowns };
}
