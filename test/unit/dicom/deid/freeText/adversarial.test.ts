/**
 * The adversarial set: identifying text planted into copies of real fixtures (provenance in
 * test/fixtures/dicom/MANIFEST.tsv) where hospitals put it, each file run through the real
 * core (prepareDeidentifiedInstance, output consumed), and the written bytes searched for each
 * planted value with a plain byte search: no rule of the engine or its detector is used to check.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../../../shared/dicom/byteReader';
import { DicomDataset, DicomElement, encodeAsciiValue } from '../../../../../shared/dicom/dataset';
import { basicProfile, builtInProfile, defaultProfile, Profile } from '../../../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../../../shared/dicom/parser';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../../../shared/dicom/writer';
import { prepareDeidentifiedInstance } from '../../../../../shared/ingest/deidentifyInstance';
import { tagOf } from '../helpers';

const FIXTURES = join(__dirname, '..', '..', '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('adversarial free text, test key..');

/** ISO 2022 encoders for the test's own plants, from the WHATWG decoders (EUC forms hold the same codes). */
function reverseTable(label: string): Map<string, number[]> {
  const decoder = new TextDecoder(label);
  const table = new Map<string, number[]>();
  for (let a = 0xa1; a <= 0xfe; a++) {
    for (let b = 0xa1; b <= 0xfe; b++) {
      const ch = decoder.decode(new Uint8Array([a, b]));
      if (ch.length === 1 && ch !== '\ufffd' && !table.has(ch)) table.set(ch, [a, b]);
    }
  }
  return table;
}
let jis: Map<string, number[]> | undefined;
let ksc: Map<string, number[]> | undefined;

/** ISO 2022 IR 87: ESC $ B, JIS X 0208 in G0 (7-bit), ESC ( B back to ASCII. */
function iso2022jp(text: string): Buffer {
  jis ??= reverseTable('euc-jp');
  const out: number[] = [];
  let kanji = false;
  for (const ch of text) {
    const code = jis.get(ch);
    if (code && ch.charCodeAt(0) >= 0x80) {
      if (!kanji) out.push(0x1b, 0x24, 0x42);
      kanji = true;
      out.push(code[0]! & 0x7f, code[1]! & 0x7f);
    } else {
      if (kanji) out.push(0x1b, 0x28, 0x42);
      kanji = false;
      out.push(ch.charCodeAt(0));
    }
  }
  if (kanji) out.push(0x1b, 0x28, 0x42);
  return Buffer.from(out);
}

/** The JIS bytes of a CJK run (what a byte search looks for inside the escapes). */
function jisBytes(text: string): Buffer {
  jis ??= reverseTable('euc-jp');
  return Buffer.from([...text].flatMap((ch) => (jis!.get(ch) ?? []).map((b) => b & 0x7f)));
}

/** ISO 2022 IR 149: ESC $ ) C once, KS X 1001 in G1 (8-bit). */
function iso2022kr(text: string): Buffer {
  ksc ??= reverseTable('euc-kr');
  const out: number[] = [0x1b, 0x24, 0x29, 0x43];
  for (const ch of text) out.push(...(ch.charCodeAt(0) >= 0x80 ? (ksc.get(ch) ?? [0x3f]) : [ch.charCodeAt(0)]));
  return Buffer.from(out);
}

function kscBytes(text: string): Buffer {
  ksc ??= reverseTable('euc-kr');
  return Buffer.from([...text].flatMap((ch) => ksc!.get(ch) ?? []));
}

interface Base {
  file: string;
  /** The patient's name to set (as written, in the file's character set), when the fixture's own is not used. */
  patientName?: string;
  encode: (text: string) => Buffer;
  needle: (text: string) => Buffer;
}

const latin1 = (t: string) => Buffer.from(t, 'latin1');
const utf8 = (t: string) => Buffer.from(t, 'utf8');

