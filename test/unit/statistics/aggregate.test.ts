/**
 * The statistics arithmetic: the aggregate of series shares equals a brute-force count over
 * instances, and small-cell suppression holds for every breakdown under every filter (a filter
 * selects a subset of series, so any subset is tried).
 */
import fc from 'fast-check';

import type { DicomJson } from '../../../shared/dicom/json';
import { aggregate, type Breakdown, BREAKDOWNS, type SeriesRow, seriesStatistics, suppressSmallCells } from '../../../shared/statistics/aggregate';

interface Instance {
  study: string;
  series: string;
  modality: string;
  bodyPart: string;
  maker: string;
  model: string;
  date: string;
  sopClass: string;
  syntax: string;
  size: number;
}

const pick = <T>(values: readonly T[]) => fc.constantFrom(...values);

/** A catalog: series with series-level attributes, each with 1-4 instances of their own class, syntax and size. */
const catalog = fc.array(
  fc.record({
    study: fc.integer({ min: 1, max: 40 }),
    modality: pick(['CT', 'MR', 'DX', 'PT', '']),
    bodyPart: pick(['CHEST', 'HEAD', '']),
    maker: pick(['GE', 'SIEMENS', '']),
    model: pick(['A', 'B', '']),
    date: pick(['20190101', '20200615', '20211231', '']),
    instances: fc.array(fc.record({ sopClass: pick(['1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.4', '1.2.840.10008.5.1.4.1.1.1.1']), syntax: pick(['1.2.840.10008.1.2.1', '1.2.840.10008.1.2.4.70']), size: fc.integer({ min: 0, max: 5000 }) }), { minLength: 1, maxLength: 4 }),
  }),
  { maxLength: 120 },
).map((list) => list.flatMap((s, i): Instance[] => s.instances.map((inst) => ({
  study: `2.25.${s.study}`,
  series: `2.25.${s.study}.${i}`,
  modality: s.modality,
  bodyPart: s.bodyPart,
  maker: s.maker,
  model: s.model,
  date: s.date,
  ...inst,
}))));

function dicomOf(i: Instance): DicomJson {
  const out: DicomJson = {};
  if (i.modality) out['00080060'] = { vr: 'CS', Value: [i.modality] };
  if (i.bodyPart) out['00180015'] = { vr: 'CS', Value: [i.bodyPart] };
  if (i.maker) out['00080070'] = { vr: 'LO', Value: [i.maker] };
  if (i.model) out['00081090'] = { vr: 'LO', Value: [i.model] };
  if (i.date) out['00080020'] = { vr: 'DA', Value: [i.date] };
  return out;
}

/** Series rows as the catalog keeps them: the share recomputed from the series' instances. */
function seriesRows(instances: Instance[]): SeriesRow[] {
  const bySeries = new Map<string, Instance[]>();
  for (const i of instances) bySeries.set(i.series, [...(bySeries.get(i.series) ?? []), i]);
  return [...bySeries.values()].map((list) => {
    const first = list[0] as Instance;
    return {
      studyInstanceUid: first.study,
      seriesInstanceUid: first.series,
      modality: first.modality,
      dicom: dicomOf(first),
      statistics: seriesStatistics(list.map((i) => ({ sopClassUid: i.sopClass, size: i.size, transferSyntaxUid: i.syntax }))),
    };
  });
}

const VALUE: Record<Breakdown, (i: Instance) => string> = {
  modality: (i) => i.modality,
  bodyPart: (i) => i.bodyPart,
  sopClass: (i) => i.sopClass,
  manufacturerModel: (i) => (i.maker === '' && i.model === '' ? '' : `${i.maker} / ${i.model}`),
  year: (i) => i.date.slice(0, 4),
  transferSyntax: (i) => i.syntax,
};

function bruteForce(instances: Instance[], value: (i: Instance) => string) {
  const cells = new Map<string, { studies: Set<string>; series: Set<string>; instances: number; bytes: number }>();
  for (const i of instances) {
    const v = value(i);
    const c = cells.get(v) ?? { studies: new Set(), series: new Set(), instances: 0, bytes: 0 };
    c.studies.add(i.study);
    c.series.add(i.series);
    c.instances += 1;
    c.bytes += i.size;
    cells.set(v, c);
  }
  return cells;
}

