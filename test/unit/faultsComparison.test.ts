/**
 * The fault tests' comparison with a clean run (test/integration/faults/harness.ts). An instance
 * written from two sources comes from the most recently written one; when a storage outage
 * delays one upload, that can be the other source than in the clean run. CI saw this once in
 * six runs of "Azurite stopped mid-burst": the comparison called the rule's correct outcome a
 * catalog difference. It must accept it, and still catch an instance that breaks the rule.
 */
import { compareWithClean, PipelineSnapshot } from '../integration/faults/harness';

const STUDY = '2.25.1';
const SERIES = '2.25.2';
const SOP = '2.25.3';
const BLOB = `${STUDY}/${SERIES}/${SOP}.dcm`;

/** Two sources (a.dcm, b.dcm) of one instance, and one single-source instance (c.dcm). */
function snapshot(ranks: { a: string; b: string }, fromSource: 'a' | 'b', copySize: number, seriesBytes: number): PipelineSnapshot {
  const instance = (size: number, ts: string) => ({ id: `instance:${SOP}`, type: 'instance', studyInstanceUid: STUDY, seriesInstanceUid: SERIES, sopInstanceUid: SOP, size, transferSyntaxUid: ts });
  const winner = fromSource === 'a' ? instance(copySize, '1.2.840.10008.1.2.4.70') : instance(copySize, '1.2.840.10008.1.2.5');
  return {
    landing: ['a.dcm', 'b.dcm', 'c.dcm'],
    index: new Map([
      ['a.dcm', { status: 'cataloged', researchSop: SOP }],
      ['b.dcm', { status: 'cataloged', researchSop: SOP }],
      ['c.dcm', { status: 'cataloged', researchSop: '2.25.9' }],
    ]),
    catalog: new Map<string, Record<string, unknown>>([
      [`${STUDY}/instance:${SOP}`, winner],
      [`${STUDY}/instance:2.25.9`, { id: 'instance:2.25.9', type: 'instance', size: 10 }],
      [`${STUDY}/series:${SERIES}`, { id: `series:${SERIES}`, type: 'series', numberOfSeriesRelatedInstances: 2, statistics: { bytes: seriesBytes } }],
    ]),
    researchBlobs: new Map([[BLOB, copySize], [`${STUDY}/${SERIES}/2.25.9.dcm`, 10]]),
    counts: { studies: 1, series: 1, instances: 2 },
    sources: new Map([
      ['a.dcm', { sop: SOP, rank: ranks.a, blob: BLOB, study: STUDY, series: SERIES }],
      ['b.dcm', { sop: SOP, rank: ranks.b, blob: BLOB, study: STUDY, series: SERIES }],
      ['c.dcm', { sop: '2.25.9', rank: '2026-12-03T05:00:00.000Z|cc', blob: `${STUDY}/${SERIES}/2.25.9.dcm`, study: STUDY, series: SERIES }],
    ]),
    instanceRanks: new Map([[SOP, fromSource === 'a' ? ranks.a : ranks.b], ['2.25.9', '2026-12-03T05:00:00.000Z|cc']]),
  };
}

const files = ['a.dcm', 'b.dcm', 'c.dcm'];
// Clean run: both written in the same second, the keyed hash of the URL decides (a).
const clean = snapshot({ a: '2026-12-03T05:00:00.000Z|ff', b: '2026-12-03T05:00:00.000Z|00' }, 'a', 700, 710);

describe('compareWithClean', () => {
  it('given an outage that wrote b a second after a, when b wins as the rule says, then nothing differs', () => {
    const run = snapshot({ a: '2026-12-03T05:00:00.000Z|ff', b: '2026-12-03T05:00:03.000Z|00' }, 'b', 900, 910);
    expect(compareWithClean(files, new Set(), clean, run)).toMatchObject({ lost: [], diverged: [], catalogDiff: [] });
  });

  it('given the same later write of b, when a still wins, then the instance is reported as breaking the rule', () => {
    const run = snapshot({ a: '2026-12-03T05:00:00.000Z|ff', b: '2026-12-03T05:00:03.000Z|00' }, 'a', 700, 710);
    expect(compareWithClean(files, new Set(), clean, run).catalogDiff).toEqual([`instance ${SOP} is not from its most recently written source (b.dcm)`]);
  });

  it('given the same winner as the clean run, when its copy or its series differ, then they are reported', () => {
    const run = snapshot({ a: '2026-12-03T05:00:09.000Z|ff', b: '2026-12-03T05:00:00.000Z|00' }, 'a', 701, 711);
    expect(compareWithClean(files, new Set(), clean, run).catalogDiff).toEqual([`different ${STUDY}/instance:${SOP} (size)`, `different ${STUDY}/series:${SERIES} (statistics.bytes)`, `research copy different ${BLOB}`]);
  });

  it('given another winner, when its series lost an instance, then the series is still reported', () => {
    const run = snapshot({ a: '2026-12-03T05:00:00.000Z|ff', b: '2026-12-03T05:00:03.000Z|00' }, 'b', 900, 910);
    run.catalog.set(`${STUDY}/series:${SERIES}`, { id: `series:${SERIES}`, type: 'series', numberOfSeriesRelatedInstances: 1, statistics: { bytes: 910 } });
    expect(compareWithClean(files, new Set(), clean, run).catalogDiff).toEqual([`different ${STUDY}/series:${SERIES} (numberOfSeriesRelatedInstances, statistics.bytes)`]);
  });
});
