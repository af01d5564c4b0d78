/**
 * An independent check of de-identification, sharing nothing with the gate (identifying.ts):
 * the source's identifying values are read by dcmdump (DCMTK) with simple rules of their own,
 * and looked for, byte by byte, in what the pipeline writes under the research default and
 * the Basic profile. Needs dcmdump on PATH (Debian package dcmtk); without it the run fails.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import { bufferReader } from '../../shared/dicom/byteReader';
import type { DicomDataset } from '../../shared/dicom/dataset';
import { basicProfile, defaultProfile, Profile } from '../../shared/dicom/deid/profile';
import { encodeDataset } from '../../shared/dicom/writer';
import { isPipelineError } from '../../shared/errors';
import { prepareDeidentifiedInstance } from '../../shared/ingest/deidentifyInstance';
import { isInstalled } from '../../tools/dicomTools';

const FIXTURES = join(__dirname, '..', 'fixtures', 'dicom');
const key = Buffer.from('independent check key, 32 bytes.');

/** Attributes read from the source, and whether they are person names (split into components). */
const SOURCE_TAGS: readonly { tag: string; keyword: string; personName: boolean }[] = [
  { tag: '0010,0010', keyword: 'PatientName', personName: true },
  { tag: '0010,0020', keyword: 'PatientID', personName: false },
  { tag: '0010,0030', keyword: 'PatientBirthDate', personName: false },
  { tag: '0008,0020', keyword: 'StudyDate', personName: false },
  { tag: '0008,0050', keyword: 'AccessionNumber', personName: false },
  { tag: '0008,0080', keyword: 'InstitutionName', personName: false },
  { tag: '0008,0090', keyword: 'ReferringPhysicianName', personName: true },
  { tag: '0010,1000', keyword: 'OtherPatientIDs', personName: false },
];

/**
 * Attributes both profiles keep, read the same way. A source value equal to one of them is
 * not hidden by design (an institution named like the device's manufacturer): the only
 * exception, and it never applies to patient identifiers, names or dates.
 */
const KEPT_TAGS = ['0008,0070', '0008,1090'];
const EXCEPTABLE = new Set(['InstitutionName']);

/**
 * The engine's dummy values (PS3.15 D actions): a source that already held one (a birth date
 * of 19000101, a name "ANONYMIZED") shows it again wherever Basic asks for a dummy.
 */
const DUMMY_VALUES = new Set(['19000101', 'anonymized']);

/**
 * Placeholder words test files put where a name goes ("Test^Patient", "Phantom"): they name
 * no one, and occur legitimately in kept text ("Test Manufacturer", coding scheme "TEST").
 * A whole name made of them is still searched.
 */
const PLACEHOLDER_WORDS = new Set(['test', 'patient', 'phantom', 'anonymous', 'unknown']);

/** Copy of a data set without its number attributes (IS, DS), re-encoded for searching. */
function withoutNumbers(ds: DicomDataset, littleEndian: boolean): Buffer {
  const kept: DicomDataset = new Map([...ds].filter(([, el]) => el.vr !== 'IS' && el.vr !== 'DS'));
  return encodeDataset(kept, { explicitVR: true, littleEndian });
}

interface SourceValue {
  keyword: string;
  value: string;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return listFiles(p);
    return /\.(md|tsv)$/.test(name) ? [] : [p];
  });
}

/** dcmdump's text for the given tags, wherever they occur (sequences included); UTF-8 when it can convert. */
function dump(file: string, tags: readonly string[]): { tag: string; text: string }[] | undefined {
  const args = ['-q', '+L', ...tags.flatMap((t) => ['+P', t]), file];
  let out: string | undefined;
  for (const extra of [['+U8'], []]) {
    try {
      out = execFileSync('dcmdump', [...extra, ...args], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 }).toString(extra.length ? 'utf8' : 'latin1');
      break;
    } catch {
      out = undefined;
    }
  }
  if (out === undefined) return undefined;
  const found: { tag: string; text: string }[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*\(([0-9a-f]{4},[0-9a-f]{4})\) [A-Z]{2} \[(.*)\]\s+#/.exec(line);
    if (m?.[1] && m[2] !== undefined) found.push({ tag: m[1], text: m[2] });
  }
  return found;
}

const readValues = new Map<string, SourceValue[] | undefined>();

/** The rules: values of 3 characters or more; person names by component (^ and = separated). */
function sourceValues(file: string): SourceValue[] | undefined {
  if (!readValues.has(file)) readValues.set(file, readSourceValues(file));
  return readValues.get(file);
}

function readSourceValues(file: string): SourceValue[] | undefined {
  const dumped = dump(file, [...SOURCE_TAGS.map((t) => t.tag), ...KEPT_TAGS]);
  if (!dumped) return undefined;
  const kept = dumped.filter((d) => KEPT_TAGS.includes(d.tag)).map((d) => d.text.toLowerCase());
  const values = new Map<string, SourceValue>();
  for (const d of dumped) {
    const spec = SOURCE_TAGS.find((t) => t.tag === d.tag);
    if (!spec) continue;
    for (const v of d.text.split('\\')) {
      const parts = spec.personName ? v.split(/[\^=]/) : [v];
      for (const p of parts.map((x) => x.trim())) {
        if ([...p].length < 3 || DUMMY_VALUES.has(p.toLowerCase()) || (parts.length > 1 && PLACEHOLDER_WORDS.has(p.toLowerCase()))) continue;
        if (EXCEPTABLE.has(spec.keyword) && kept.some((k) => occurs(k, p))) continue;
        values.set(p.toLowerCase(), { keyword: spec.keyword, value: p });
      }
    }
  }
  return [...values.values()];
}