describe('aggregate', () => {
  test('given any catalog, then totals and every breakdown cell equal a brute-force count over the instances', () => {
    fc.assert(fc.property(catalog, (instances) => {
      const raw = aggregate(seriesRows(instances));
      expect(raw.totals).toEqual({
        studies: new Set(instances.map((i) => i.study)).size,
        series: new Set(instances.map((i) => i.series)).size,
        instances: instances.length,
        bytes: instances.reduce((n, i) => n + i.size, 0),
      });
      for (const b of BREAKDOWNS) {
        const expected = bruteForce(instances, VALUE[b]);
        const got = raw.breakdowns[b];
        expect(got.map((c) => c.value).sort()).toEqual([...expected.keys()].sort());
        for (const c of got) {
          const e = expected.get(c.value);
          expect({ studies: c.studies, series: c.series, instances: c.instances, bytes: c.bytes })
            .toEqual({ studies: e?.studies.size, series: e?.series.size, instances: e?.instances, bytes: e?.bytes });
        }
      }
    }), { numRuns: 150 });
  });
});

describe('small-cell suppression', () => {
  test('given any catalog, any filter (a subset of its series) and any k, then no shown cell describes fewer than k studies, and the withheld cells of a breakdown together describe at least k', () => {
    fc.assert(fc.property(catalog, fc.integer({ min: 1, max: 25 }), fc.func(fc.boolean()), (instances, k, keep) => {
      const kept = instances.filter((i) => keep(i.series));
      const answer = suppressSmallCells(aggregate(seriesRows(kept)), k);
      const studies = new Set(kept.map((i) => i.study)).size;
      expect(answer.minCellSize).toBe(k);
      if (studies < k) {
        expect(answer.totals).toBeUndefined();
        for (const b of BREAKDOWNS) expect(answer.breakdowns[b].cells).toEqual([]);
        return;
      }
      expect(answer.totals?.studies).toBe(studies);
      for (const b of BREAKDOWNS) {
        const truth = bruteForce(kept, VALUE[b]);
        const shown = new Set(answer.breakdowns[b].cells.map((c) => c.value));
        for (const c of answer.breakdowns[b].cells) expect(c.studies).toBeGreaterThanOrEqual(k);
        const withheld = [...truth.entries()].filter(([v]) => !shown.has(v));
        expect(answer.breakdowns[b].suppressedCells).toBe(withheld.length);
        // Every cell under k is withheld, and what is withheld cannot be narrowed below k by subtraction.
        for (const [v, c] of truth) if (c.studies.size < k) expect(shown.has(v)).toBe(false);
        if (withheld.length > 0) expect(new Set(withheld.flatMap(([, c]) => [...c.studies])).size).toBeGreaterThanOrEqual(k);
      }
    }), { numRuns: 300 });
  });

  test('given 11 studies of CT and 3 of MR with k = 11, then the MR cell is withheld and so is the CT cell that would reveal it', () => {
    const rows: SeriesRow[] = [];
    for (let s = 0; s < 14; s++) {
      rows.push({
        studyInstanceUid: `2.25.${s}`,
        seriesInstanceUid: `2.25.${s}.1`,
        modality: s < 11 ? 'CT' : 'MR',
        dicom: {},
        statistics: seriesStatistics([{ sopClassUid: '1.2.3', size: 10, transferSyntaxUid: '1.2.840.10008.1.2.1' }]),
      });
    }
    const answer = suppressSmallCells(aggregate(rows), 11);
    expect(answer.totals).toEqual({ studies: 14, series: 14, instances: 14, bytes: 140 });
    expect(answer.breakdowns.modality).toEqual({ cells: [], suppressedCells: 2 });
    expect(answer.breakdowns.sopClass.cells).toEqual([{ value: '1.2.3', studies: 14, series: 14, instances: 14, bytes: 140 }]);
  });
});
