/**
 * Runs a folder of DICOM files through our de-identification and through `gdcmanon -e`
 * (GDCM's PS3.15 E.1.1 Basic profile), looks for each source's identifying values in both
 * outputs, runs dciodvfy on the source and both outputs, and writes a markdown table.
 *
 *   node dist/tools/compare-deid.js <folder> [--profile basic|default]... [--out docs/deid-comparison.md]
 *
 * Without --profile both profiles are run. The table names attributes and counts, never
 * values: the sources may hold real identifiers.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { inflateRawSync } from 'node:zlib';

import { bufferReader } from '../shared/dicom/byteReader';
import { asciiValue, DicomDataset, TEXT_VRS } from '../shared/dicom/dataset';
import { DEID_METHOD_CODES } from '../shared/dicom/deid/engine';
import { charsetsOf, collectSourceFacts, identifyingMatchers, textOf, ValueMatcher } from '../shared/dicom/deid/identifying';
import { basicProfile, defaultProfile, Profile } from '../shared/dicom/deid/profile';
import { isPrivateTag, lookupTag, tagToHex } from '../shared/dicom/dictionary';
import { parseDicomBuffer, pixelDataChunks, readHeader } from '../shared/dicom/parser';
import { Tags } from '../shared/dicom/tags';
import { isPipelineError } from '../shared/errors';
import { prepareDeidentifiedInstance } from '../shared/ingest/deidentifyInstance';
import { dciodvfyErrors, gdcmanonBasic, isInstalled, mapLimited, run, throwawayCertificate } from './dicomTools';

const KEY = Buffer.from('compare-deid fixed key: not for production use');
const LIMITS = { maxHeaderBytes: 256 * 1024 * 1024 };
const SKIPPED_NAMES = /\.(md|tsv|txt|json)$/i;
const PROFILES: Record<string, () => Profile> = { basic: basicProfile, default: defaultProfile };

interface OutputResult {
  written: boolean;
  /** Why there is no output (an error code or "gdcmanon failed"). */
  refusal?: string;
  leakedValues: number;
  /** Attribute keywords (or "private", "other bytes") where a leaked value was found. */
  leakedIn: Set<string>;
  dciodvfy?: number;
}

interface FileResult {
  file: string;
  sopClass: string;
  sourceReadable: boolean;
  identifyingValues: number;
  dciodvfyInput: number;
  ours: OutputResult;
  gdcmanon: OutputResult;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else if (!SKIPPED_NAMES.test(name)) out.push(p);
  }
  return out;
}

/**
 * The bytes to search: the file without its top-level pixel data value (megabytes of pixels
 * match three-letter values by chance, and neither tool touches pixels), inflated when the
 * data set is deflated. Falls back to the whole file when it cannot be parsed.
 */
async function searchableBytes(bytes: Buffer): Promise<Buffer> {
  try {
    const reader = bufferReader(bytes);
    const header = await readHeader(reader, { ...LIMITS, totalSize: bytes.length });
    if (header.deflated) {
      const groupLength = header.meta.get(Tags.FileMetaInformationGroupLength)?.value;
      const metaEnd = 132 + 12 + (groupLength ? Buffer.from(groupLength).readUInt32LE(0) : 0);
      return Buffer.concat([bytes.subarray(0, metaEnd), await searchableBytes(inflateRawSync(bytes.subarray(metaEnd)))]);
    }
    if (!header.pixelData) return bytes;
    const start = reader.position;
    let length = 0;
    for await (const c of pixelDataChunks(header, bytes.length)) length += c.length;
    return Buffer.concat([bytes.subarray(0, start), bytes.subarray(start + length)]);
  } catch {
    return bytes;
  }
}

/**
 * The de-identification marking (E.1.1 item 6) is written from constants, so a source value
 * such as "PATIENT" inside "Retain Patient Characteristics Option" is a coincidence, not a
 * leak; the gate skips those attributes for the same reason.
 */
const MARKING_TEXTS = [...DEID_METHOD_CODES.map((c) => c.meaning), 'MODIFIED', 'UNMODIFIED'];

function withoutMarking(text: string): string {
  let out = text;
  for (const m of MARKING_TEXTS) out = out.split(m).join(' '.repeat(m.length));
  return out;
}

/**
 * Attributes whose values the gate does not search for identifying values, for the same
 * reasons (verify.ts): code strings hold defined terms (ImageType ORIGINAL, ValueType TEXT),
 * number strings hold counts (a Series Number 123456 beside a Patient ID 123456), and the
 * implementation's own name in the file meta and De-identification Method are constants of
 * the writing tool.
 */
