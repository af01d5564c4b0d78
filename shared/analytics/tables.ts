/**
 * The analytics export's tables (issue 16): their columns, and the row each research catalog
 * document becomes. No I/O.
 *
 * Only research catalog fields go in, and of those only what analysts count and join on: the
 * research UIDs, the de-identified study, series and equipment attributes the statistics use,
 * sizes and syntaxes. Left out on purpose: the keyed hashes that tie an instance to its source
 * (`sourceKey`, `sourceRank`, `sourceVersion`), the de-identification key id, the frame index,
 * and every other DICOM attribute (a table is a fixed schema, not the data set). Nothing comes
 * from the restricted index.
 *
 * Every table is partitioned by `modality` and `year` (hive style, `modality=CT/year=2019/`).
 * The year is that of the shifted (de-identified) StudyDate, as in the statistics API. A study
 * with several modalities is filed under their sorted set joined by `-` (`modality=CT-PT`), so
 * each study is one row; its `modalities` list column answers "studies with a CT".
 */
import type { InstanceDocument, ResearchDocument, SeriesDocument, StudyDocument } from '../catalog/documents';
import type { DicomJson } from '../dicom/json';

export const TABLES = ['instances', 'series', 'studies'] as const;
export type TableName = (typeof TABLES)[number];

export type ColumnType = 'VARCHAR' | 'INTEGER' | 'BIGINT' | 'DATE' | 'TIMESTAMP' | 'VARCHAR[]';

export interface Column {
  name: string;
  type: ColumnType;
  description: string;
}

/** The hive partition columns, in folder order. They are folder names, not columns of the files. */
export const PARTITION_COLUMNS = ['modality', 'year'] as const;

const partitionColumns: Column[] = [
  { name: 'modality', type: 'VARCHAR', description: 'Modality (studies: the sorted modalities joined by "-"); partition folder' },
  { name: 'year', type: 'INTEGER', description: 'Year of the shifted (de-identified) StudyDate; partition folder (__HIVE_DEFAULT_PARTITION__ when absent)' },
];

const studyColumns: Column[] = [
  { name: 'study_instance_uid', type: 'VARCHAR', description: 'Research StudyInstanceUID' },
  { name: 'patient_id', type: 'VARCHAR', description: 'Research pseudonym of the patient (de-identified PatientID)' },
  { name: 'study_date', type: 'DATE', description: 'Shifted StudyDate' },
];

const equipmentColumns: Column[] = [
  { name: 'body_part_examined', type: 'VARCHAR', description: 'BodyPartExamined' },
  { name: 'manufacturer', type: 'VARCHAR', description: 'Manufacturer' },
  { name: 'manufacturer_model_name', type: 'VARCHAR', description: 'ManufacturerModelName' },
];

const updatedAt: Column = { name: 'updated_at', type: 'TIMESTAMP', description: 'When the catalog document was last written' };

/** The columns of each table, partition columns last (as DuckDB lists them when reading with hive_partitioning). */
export const SCHEMAS: Record<TableName, Column[]> = {
  instances: [
    ...studyColumns,
    { name: 'series_instance_uid', type: 'VARCHAR', description: 'Research SeriesInstanceUID' },
    { name: 'sop_instance_uid', type: 'VARCHAR', description: 'Research SOPInstanceUID' },
    { name: 'sop_class_uid', type: 'VARCHAR', description: 'SOPClassUID' },
    { name: 'transfer_syntax_uid', type: 'VARCHAR', description: 'Transfer syntax of the research copy' },
    { name: 'instance_number', type: 'INTEGER', description: 'InstanceNumber' },
    { name: 'size_bytes', type: 'BIGINT', description: 'Bytes of the research copy' },
    { name: 'research_blob', type: 'VARCHAR', description: 'Name of the research copy in the research container' },
    ...equipmentColumns,
    { name: 'deid_profile', type: 'VARCHAR', description: 'De-identification profile that produced the copy' },
    { name: 'deid_profile_version', type: 'VARCHAR', description: 'Version of that profile' },
    updatedAt,
    ...partitionColumns,
  ],
  series: [
    ...studyColumns,
    { name: 'series_instance_uid', type: 'VARCHAR', description: 'Research SeriesInstanceUID' },
    { name: 'series_number', type: 'INTEGER', description: 'SeriesNumber' },
    { name: 'series_description', type: 'VARCHAR', description: 'SeriesDescription (as the profile left it)' },
    ...equipmentColumns,
    { name: 'number_of_instances', type: 'INTEGER', description: 'Instances of the series in the catalog' },
    { name: 'size_bytes', type: 'BIGINT', description: 'Bytes of the series\' research copies (NULL for a series summarised before 0.8.0)' },
    { name: 'sop_classes', type: 'VARCHAR[]', description: 'SOP classes in the series' },
    updatedAt,
    ...partitionColumns,
  ],
  studies: [
    ...studyColumns,
    { name: 'patient_sex', type: 'VARCHAR', description: 'PatientSex' },
    { name: 'study_description', type: 'VARCHAR', description: 'StudyDescription (as the profile left it)' },
    { name: 'modalities', type: 'VARCHAR[]', description: 'Modalities in the study, sorted' },
    { name: 'number_of_series', type: 'INTEGER', description: 'Series of the study in the catalog' },
    { name: 'number_of_instances', type: 'INTEGER', description: 'Instances of the study in the catalog' },
    updatedAt,
    ...partitionColumns,
  ],
};