const BASES: Record<string, Base> = {
  ascii: { file: 'pydicom-deb/test_files__MR_small.dcm', patientName: 'Smithers^Johnathan', encode: latin1, needle: latin1 },
  latin1: { file: 'pydicom-deb/test_files__dicomdirtests__98892001__CT2N__6293', patientName: 'Li^Na', encode: latin1, needle: latin1 },
  /** ISO_IR 192; the fixture's Wang^XiaoDong=王^小東 written with the simplified 东 of the issue. */
  utf8: { file: 'pydicom-deb/charset_files__chrX1.dcm', patientName: 'Wang^XiaoDong=王^小东', encode: utf8, needle: utf8 },
  /** ISO 2022 IR 87; PatientName Yamada^Tarou=山田^太郎=やまだ^たろう. */
  japanese: { file: 'pydicom-deb/charset_files__chrH31.dcm', encode: iso2022jp, needle: (t) => (/[^\x20-\x7e]/.test(t) ? jisBytes(t) : latin1(t)) },
  /** ISO 2022 IR 149; PatientName Hong^Gildong=洪^吉洞=홍^길동. */
  korean: { file: 'pydicom-deb/charset_files__chrI2.dcm', encode: iso2022kr, needle: (t) => (/[^\x20-\x7e]/.test(t) ? kscBytes(t) : latin1(t)) },
};

interface Plant {
  kind: string;
  base: keyof typeof BASES;
  /** The planted text; {x} marks each planted value, listed in `values`. */
  text: string;
  values: string[];
}

const P = (kind: string, base: keyof typeof BASES, text: string, ...values: string[]): Plant => ({ kind, base, text, values });

/** The cases of issue 11 and their variants. */
const PLANTS: Plant[] = [
  P('name (header, as written)', 'ascii', 'CT for Johnathan Smithers follow-up', 'Johnathan', 'Smithers'),
  P('name (header, reordered)', 'ascii', 'SMITHERS JOHNATHAN re-scan', 'SMITHERS', 'JOHNATHAN'),
  P('name (header, initials)', 'ascii', 'J. Smithers seen', 'Smithers'),
  P('name (header, misspelt)', 'ascii', 'pt Smithres, Jonathan', 'Smithres', 'Jonathan'),
  P('name (header, 1-2 letter parts)', 'latin1', 'Na Li follow-up', 'Na Li'),
  P('name (header, 1-2 letter parts)', 'latin1', 'LI NA, MRI knee', 'LI NA'),
  P('name (CJK, no separator)', 'utf8', '王小东 胸部CT', '王小东'),
  P('name (CJK, no separator)', 'utf8', '患者小东王', '小东王'),
  P('name (CJK, no separator)', 'japanese', '山田太郎 CT', '山田太郎'),
  P('name (CJK, no separator)', 'japanese', 'やまだたろう', 'やまだたろう'),
  P('name (CJK, no separator)', 'korean', '홍길동 CT', '홍길동'),
  P('name (not in the header)', 'ascii', 'seen by Dr. Maria Garcia', 'Maria Garcia'),
  P('name (not in the header)', 'ascii', 'Mary Jones called about results', 'Mary Jones'),
  P('name (not in the header)', 'latin1', 'discussed with John Miller', 'John Miller'),
  P('date', 'ascii', 'DOB 4 Mar 1961', '4 Mar 1961'),
  P('date', 'ascii', 'seen March 4, 2019 in clinic', 'March 4, 2019'),
  P('date', 'ascii', 'prior 3/4/19', '3/4/19'),
  P('date', 'latin1', 'compare 2019-03-04', '2019-03-04'),
  P('date', 'latin1', 'prior 04.03.2019', '04.03.2019'),
  P('date', 'utf8', 'Voruntersuchung am 4. März 2019', '4. März 2019'),
  P('date', 'utf8', '2019年3月4日 検査', '2019年3月4日'),
  P('date', 'latin1', 'le 4 mars 2019', '4 mars 2019'),
  P('ssn', 'ascii', 'SSN 123-45-6789', '123-45-6789'),
  P('ssn', 'latin1', 'social security 987654321', '987654321'),
  P('phone', 'ascii', 'call 617-555-0142', '617-555-0142'),
  P('phone', 'latin1', 'fax (617) 555 0199', '555 0199'),
  P('phone', 'utf8', 'Tel. +49 30 1234567', '1234567'),
  P('email', 'ascii', 'mail john.smithers@example.org', 'john.smithers@example.org'),
  P('url', 'ascii', 'see https://pacs.example.org/viewer', 'pacs.example.org'),
  P('ip', 'latin1', 'sent from 10.20.30.40', '10.20.30.40'),
  P('address', 'ascii', 'lives at 12 Main Street', '12 Main Street'),
  P('address', 'utf8', 'wohnt Hauptstraße 5', 'Hauptstraße 5'),
  P('zip', 'latin1', 'Boston MA 02115', '02115'),
  P('mrn', 'ascii', 'MRN 00123456', '00123456'),
  P('mrn', 'latin1', 'accession A7654321 reviewed', '7654321'),
  P('mrn', 'ascii', 'ref 20230987654', '20230987654'),
  P('uid in text', 'ascii', 'prior study 1.2.826.0.1.3680043.9.1234.77', '1.2.826.0.1.3680043.9.1234.77'),
  P('uid in text', 'latin1', 'wado?studyUID=1.3.6.1.4.1.5962.99.1.2', '1.3.6.1.4.1.5962.99.1.2'),
];