const NOT_SEARCHED_VRS = new Set(['CS', 'IS', 'DS']);
const NOT_SEARCHED_TAGS: ReadonlySet<number> = new Set([Tags.ImplementationClassUID, Tags.ImplementationVersionName, Tags.DeidentificationMethod]);

/** Where in the output a value sits: attribute keywords, "private", or "other bytes". */
function locate(output: DicomDataset[], matchers: ValueMatcher[]): Set<string> {
  const found = new Set<string>();
  const walk = (ds: DicomDataset, charsets: string[]) => {
    const cs = charsetsOf(ds, charsets);
    for (const el of ds.values()) {
      if (el.items) {
        for (const item of el.items) walk(item, cs);
        continue;
      }
      if (!el.value || el.value.length === 0) continue;
      if (el.tag === Tags.CodeMeaning && MARKING_TEXTS.includes(textOf(el, cs))) continue;
      const vr = el.vr === 'UN' && !isPrivateTag(el.tag) ? (lookupTag(el.tag)?.vr ?? 'UN') : el.vr;
      if (NOT_SEARCHED_VRS.has(vr) || NOT_SEARCHED_TAGS.has(el.tag)) continue;
      const buf = Buffer.from(el.value);
      const texts = TEXT_VRS.has(vr) || vr === 'PN' ? [textOf({ ...el, vr }, cs)] : [buf.toString('latin1'), buf.toString('utf8')];
      if (texts.some((t) => matchers.some((m) => m.test(t)))) {
        found.add(isPrivateTag(el.tag) ? 'private' : (lookupTag(el.tag)?.keyword ?? tagToHex(el.tag)));
      }
    }
  };
  for (const ds of output) walk(ds, []);
  return found;
}

/**
 * Searches an output for the source's values with the gate's matchers (identifying.ts), by
 * attribute (so that the gate's exemptions apply to both tools alike), or over the bytes when
 * the output cannot be parsed.
 */
async function scanOutput(bytes: Buffer, values: readonly string[]): Promise<{ leakedValues: number; leakedIn: Set<string> }> {
  const leakedIn = new Set<string>();
  let parsed: Awaited<ReturnType<typeof parseDicomBuffer>> | undefined;
  try {
    parsed = await parseDicomBuffer(bytes, LIMITS);
  } catch {
    parsed = undefined;
  }
  let leaked: string[];
  if (parsed) {
    const sets = [parsed.meta, parsed.dataset, parsed.trailing];
    leaked = values.filter((v) => {
      const where = locate(sets, identifyingMatchers([v]));
      where.forEach((w) => leakedIn.add(w));
      return where.size > 0;
    });
  } else {
    const searchable = await searchableBytes(bytes);
    const texts = [searchable.toString('latin1'), searchable.toString('utf8')].map(withoutMarking);
    leaked = values.filter((v) => identifyingMatchers([v]).some((m) => texts.some((t) => m.test(t))));
    if (leaked.length > 0) leakedIn.add('other bytes');
  }
  return { leakedValues: leaked.length, leakedIn };
}

async function ours(source: Buffer, profile: Profile, outFile: string): Promise<{ bytes?: Buffer; refusal?: string }> {
  try {
    const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
      deid: { profile, key: KEY, keyId: 'compare' },
      ...LIMITS,
      totalSize: source.length,
      burnedIn: { mode: 'allow' },
    });
    const parts: Uint8Array[] = [];
    for await (const c of prepared.output()) parts.push(c);
    const bytes = Buffer.concat(parts);
    writeFileSync(outFile, bytes);
    return { bytes };
  } catch (e) {
    return { refusal: isPipelineError(e) ? e.code : 'exception' };
  }
}

interface GdcmRun {
  bytes?: Buffer;
  file: string;
  dciodvfy?: number;
}

