import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { asciiValue, DicomDataset } from '../../../shared/dicom/dataset';
import { basicProfile, loadProfile, Profile } from '../../../shared/dicom/deid/profile';
import researchDefault from '../../../shared/dicom/deid/profiles/research-default.json';
import { researchUid } from '../../../shared/dicom/deid/pseudonyms';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { tagOf } from '../dicom/deid/helpers';
import { deidentifyThroughCore } from './coreHelpers';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('structured content key, 32 bytes');

/** The research default: Clean Structured Content is one of its options (since 1.2.0). */
const researchDefaultProfile = (): Profile => loadProfile(researchDefault);

const CONTENT_SEQUENCE = tagOf('ContentSequence');
const REFERENCED_SOP_INSTANCE_UID = tagOf('ReferencedSOPInstanceUID');

async function deidentify(source: Buffer, profile: Profile): Promise<DicomDataset> {
  return (await parseDicomBuffer((await deidentifyThroughCore(source, profile, key)).bytes)).dataset;
}

/** The content tree's shape: each item's value type and concept name code, depth first, with its numeric value. */
function shape(ds: DicomDataset, out: string[] = [], depth = 0): string[] {
  for (const item of ds.get(CONTENT_SEQUENCE)?.items ?? []) {
    const concept = item.get(tagOf('ConceptNameCodeSequence'))?.items?.[0];
    const code = concept ? `${asciiValue(concept.get(tagOf('CodingSchemeDesignator'))) ?? ''}:${asciiValue(concept.get(tagOf('CodeValue'))) ?? ''}` : '-';
    const measured = item.get(tagOf('MeasuredValueSequence'))?.items?.[0];
    const value = measured ? asciiValue(measured.get(tagOf('NumericValue'))) : undefined;
    out.push(`${depth}:${asciiValue(item.get(tagOf('ValueType'))) ?? ''}:${code}${value === undefined ? '' : `=${value}`}`);
    shape(item, out, depth + 1);
  }
  return out;
}

/** Every Referenced SOP Instance UID anywhere in the data set. */
function references(ds: DicomDataset, out: string[] = []): string[] {
  for (const el of ds.values()) {
    if (el.tag === REFERENCED_SOP_INSTANCE_UID) out.push(asciiValue(el) ?? '');
    for (const item of el.items ?? []) references(item, out);
  }
  return out;
}

test('the research default profile has Clean Structured Content on', () => {
  expect(researchDefaultProfile().options.has('cleanStructuredContent')).toBe(true);
});

describe.each([
  ['highdicom/sr_document.dcm'],
  ['dcmjs/test__sample-sr.dcm'],
  ['dicomParser/deflate__report_dfl'],
  ['pydicom-deb/test_files__test-SR.dcm'],
  ['pydicom-deb/test_files__reportsi.dcm'],
])('given the real SR %s under research-default', (fixture) => {
  const source = readFileSync(join(FIXTURES, fixture));

  test('then the content tree keeps its items, value types, concept codes and measurements, and every reference is the research UID of its source UID', async () => {
    const src = (await parseDicomBuffer(source)).dataset;
    expect(shape(src).length).toBeGreaterThan(1);
    const out = await deidentify(source, researchDefaultProfile());
    expect(shape(out)).toEqual(shape(src));
    const refs = references(src);
    expect(references(out)).toEqual(refs.map((u) => (u.startsWith('1.2.840.10008.') ? u : researchUid(key, u))));
  });

  test('then a Verifying Observer of the source becomes one observer of dummies (what the SR Document General module requires)', async () => {
    const observers = (ds: DicomDataset) => ds.get(tagOf('VerifyingObserverSequence'))?.items ?? [];
    const src = (await parseDicomBuffer(source)).dataset;
    const out = observers(await deidentify(source, researchDefaultProfile()));
    if (observers(src).length === 0) {
      expect(out).toEqual([]);
      return;
    }
    expect(out).toHaveLength(1);
    const observer = out[0] as DicomDataset;
    expect(['VerifyingObserverName', 'VerifyingOrganization', 'VerificationDateTime'].map((k) => asciiValue(observer.get(tagOf(k))))).toEqual(['ANONYMIZED', 'ANONYMIZED', '19000101000000']);
    expect(observer.get(tagOf('VerifyingObserverIdentificationCodeSequence'))?.items).toEqual([]);
  });

  test('then under basic the content is one dummy item (the option is what keeps it)', async () => {
    expect(shape(await deidentify(source, basicProfile()))).toHaveLength(1);
  });
});
