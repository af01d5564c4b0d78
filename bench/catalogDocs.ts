/**
 * A generated research catalog (issue 16): study, series and instance documents shaped as the
 * ingestion writes them (shared/catalog/documents.ts), with the series' statistics share, for
 * the statistics and export benches. Deterministic for a seed; research-style UIDs only.
 */
import type { InstanceDocument, ResearchDocument, SeriesDocument, StudyDocument } from '../shared/catalog/documents';
import type { DicomJson } from '../shared/dicom/json';
import { seriesStatistics } from '../shared/statistics/aggregate';
import { mulberry32 } from './generate';

const EQUIPMENT: Record<string, { sopClass: string; parts: string[]; makers: [string, string][]; syntaxes: string[]; bytes: number }> = {
  CT: { sopClass: '1.2.840.10008.5.1.4.1.1.2', parts: ['CHEST', 'ABDOMEN', 'HEAD', 'PELVIS'], makers: [['GE MEDICAL SYSTEMS', 'Revolution CT'], ['SIEMENS', 'SOMATOM Force'], ['CANON', 'Aquilion ONE']], syntaxes: ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2.4.70'], bytes: 525_000 },
  MR: { sopClass: '1.2.840.10008.5.1.4.1.1.4', parts: ['HEAD', 'KNEE', 'SPINE'], makers: [['SIEMENS', 'MAGNETOM Vida'], ['PHILIPS', 'Ingenia']], syntaxes: ['1.2.840.10008.1.2.1'], bytes: 140_000 },
  DX: { sopClass: '1.2.840.10008.5.1.4.1.1.1.1', parts: ['CHEST', 'HAND'], makers: [['CARESTREAM', 'DRX-1'], ['FUJIFILM', 'FDR D-EVO']], syntaxes: ['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.1'], bytes: 9_000_000 },
  PT: { sopClass: '1.2.840.10008.5.1.4.1.1.128', parts: ['WHOLEBODY'], makers: [['GE MEDICAL SYSTEMS', 'Discovery MI']], syntaxes: ['1.2.840.10008.1.2.1'], bytes: 66_000 },
  US: { sopClass: '1.2.840.10008.5.1.4.1.1.6.1', parts: ['ABDOMEN', ''], makers: [['PHILIPS', 'EPIQ 7']], syntaxes: ['1.2.840.10008.1.2.4.50'], bytes: 300_000 },
};
const MODALITIES = Object.keys(EQUIPMENT);

function pick<T>(next: () => number, list: readonly T[]): T {
  return list[next() % list.length] as T;
}

/** Yields the documents of a catalog of about `instances` instance documents (exactly that many). */
export function* generateCatalog(options: { instances: number; seed: number }): Generator<ResearchDocument> {
  const next = mulberry32(options.seed);
  const updatedAt = '2026-01-01T00:00:00.000Z';
  let made = 0;
  for (let s = 0; made < options.instances; s++) {
    const study = `2.25.${options.seed}${String(s).padStart(7, '0')}`;
    const year = 2012 + (next() % 13);
    const studyDate = `${year}${String(1 + (next() % 12)).padStart(2, '0')}${String(1 + (next() % 28)).padStart(2, '0')}`;
    const studyDicom: DicomJson = {
      '00080020': { vr: 'DA', Value: [studyDate] },
      '00080030': { vr: 'TM', Value: ['101500'] },
      '00081030': { vr: 'LO', Value: ['RESEARCH STUDY'] },
      '00100010': { vr: 'PN', Value: [{ Alphabetic: `PSEUDO^${s}` }] },
      '00100020': { vr: 'LO', Value: [`P${s}`] },
      '00100040': { vr: 'CS', Value: [next() % 2 ? 'F' : 'M'] },
      '0020000D': { vr: 'UI', Value: [study] },
    };
    const seriesDocs: SeriesDocument[] = [];
    const seriesCount = 1 + (next() % 3);
    for (let k = 0; k < seriesCount && made < options.instances; k++) {
      const modality = pick(next, MODALITIES);
      const eq = EQUIPMENT[modality] as (typeof EQUIPMENT)[string];
      const [maker, model] = pick(next, eq.makers);
      const part = pick(next, eq.parts);
      const series = `${study}.${k + 1}`;
      const syntax = pick(next, eq.syntaxes);
      const seriesDicom: DicomJson = {
        ...studyDicom,
        '00080060': { vr: 'CS', Value: [modality] },
        '00080070': { vr: 'LO', Value: [maker] },
        '00081090': { vr: 'LO', Value: [model] },
        ...(part ? { '00180015': { vr: 'CS', Value: [part] } } : {}),
        '0020000E': { vr: 'UI', Value: [series] },
        '00200011': { vr: 'IS', Value: [k + 1] },
      };
      const count = Math.min(options.instances - made, modality === 'DX' ? 1 + (next() % 2) : 5 + (next() % 120));
      const rows: { sopClassUid: string; size: number; transferSyntaxUid: string }[] = [];
      for (let i = 1; i <= count; i++) {
        const sop = `${series}.${i}`;
        const size = Math.round(eq.bytes * (0.9 + (next() % 200) / 1000));
        rows.push({ sopClassUid: eq.sopClass, size, transferSyntaxUid: syntax });
        const instance: InstanceDocument = {
          id: `instance:${sop}`,
          type: 'instance',
          studyInstanceUid: study,
          seriesInstanceUid: series,
          sopInstanceUid: sop,
          sopClassUid: eq.sopClass,
          modality,
          transferSyntaxUid: syntax,
          size,
          researchBlob: `${study}/${series}/${sop}.dcm`,
          sourceRank: `r${next().toString(16)}`,
          sourceKey: `k${next().toString(16)}`,
          deidentification: { profile: 'research-default', profileVersion: '1', keyId: 'bench' },
          dicom: { ...seriesDicom, '00080016': { vr: 'UI', Value: [eq.sopClass] }, '00080018': { vr: 'UI', Value: [sop] }, '00200013': { vr: 'IS', Value: [i] } },
          updatedAt,
        };
        yield instance;
        made++;
      }
      const doc: SeriesDocument = {
        id: `series:${series}`,
        type: 'series',
        studyInstanceUid: study,
        seriesInstanceUid: series,
        modality,
        numberOfSeriesRelatedInstances: count,
        sopClassesInSeries: [eq.sopClass],
        statistics: seriesStatistics(rows),
        dicom: { ...seriesDicom, '00201209': { vr: 'IS', Value: [count] } },
        updatedAt,
      };
      seriesDocs.push(doc);
      yield doc;
    }
    const modalities = [...new Set(seriesDocs.map((d) => d.modality))].sort();
    const instanceTotal = seriesDocs.reduce((n, d) => n + d.numberOfSeriesRelatedInstances, 0);
    const studyDoc: StudyDocument = {
      id: `study:${study}`,
      type: 'study',
      studyInstanceUid: study,
      modalitiesInStudy: modalities,
      sopClassesInStudy: [...new Set(seriesDocs.flatMap((d) => d.sopClassesInSeries))].sort(),
      numberOfStudyRelatedSeries: seriesDocs.length,
      numberOfStudyRelatedInstances: instanceTotal,
      dicom: { ...studyDicom, '00080061': { vr: 'CS', Value: modalities }, '00201206': { vr: 'IS', Value: [seriesDocs.length] }, '00201208': { vr: 'IS', Value: [instanceTotal] } },
      updatedAt,
    };
    yield studyDoc;
  }
}