async function compareFile(
  file: string,
  index: number,
  root: string,
  work: string,
  profiles: string[],
  certificate: string,
): Promise<Map<string, FileResult>> {
  const source = readFileSync(file);
  const dciodvfyInput = (await dciodvfyErrors(file)).errors;
  const gdcmFile = join(work, 'gdcmanon', `${index}.dcm`);
  const gdcm: GdcmRun = { file: gdcmFile };
  if (await gdcmanonBasic(file, gdcmFile, certificate)) {
    try {
      gdcm.bytes = readFileSync(gdcmFile);
      gdcm.dciodvfy = (await dciodvfyErrors(gdcmFile)).errors;
    } catch {
      // gdcmanon reported success without writing: counted as no output.
    }
  }
  let parsed: Awaited<ReturnType<typeof parseDicomBuffer>> | undefined;
  try {
    parsed = await parseDicomBuffer(source, LIMITS);
  } catch {
    parsed = undefined;
  }
  const results = new Map<string, FileResult>();
  for (const name of profiles) {
    const profile = (PROFILES[name] as () => Profile)();
    const values = parsed ? collectSourceFacts(parsed.dataset, profile).identifyingValues : [];
    const ourFile = join(work, name, `${index}.dcm`);
    const o = await ours(source, profile, ourFile);
    const ourResult: OutputResult = { written: o.bytes !== undefined, leakedValues: 0, leakedIn: new Set() };
    if (o.refusal) ourResult.refusal = o.refusal;
    if (o.bytes) {
      Object.assign(ourResult, await scanOutput(o.bytes, values));
      ourResult.dciodvfy = (await dciodvfyErrors(ourFile)).errors;
    }
    const gResult: OutputResult = { written: gdcm.bytes !== undefined, leakedValues: 0, leakedIn: new Set() };
    if (gdcm.bytes) {
      Object.assign(gResult, await scanOutput(gdcm.bytes, values));
      gResult.dciodvfy = gdcm.dciodvfy;
    } else {
      gResult.refusal = 'gdcmanon failed';
    }
    results.set(name, {
      file: relative(root, file),
      sopClass: (parsed && asciiValue(parsed.dataset.get(Tags.SOPClassUID))) ?? '',
      sourceReadable: parsed !== undefined,
      identifyingValues: values.length,
      dciodvfyInput,
      ours: ourResult,
      gdcmanon: gResult,
    });
  }
  return results;
}

function tally(results: FileResult[], pick: (r: FileResult) => OutputResult) {
  const written = results.filter((r) => pick(r).written);
  const refusals = new Map<string, number>();
  for (const r of results) {
    const why = pick(r).refusal;
    if (why) refusals.set(why, (refusals.get(why) ?? 0) + 1);
  }
  const leakedIn = new Map<string, number>();
  for (const r of written) for (const w of pick(r).leakedIn) leakedIn.set(w, (leakedIn.get(w) ?? 0) + 1);
  return {
    written: written.length,
    filesWithLeaks: written.filter((r) => pick(r).leakedValues > 0).length,
    leakedValues: written.reduce((n, r) => n + pick(r).leakedValues, 0),
    dciodvfyInput: written.reduce((n, r) => n + r.dciodvfyInput, 0),
    dciodvfyOutput: written.reduce((n, r) => n + (pick(r).dciodvfy ?? 0), 0),
    moreErrors: written.filter((r) => (pick(r).dciodvfy ?? 0) > r.dciodvfyInput).length,
    refusals,
    leakedIn,
  };
}

function describeCounts(m: Map<string, number>): string {
  if (m.size === 0) return 'none';
  return [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([k, n]) => `${k} (${n})`).join(', ');
}