/** Where plants go: descriptors, comments, history, and free text inside sequence items the profile keeps. */
type Position = { keyword: string; vr: string } | { sequence: string; keyword: string; vr: string; extra?: [string, string, string][] };
const POSITIONS: Position[] = [
  { keyword: 'ImageComments', vr: 'LT' },
  { keyword: 'StudyDescription', vr: 'LO' },
  { keyword: 'SeriesDescription', vr: 'LO' },
  { keyword: 'AdditionalPatientHistory', vr: 'LT' },
  { keyword: 'AcquisitionComments', vr: 'LT' },
  { sequence: 'WaveformAnnotationSequence', keyword: 'UnformattedTextValue', vr: 'ST' },
  { sequence: 'AnatomicRegionSequence', keyword: 'CodeMeaning', vr: 'LO', extra: [['CodeValue', 'SH', 'T-D4000'], ['CodingSchemeDesignator', 'SH', 'SRT']] },
];

function textElement(keyword: string, vr: string, bytes: Buffer): DicomElement {
  const padded = bytes.length % 2 === 1 ? Buffer.concat([bytes, Buffer.from(' ')]) : bytes;
  return { tag: tagOf(keyword), vr, value: padded };
}

/** A copy of the fixture with the plant at the position, as a Part 10 file. */
async function planted(plant: Plant, position: Position): Promise<Buffer> {
  const base = BASES[plant.base]!;
  const parsed = await parseDicomBuffer(readFileSync(join(FIXTURES, base.file)));
  const ds: DicomDataset = parsed.dataset;
  if (base.patientName) ds.set(tagOf('PatientName'), textElement('PatientName', 'PN', base.encode(base.patientName)));
  const value = textElement(position.keyword, position.vr, base.encode(plant.text));
  if ('sequence' in position) {
    const item: DicomDataset = new Map([[value.tag, value]]);
    for (const [k, vr, v] of position.extra ?? []) item.set(tagOf(k), { tag: tagOf(k), vr, value: encodeAsciiValue(v, vr) });
    ds.set(tagOf(position.sequence), { tag: tagOf(position.sequence), vr: 'SQ', items: [item] });
  } else {
    ds.set(value.tag, value);
  }
  const enc = parsed.encoding;
  const sop = (k: string) => Buffer.from(ds.get(tagOf(k))?.value ?? []).toString('latin1').replace(/[\0 ]+$/, '');
  const pixel = parsed.pixelData;
  return Buffer.concat([
    encodeFileMeta(sop('SOPClassUID'), sop('SOPInstanceUID'), parsed.transferSyntaxUid),
    encodeDataset(ds, enc),
    ...(pixel && parsed.pixelValue ? [encodePixelDataHeader(pixel.tag, pixel.vr, parsed.pixelValue.length, enc), parsed.pixelValue] : []),
  ]);
}

async function deidentified(source: Buffer, profile: Profile): Promise<Buffer> {
  const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile, key, keyId: 'adversarial' },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'allow' },
  });
  const parts: Uint8Array[] = [];
  for await (const c of prepared.output()) parts.push(c);
  return Buffer.concat(parts);
}

/** Case-insensitive byte search (ASCII letters folded), the independent check. */
function holds(haystack: Buffer, needle: Buffer): boolean {
  const fold = (b: Buffer) => Buffer.from(b.map((x) => (x >= 0x41 && x <= 0x5a ? x + 0x20 : x)));
  return fold(haystack).includes(fold(needle));
}