export type CellValue = string | number | readonly string[] | null;
export type Row = Record<string, CellValue>;

const TAG = {
  StudyDate: '00080020',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  Manufacturer: '00080070',
  ManufacturerModelName: '00081090',
  PatientID: '00100020',
  PatientSex: '00100040',
  BodyPartExamined: '00180015',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
} as const;

function text(dicom: DicomJson | undefined, tag: string): string | null {
  const v = dicom?.[tag]?.Value?.[0];
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string') return null;
  const t = v.trim();
  return t === '' ? null : t;
}

function integer(dicom: DicomJson | undefined, tag: string): number | null {
  const t = text(dicom, tag);
  if (t === null || !/^[+-]?\d{1,9}$/.test(t)) return null;
  return Number(t);
}

/** `YYYYMMDD` (DA) as `YYYY-MM-DD`, or null when it is not a calendar date. */
export function isoDate(da: string | null): string | null {
  const m = da === null ? null : /^(\d{4})(\d{2})(\d{2})$/.exec(da);
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(y, mo - 1, d));
  return date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d ? `${m[1]}-${m[2]}-${m[3]}` : null;
}

/** The year partition: the first four digits of the shifted StudyDate, as the statistics' year breakdown reads it. */
export function yearOf(dicom: DicomJson | undefined): number | null {
  const da = text(dicom, TAG.StudyDate);
  return da !== null && /^\d{4}/.test(da) ? Number(da.slice(0, 4)) : null;
}

/**
 * A value as a folder name: Modality is a code string (upper case, digits, `_`, space), but the
 * catalog keeps what the file said; anything else becomes `_`, so no value can add a path level.
 * Absent values are NULL (DuckDB's `__HIVE_DEFAULT_PARTITION__`).
 */
export function partitionValue(value: string | null | undefined): string | null {
  const t = (value ?? '').trim();
  return t === '' ? null : t.replace(/[^A-Za-z0-9_-]/g, '_');
}

function common(doc: ResearchDocument): Row {
  return {
    study_instance_uid: doc.studyInstanceUid,
    patient_id: text(doc.dicom, TAG.PatientID),
    study_date: isoDate(text(doc.dicom, TAG.StudyDate)),
  };
}

function equipment(dicom: DicomJson | undefined): Row {
  return {
    body_part_examined: text(dicom, TAG.BodyPartExamined)?.toUpperCase() ?? null,
    manufacturer: text(dicom, TAG.Manufacturer),
    manufacturer_model_name: text(dicom, TAG.ManufacturerModelName),
  };
}

function instanceRow(doc: InstanceDocument): Row {
  return {
    ...common(doc),
    series_instance_uid: doc.seriesInstanceUid,
    sop_instance_uid: doc.sopInstanceUid,
    sop_class_uid: doc.sopClassUid,
    transfer_syntax_uid: doc.transferSyntaxUid ?? null,
    instance_number: integer(doc.dicom, TAG.InstanceNumber),
    size_bytes: typeof doc.size === 'number' ? doc.size : null,
    research_blob: doc.researchBlob ?? null,
    ...equipment(doc.dicom),
    deid_profile: doc.deidentification?.profile ?? null,
    deid_profile_version: doc.deidentification?.profileVersion ?? null,
    updated_at: doc.updatedAt ?? null,
    modality: partitionValue(doc.modality),
    year: yearOf(doc.dicom),
  };
}

function seriesRow(doc: SeriesDocument): Row {
  return {
    ...common(doc),
    series_instance_uid: doc.seriesInstanceUid,
    series_number: integer(doc.dicom, TAG.SeriesNumber),
    series_description: text(doc.dicom, TAG.SeriesDescription),
    ...equipment(doc.dicom),
    number_of_instances: doc.numberOfSeriesRelatedInstances ?? null,
    size_bytes: doc.statistics ? doc.statistics.bytes : null,
    sop_classes: [...(doc.sopClassesInSeries ?? [])],
    updated_at: doc.updatedAt ?? null,
    modality: partitionValue(doc.modality),
    year: yearOf(doc.dicom),
  };
}

function studyRow(doc: StudyDocument): Row {
  const modalities = [...new Set((doc.modalitiesInStudy ?? []).map((m) => m.trim()).filter(Boolean))].sort();
  return {
    ...common(doc),
    patient_sex: text(doc.dicom, TAG.PatientSex),
    study_description: text(doc.dicom, TAG.StudyDescription),
    modalities,
    number_of_series: doc.numberOfStudyRelatedSeries ?? null,
    number_of_instances: doc.numberOfStudyRelatedInstances ?? null,
    updated_at: doc.updatedAt ?? null,
    modality: partitionValue(modalities.join('-')),
    year: yearOf(doc.dicom),
  };
}

/**
 * The table and row a catalog document becomes; undefined for a document of another type
 * (the catalog container holds nothing else today, but a reader must not guess).
 */
export function rowOf(doc: ResearchDocument): { table: TableName; row: Row } | undefined {
  switch (doc.type) {
    case 'instance':
      return { table: 'instances', row: instanceRow(doc) };
    case 'series':
      return { table: 'series', row: seriesRow(doc) };
    case 'study':
      return { table: 'studies', row: studyRow(doc) };
    default:
      return undefined;
  }
}