function section(name: string, results: FileResult[]): string {
  const a = tally(results, (r) => r.ours);
  const g = tally(results, (r) => r.gdcmanon);
  const readable = results.filter((r) => r.sourceReadable).length;
  const values = results.reduce((n, r) => n + r.identifyingValues, 0);
  const lines = [
    `### Profile: ${name === 'basic' ? 'Basic profile alone (`basic`)' : 'research default (`research-default`)'}`,
    '',
    `${results.length} files; ${readable} parsed by our parser, holding ${values} identifying values in all (the gate's definition for this profile).`,
    '',
    '| | ours | gdcmanon -e |',
    '|---|---:|---:|',
    `| outputs written | ${a.written} | ${g.written} |`,
    `| outputs holding a source identifying value | ${a.filesWithLeaks} | ${g.filesWithLeaks} |`,
    `| identifying values found in outputs (sum over files) | ${a.leakedValues} | ${g.leakedValues} |`,
    `| dciodvfy errors in the sources of the outputs written | ${a.dciodvfyInput} | ${g.dciodvfyInput} |`,
    `| dciodvfy errors in the outputs | ${a.dciodvfyOutput} | ${g.dciodvfyOutput} |`,
    `| outputs with more dciodvfy errors than their source | ${a.moreErrors} | ${g.moreErrors} |`,
    '',
    `- No output, ours: ${describeCounts(a.refusals)}.`,
    `- No output, gdcmanon: ${describeCounts(g.refusals)}.`,
    `- Where leaked values sit (attribute: files), ours: ${describeCounts(a.leakedIn)}.`,
    `- Where leaked values sit (attribute: files), gdcmanon: ${describeCounts(g.leakedIn)}.`,
  ];
  const worse = results.filter((r) => r.ours.written && (r.ours.dciodvfy ?? 0) > r.dciodvfyInput);
  if (worse.length > 0) lines.push(`- Our outputs with more dciodvfy errors than their source: ${worse.map((r) => `\`${r.file}\` (${r.dciodvfyInput} → ${r.ours.dciodvfy ?? 0})`).join(', ')}.`);
  return lines.join('\n');
}

async function versionOf(pkg: string): Promise<string> {
  const r = await run('dpkg-query', ['-W', '-f', '${Version}', pkg]);
  return r.code === 0 ? r.stdout.trim() : 'unknown';
}

function usage(): never {
  console.error('usage: node dist/tools/compare-deid.js <folder> [--profile basic|default]... [--out file.md] [--keep]');
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const profiles: string[] = [];
  let folder: string | undefined;
  let out: string | undefined;
  let keep = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--profile') {
      const p = args[++i];
      if (!p || !(p in PROFILES)) usage();
      profiles.push(p);
    } else if (a === '--out') {
      out = args[++i] ?? usage();
    } else if (a === '--keep') {
      keep = true;
    } else if (a && !a.startsWith('--') && folder === undefined) {
      folder = a;
    } else {
      usage();
    }
  }
  if (!folder) usage();
  if (profiles.length === 0) profiles.push('default', 'basic');
  const missing = ['dciodvfy', 'gdcmanon', 'openssl'].filter((c) => !isInstalled(c));
  if (missing.length > 0) {
    console.error(`missing tools: ${missing.join(', ')} (apt-get install dicom3tools libgdcm-tools openssl)`);
    process.exit(1);
  }

  const work = mkdtempSync(join(tmpdir(), 'compare-deid-'));
  for (const d of ['gdcmanon', ...profiles]) mkdirSync(join(work, d));
  const certificate = await throwawayCertificate(work);
  const files = listFiles(folder);
  let done = 0;
  const perFile = await mapLimited(files, 8, async (file, i) => {
    const r = await compareFile(file, i, folder as string, work, profiles, certificate);
    if (++done % 25 === 0) console.error(`${done}/${files.length}`);
    return r;
  });

  const command = `node dist/tools/compare-deid.js ${relative(process.cwd(), folder) || '.'}${profiles.map((p) => ` --profile ${p}`).join('')}${out ? ` --out ${out}` : ''}`;
  const doc = [
    '## De-identification compared with gdcmanon',
    '',
    `Produced by \`${command}\` (tools/compare-deid.ts) with gdcmanon from libgdcm-tools ${await versionOf('libgdcm-tools')} and dciodvfy from dicom3tools ${await versionOf('dicom3tools')}.`,
    '',
    '- Ours: `prepareDeidentifiedInstance` with a fixed test key and the burned-in policy `allow`, so that every file the engine accepts is written.',
    '- gdcmanon: `gdcmanon -e -c <certificate> -i <source> -o <output>`, its PS3.15 E.1.1 Basic profile. It refuses to run without a certificate (the removed values go, encrypted, into Encrypted Attributes Sequence); the tool generates a throwaway self-signed one with `openssl req -x509 -newkey rsa:2048 -nodes` and discards the key. The same gdcmanon output is compared under both of our profiles.',
    "- Identifying values: each source's values as the verification gate defines them for the profile (shared/dicom/deid/identifying.ts `collectSourceFacts`); both outputs are searched with the gate's matchers (`identifyingMatchers`: case-insensitive, at word boundaries, dates in their common spellings), over the file's bytes read as latin1 and as UTF-8, deflated data sets inflated, the top-level pixel data value left out (neither tool changes pixels, and megabytes of pixels match short values by chance), and the texts of our De-identification Method Code Sequence masked (constants, which the gate skips too: a source name \"PATIENT\" matched inside \"Retain Patient Characteristics Option\"). Outputs are searched attribute by attribute after re-parsing (the bytes when they cannot be parsed), skipping what the gate skips for both tools alike: code strings (defined terms), number strings (counts) and the writing tool's implementation name in the file meta. A value counts once per file.",
    '- dciodvfy: lines starting with "Error" (it writes to stderr), counted for the source and each output.',
    '',
    ...profiles.flatMap((p) => [section(p, perFile.map((m) => m.get(p) as FileResult)), '']),
  ].join('\n');
  if (out) writeFileSync(out, doc);
  else console.log(doc);
  if (!keep) rmSync(work, { recursive: true, force: true });
  else console.error(`outputs kept in ${work}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