function shipped(name: string): Profile {
  const profile = builtInProfile(name);
  if (!profile) throw new Error(`no built-in profile ${name}`);
  return profile;
}

/**
 * Kinds a profile keeps by definition, so a planted value of that kind may stay: the HIPAA
 * limited data set (45 CFR 164.514(e)(2)) keeps dates and town or city, state and ZIP code;
 * a street address, and every other kind, must still go. They are counted, not asserted.
 */
const EXEMPT_KINDS: Readonly<Record<string, ReadonlySet<string>>> = {
  'limited-data-set': new Set(['date', 'zip']),
};

const PROFILES: readonly [string, Profile][] = [
  ['research default', defaultProfile()],
  ['basic', basicProfile()],
  ['safe-harbor', shipped('safe-harbor')],
  ['limited-data-set', shipped('limited-data-set')],
];

describe('given identifying text planted into real fixtures, run through the real core', () => {
  it('the exempt kinds name kinds that are planted, so an exemption cannot hide a typo', () => {
    const kinds = new Set(PLANTS.map((p) => p.kind));
    for (const exempt of Object.values(EXEMPT_KINDS)) for (const k of exempt) expect(kinds).toContain(k);
  });

  for (const [profileName, profile] of PROFILES) {
    const exempt = EXEMPT_KINDS[profileName] ?? new Set<string>();
    const but = exempt.size === 0 ? '' : ` but the kinds it keeps by definition (${[...exempt].join(', ')})`;
    it(`under the ${profileName} profile, then none of the planted values${but} is in any output (0 of N, by kind)`, async () => {
      const planted_: Record<string, number> = {};
      const left: Record<string, number> = {};
      const leaks: string[] = [];
      let run = 0;
      for (const [i, plant] of PLANTS.entries()) {
        const base = BASES[plant.base]!;
        // Each plant in three positions, rotating through all of them.
        for (const position of [POSITIONS[i % POSITIONS.length]!, POSITIONS[(i + 3) % POSITIONS.length]!, POSITIONS[(i + 5) % POSITIONS.length]!]) {
          const source = await planted(plant, position);
          for (const v of plant.values) expect(holds(source, base.needle(v))).toBe(true);
          const output = await deidentified(source, profile);
          run++;
          for (const v of plant.values) {
            planted_[plant.kind] = (planted_[plant.kind] ?? 0) + 1;
            left[plant.kind] ??= 0;
            if (holds(output, base.needle(v))) {
              left[plant.kind]!++;
              if (!exempt.has(plant.kind)) leaks.push(`${plant.kind} in ${'sequence' in position ? `${position.sequence}.` : ''}${position.keyword} (${plant.base}, plant ${i})`);
            }
          }
        }
      }
      if (process.env.FREE_TEXT_REPORT) process.stdout.write(`${profileName}: ${run} files; planted ${JSON.stringify(planted_)}; left ${JSON.stringify(left)}\n`);
      expect(leaks).toEqual([]);
      expect(Object.entries(left).filter(([kind, n]) => n > 0 && !exempt.has(kind))).toEqual([]);
      expect(run).toBe(PLANTS.length * 3);
    });
  }

  it('given an ISO 2022 Japanese descriptor that says only "胸部", then it survives byte for byte', async () => {
    const plant = P('clean', 'japanese', '胸部 CT');
    const source = await planted(plant, { keyword: 'StudyDescription', vr: 'LO' });
    const output = await deidentified(source, defaultProfile());
    expect(holds(output, iso2022jp('胸部 CT'))).toBe(true);
  });

  it('given an ISO 2022 descriptor with the patient\'s name and a clean word, then the name goes and the word stays', async () => {
    const ja = await deidentified(await planted(P('name', 'japanese', '山田太郎 胸部'), { keyword: 'StudyDescription', vr: 'LO' }), defaultProfile());
    expect(holds(ja, jisBytes('山田太郎'))).toBe(false);
    expect(holds(ja, jisBytes('胸部'))).toBe(true);
    const ko = await deidentified(await planted(P('name', 'korean', '홍길동 흉부'), { keyword: 'StudyDescription', vr: 'LO' }), defaultProfile());
    expect(holds(ko, kscBytes('홍길동'))).toBe(false);
    expect(holds(ko, kscBytes('흉부'))).toBe(true);
  });
});
