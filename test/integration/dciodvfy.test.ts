/**
 * Acceptance: dciodvfy (dicom3tools) reports no more errors on a de-identified output than on
 * its source, over the fixtures of every SOP class we hold, under every built-in profile. Needs dciodvfy on PATH (Debian
 * package dicom3tools); without it the run fails, it does not skip.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { bufferReader } from '../../shared/dicom/byteReader';
import { asciiValue } from '../../shared/dicom/dataset';
import { builtInProfile } from '../../shared/dicom/deid/profile';
import { isPipelineError } from '../../shared/errors';
import { prepareDeidentifiedInstance } from '../../shared/ingest/deidentifyInstance';
import { dciodvfyErrors, isInstalled, mapLimited } from '../../tools/dicomTools';

const FIXTURES = join(__dirname, '..', 'fixtures', 'dicom');
const key = Buffer.from('dciodvfy acceptance key, 32 bytes');

/**
 * Refusals that write nothing, so there is no output to validate: files that are not instances
 * (directories, truncated or broken files), and outputs the verification gate held back
 * (listed in the run's log, since they are the gate's findings rather than dciodvfy's).
 */
const NOT_WRITTEN = new Set(['DICOM_DICOMDIR', 'DICOM_NOT_DICOM', 'DICOM_TRUNCATED', 'DICOM_MALFORMED', 'DICOM_MISSING_UID', 'DICOM_ELEMENT_TOO_LARGE', 'DEID_VERIFICATION_FAILED']);

function listFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return listFiles(p);
    return /\.(md|tsv)$/.test(name) ? [] : [p];
  });
}

interface Outcome {
  file: string;
  sopClass?: string;
  refusal?: string;
  input?: number;
  output?: number;
  newErrors?: string[];
}

const PROFILES = ['research-default', 'basic', 'safe-harbor', 'limited-data-set'] as const;
const files = listFiles(FIXTURES).map((f) => relative(FIXTURES, f));
/** Outcomes by profile, then by file. */
const outcomes = new Map<string, Map<string, Outcome>>();
let work = '';

beforeAll(async () => {
  if (!isInstalled('dciodvfy')) {
    throw new Error('dciodvfy is not installed: install the Debian package dicom3tools (apt-get install -y dicom3tools); this test does not skip');
  }
  work = mkdtempSync(join(tmpdir(), 'dciodvfy-'));
  for (const name of PROFILES) await checkProfile(name);
}, 1_200_000);

async function checkProfile(name: string): Promise<void> {
  const profile = builtInProfile(name);
  if (!profile) throw new Error(`no built-in profile ${name}`);
  const byFile = new Map<string, Outcome>();
  outcomes.set(name, byFile);
  await mapLimited(files, 8, async (file, i) => {
    const source = readFileSync(join(FIXTURES, file));
    try {
      const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
        deid: { profile, key, keyId: 'dciodvfy' },
        maxHeaderBytes: 64 * 1024 * 1024,
        totalSize: source.length,
        burnedIn: { mode: 'allow' },
      });
      const parts: Uint8Array[] = [];
      for await (const c of prepared.output()) parts.push(c);
      const out = join(work, `${name}-${i}.dcm`);
      writeFileSync(out, Buffer.concat(parts));
      const before = await dciodvfyErrors(join(FIXTURES, file));
      const after = await dciodvfyErrors(out);
      // Messages name attributes and rules, not values, once the UIDs (which differ) are masked.
      const mask = (l: string) => l.replace(/\[[^\]]*\]/g, '[…]');
      const known = new Set(before.lines.map(mask));
      byFile.set(file, {
        file,
        sopClass: asciiValue(prepared.dataset.get(0x00080016)),
        input: before.errors,
        output: after.errors,
        newErrors: after.lines.map(mask).filter((l) => !known.has(l)),
      });
    } catch (e) {
      if (!isPipelineError(e)) throw e;
      byFile.set(file, { file, refusal: e.code });
    }
  });
  const written = [...byFile.values()].filter((o) => o.output !== undefined);
  const classes = new Set(written.map((o) => o.sopClass));
  console.log(
    `dciodvfy (${name}) over ${written.length} de-identified fixtures of ${classes.size} SOP classes: ` +
      `${written.reduce((n, o) => n + (o.input ?? 0), 0)} errors in the sources, ${written.reduce((n, o) => n + (o.output ?? 0), 0)} in the outputs; ` +
      `${byFile.size - written.length} files not ingested; held back by the gate: ` +
      `${[...byFile.values()].filter((o) => o.refusal === 'DEID_VERIFICATION_FAILED').map((o) => o.file).join(', ') || 'none'}`,
  );
}

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.each(PROFILES)('dciodvfy on de-identified fixtures (%s profile)', (name) => {
  // The fixtures hold 22 SOP classes; those whose every file the gate holds back cannot count.
  it('given every fixture, then at least 40 outputs over at least 15 SOP classes were checked', () => {
    const written = [...(outcomes.get(name)?.values() ?? [])].filter((o) => o.output !== undefined);
    expect(written.length).toBeGreaterThanOrEqual(40);
    expect(new Set(written.map((o) => o.sopClass)).size).toBeGreaterThanOrEqual(15);
  });

  it.each(files)('given %s, then the output has no more dciodvfy errors than the source', (file) => {
    const o = outcomes.get(name)?.get(file);
    if (!o) throw new Error('not processed');
    if (o.refusal !== undefined) {
      expect(NOT_WRITTEN).toContain(o.refusal);
      return;
    }
    expect({ errors: o.output, newErrors: o.newErrors }).toEqual({ errors: expect.any(Number), newErrors: expect.any(Array) });
    if ((o.output ?? 0) > (o.input ?? 0)) {
      throw new Error(`dciodvfy: ${o.output} errors in the output, ${o.input} in the source; new: ${(o.newErrors ?? []).join(' | ')}`);
    }
  });
});