/**
 * The output without its pixel data value: the pixel bytes are the source's, streamed
 * through unchanged, and megabytes of them match short values by chance.
 */
function withoutPixelValue(chunks: Buffer[], pixelLength: number | undefined, hasPixel: boolean, littleEndian: boolean): Buffer {
  const all = Buffer.concat(chunks);
  if (!hasPixel) return all;
  const start = (chunks[0]?.length ?? 0) + (chunks[1]?.length ?? 0);
  let end = start;
  if (pixelLength !== undefined) {
    end = start + pixelLength;
  } else {
    // Encapsulated: item headers (FFFE,E000) and fragments up to the sequence delimiter.
    for (;;) {
      const group = littleEndian ? all.readUInt16LE(end) : all.readUInt16BE(end);
      const element = littleEndian ? all.readUInt16LE(end + 2) : all.readUInt16BE(end + 2);
      const length = littleEndian ? all.readUInt32LE(end + 4) : all.readUInt32BE(end + 4);
      end += 8;
      if (group === 0xfffe && element === 0xe0dd) break;
      end += length;
    }
  }
  return Buffer.concat([all.subarray(0, start), all.subarray(end)]);
}

/** Case-insensitive; short values (3-4 characters) only between non-alphanumeric characters. */
function occurs(haystackLower: string, value: string): boolean {
  const needle = value.toLowerCase();
  if ([...needle].length >= 5) return haystackLower.includes(needle);
  for (let i = haystackLower.indexOf(needle); i >= 0; i = haystackLower.indexOf(needle, i + 1)) {
    const before = haystackLower[i - 1] ?? '';
    const after = haystackLower[i + needle.length] ?? '';
    if (!/[a-z0-9]/.test(before) && !/[a-z0-9]/.test(after)) return true;
  }
  return false;
}

const PROFILES: [string, () => Profile][] = [['research default', defaultProfile], ['Basic', basicProfile]];

describe('independent check: no identifying value of a source in its de-identified output', () => {
  beforeAll(() => {
    if (!isInstalled('dcmdump')) throw new Error('dcmdump is not installed: install the Debian package dcmtk (apt-get install -y dcmtk); this test does not skip');
  });

  it.each(PROFILES)('given every fixture under the %s profile, then none of the values read by dcmdump is in the output', async (name, makeProfile) => {
    const profile = makeProfile();
    const totals = { files: 0, written: 0, notIngested: 0, unreadable: 0, values: 0 };
    const leaks: string[] = [];
    for (const file of listFiles(FIXTURES)) {
      totals.files++;
      const source = readFileSync(file);
      let chunks: Buffer[];
      let prepared: Awaited<ReturnType<typeof prepareDeidentifiedInstance>>;
      try {
        prepared = await prepareDeidentifiedInstance(bufferReader(source), {
          deid: { profile, key, keyId: 'independent' },
          maxHeaderBytes: 64 * 1024 * 1024,
          totalSize: source.length,
          burnedIn: { mode: 'allow' },
        });
        chunks = [];
        for await (const c of prepared.output()) chunks.push(Buffer.from(c));
      } catch (e) {
        if (!isPipelineError(e)) throw e;
        totals.notIngested++;
        continue;
      }
      const values = sourceValues(file);
      if (!values) {
        totals.unreadable++;
        continue;
      }
      totals.written++;
      totals.values += values.length;
      const pixel = prepared.header.pixelData;
      const searched = withoutPixelValue(chunks, pixel?.length, pixel !== undefined, prepared.enc.littleEndian);
      const texts = [searched.toString('latin1').toLowerCase(), searched.toString('utf8').toLowerCase()];
      // An all-digit ID equal to a series or instance number is a count, not the ID: digits are
      // searched in the output without its number attributes (the meta and text stay in).
      const numberless = withoutNumbers(prepared.dataset, prepared.enc.littleEndian).toString('latin1').toLowerCase();
      for (const v of values) {
        if (/^\d+$/.test(v.value)) {
          if (occurs(numberless, v.value)) leaks.push(`${relative(FIXTURES, file)}: ${v.keyword}`);
          continue;
        }
        // Names the file and the attribute only: the fixtures' values are public, but the habit is not to print them.
        if (texts.some((t) => occurs(t, v.value))) leaks.push(`${relative(FIXTURES, file)}: ${v.keyword}`);
      }
    }
    console.log(
      `independent check, ${name} profile: ${totals.files} files, ${totals.written} outputs searched for ${totals.values} source values, ` +
        `${leaks.length} found; ${totals.notIngested} not ingested, ${totals.unreadable} not readable by dcmdump`,
    );
    expect(totals.written).toBeGreaterThanOrEqual(40);
    expect(totals.values).toBeGreaterThan(100);
    expect(leaks).toEqual([]);
  });
});
