/**
 * Issue 11 item 9: a public attribute outside Table E.1-1 (which the profile keeps as is) that
 * holds an identifying value of the source gets that value cleaned, the span redacted or the
 * value replaced per VR, instead of the whole file being quarantined by the gate; the gate still
 * checks it, so a leak there stops publication. Built from the real MR fixture (pydicom MR_small,
 * provenance in test/fixtures/dicom/MANIFEST.tsv).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DicomDataset, DicomElement } from '../../../shared/dicom/dataset';
import { builtInProfile, Profile } from '../../../shared/dicom/deid/profile';
import { resolveAction } from '../../../shared/dicom/deid/resolve';
import { verifyDeidentifiedDataset } from '../../../shared/dicom/deid/verify';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { auditRecord, PreparedInstance } from '../../../shared/ingest/deidentifyInstance';
import { el, tagOf, text } from '../dicom/deid/helpers';
import { deidentifyThroughCore, encodeWithDataset } from './coreHelpers';

const FIXTURE = join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');
const key = Buffer.from('unlisted attributes key, 32 byte');
/** The fixture's own SOP Instance UID, which the profile replaces. */
const SOURCE_SOP_UID = '1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457';

function profile(name: string): Profile {
  const p = builtInProfile(name);
  if (!p) throw new Error(`no built-in profile ${name}`);
  return p;
}

/** The MR fixture with a made-up patient name and the planted elements, written back as a Part 10 file. */
async function planted(elements: DicomElement[]): Promise<Buffer> {
  const src = await parseDicomBuffer(readFileSync(FIXTURE));
  const ds: DicomDataset = new Map(src.dataset);
  ds.set(tagOf('PatientName'), el('PatientName', 'Smithers^Johnathan'));
  for (const e of elements) ds.set(e.tag, e);
  return encodeWithDataset(src, ds, SOURCE_SOP_UID);
}

async function deidentify(source: Buffer, p: Profile): Promise<{ prepared: PreparedInstance; bytes: Buffer }> {
  return deidentifyThroughCore(source, p, key, 'unlisted');
}

/** Case-insensitive byte search: the independent check, no rule of the engine. */
function holds(haystack: Buffer, needle: string): boolean {
  return haystack.toString('latin1').toLowerCase().includes(needle.toLowerCase());
}

interface Case {
  keyword: string;
  planted: string;
  /** What must be gone from the output bytes. */
  gone: string[];
}

/** Public attributes that Table E.1-1 does not list (checked below), each with an identifying value of the source. */
const CASES: Case[] = [
  // LO, a name of equipment (no free-text detector there): the span goes, the rest stays.
  { keyword: 'Manufacturer', planted: 'TOSHIBA_MEC for Smithers', gone: ['Smithers'] },
  // LO: the patient ID inside a version string.
  { keyword: 'SoftwareVersions', planted: 'V3.51 4MR1', gone: ['4MR1'] },
  // PN (DICONDE Evaluator Name): a name is replaced whole.
  { keyword: 'EvaluatorName', planted: 'Smithers^Johnathan', gone: ['Smithers', 'Johnathan'] },
  // UI: the source's own instance UID, replaced the way the UID attributes are.
  { keyword: 'MultiFrameSourceSOPInstanceUID', planted: SOURCE_SOP_UID, gone: [SOURCE_SOP_UID] },
];

const PROFILES = ['research-default', 'basic', 'safe-harbor', 'limited-data-set'];

describe('attributes outside Table E.1-1 that hold an identifying value of the source', () => {
  it.each(CASES.map((c) => c.keyword))('%s is outside the table: every built-in profile keeps it as is', (keyword) => {
    for (const name of PROFILES) expect(resolveAction(tagOf(keyword), profile(name))).toMatchObject({ action: 'keep', source: 'not-listed' });
  });

  describe.each(PROFILES)('under %s', (name) => {
    it.each(CASES.map((c) => [c.keyword, c] as const))('given the value in %s, then the file is written, the value is gone and the audit counts it', async (keyword, c) => {
      const source = await planted([el(c.keyword, c.planted)]);
      for (const g of c.gone) expect(holds(source, g)).toBe(true);
      const { prepared, bytes } = await deidentify(source, profile(name));
      for (const g of c.gone) expect(holds(bytes, g)).toBe(false);
      expect(prepared.report.textRedactions[`${keyword}:sourceValue`]).toBe(1);
      expect(auditRecord({ profile: profile(name), key, keyId: 'unlisted' }, prepared.report, 'passed').actions[`text:${keyword}:sourceValue`]).toBe(1);
      const out = text(prepared.dataset, keyword);
      if (keyword === 'Manufacturer') expect(out).toBe('TOSHIBA_MEC for');
      if (keyword === 'SoftwareVersions') expect(out).toBe('V3.51');
      // The same research UID as the instance it names, so the reference still resolves.
      if (keyword === 'MultiFrameSourceSOPInstanceUID') expect(out).toBe(prepared.research.sopInstanceUid);
    });
  });

  it('given the value put back into the output, then the gate still finds it there', async () => {
    const p = profile('research-default');
    const { prepared } = await deidentify(await planted([]), p);
    expect(verifyDeidentifiedDataset(prepared.dataset, prepared.report, p).findings).toEqual([]);
    for (const c of CASES) {
      const ds: DicomDataset = new Map(prepared.dataset);
      ds.set(tagOf(c.keyword), el(c.keyword, c.planted));
      const findings = verifyDeidentifiedDataset(ds, prepared.report, p).findings;
      expect(findings).toEqual([expect.stringContaining(`${c.keyword}: holds an identifying value of the source`)]);
    }
  });

  it('given a value of the source that the profile keeps elsewhere as is, then the unlisted attribute is kept too', async () => {
    // The fixture's Manufacturer also names its institution (TOSHIBA), which the gate excuses.
    const { prepared } = await deidentify(await planted([el('SoftwareVersions', 'TOSHIBA V3.51')]), profile('research-default'));
    expect(text(prepared.dataset, 'SoftwareVersions')).toBe('TOSHIBA V3.51');
    expect(prepared.report.textRedactions['SoftwareVersions:sourceValue']).toBeUndefined();
  });
});
