/**
 * Research identifiers are derived from the key alone, never from process state (a cache, a
 * counter, the clock, a random salt): instances of one study ingested by different function
 * instances, or re-ingested after a restart, must land in the same research study and be
 * written byte for byte the same. Each run is a separate node process over the compiled core
 * that the functions deploy, so nothing in this worker's module registry can carry state over.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { asciiValue } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';

const projectRoot = resolve(__dirname, '..', '..');
const distDir = join(projectRoot, 'dist');
const FIXTURES = join(projectRoot, 'test', 'fixtures', 'dicom', 'pydicom-deb');
// Two CT instances of one study and series (dcmdump: same StudyInstanceUID and SeriesInstanceUID, other SOPInstanceUID).
const fixture = (im: string) => join(FIXTURES, `test_files__dicomdirtests__TINY_ALPHA__PT000000__ST000000__SE000000__${im}`);
const FILES: [string, string] = [fixture('IM000001'), fixture('IM000002')];

const KEY = 'determinism-test-key-0123456789abcdef';
const OTHER_KEY = 'determinism-other-key-0123456789abcdef';
// The same key id for both keys, so that any difference comes from the key bytes alone.
const KEY_ID = 'det';

const PATIENT_ID = 0x00100020;

/** Runs in a fresh node process; argv: dist folder, key, key id, files. */
const CHILD_SCRIPT = `
const { createHash } = require('crypto');
const { readFileSync } = require('fs');
const { join } = require('path');
const [distDir, keyText, keyId, ...files] = process.argv.slice(1);
const { prepareDeidentifiedInstance } = require(join(distDir, 'shared/ingest/deidentifyInstance.js'));
const { bufferReader } = require(join(distDir, 'shared/dicom/byteReader.js'));
const { defaultProfile } = require(join(distDir, 'shared/dicom/deid/profile.js'));
(async () => {
  const results = [];
  for (const file of files) {
    const source = readFileSync(file);
    const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
      deid: { profile: defaultProfile(), key: Buffer.from(keyText, 'utf8'), keyId },
      maxHeaderBytes: 1 << 20,
      totalSize: source.length,
      burnedIn: { mode: 'allow' },
    });
    const chunks = [];
    for await (const c of prepared.output()) chunks.push(Buffer.from(c));
    const output = Buffer.concat(chunks);
    results.push({
      sha256: createHash('sha256').update(output).digest('hex'),
      research: prepared.research,
      original: prepared.original,
      output: output.toString('base64'),
    });
  }
  process.stdout.write(JSON.stringify({ pid: process.pid, results }));
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e));
  process.exit(1);
});
`;

interface UidSet {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}

interface FileResult {
  sha256: string;
  research: UidSet;
  original: UidSet;
  output: string;
}

interface ProcessRun {
  pid: number;
  /** In the order of FILES. */
  results: [FileResult, FileResult];
}

function deidentifyInChild(key: string): ProcessRun {
  const stdout = execFileSync(process.execPath, ['-e', CHILD_SCRIPT, distDir, key, KEY_ID, ...FILES], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60000,
  });
  return JSON.parse(stdout.toString('utf8')) as ProcessRun;
}

async function patientIdOf(result: FileResult): Promise<string | undefined> {
  return asciiValue((await parseDicomBuffer(Buffer.from(result.output, 'base64'))).dataset.get(PATIENT_ID));
}

let first: ProcessRun;
let second: ProcessRun;
let otherKey: ProcessRun;

beforeAll(() => {
  first = deidentifyInChild(KEY);
  second = deidentifyInChild(KEY);
  otherKey = deidentifyInChild(OTHER_KEY);
});

describe('de-identification across processes', () => {
  test('given the fixtures, then they are two instances of one study and series (the premise of the test)', () => {
    const [a, b] = first.results;
    expect(a.original.studyInstanceUid).toBe(b.original.studyInstanceUid);
    expect(a.original.seriesInstanceUid).toBe(b.original.seriesInstanceUid);
    expect(a.original.sopInstanceUid).not.toBe(b.original.sopInstanceUid);
    expect(new Set([first.pid, second.pid, otherKey.pid, process.pid]).size).toBe(4);
  });

  test('given the same key in two processes, then the outputs are byte-identical', () => {
    expect(first.results).toHaveLength(FILES.length);
    expect(second.results.map((r) => r.sha256)).toEqual(first.results.map((r) => r.sha256));
    // The reported hash is of the bytes reported: a child that hashed something else would pass the line above.
    for (const r of [...first.results, ...second.results]) {
      expect(createHash('sha256').update(Buffer.from(r.output, 'base64')).digest('hex')).toBe(r.sha256);
    }
  });

  test('given the same source UIDs in two processes, then the same research UIDs, one research study for both files', () => {
    expect(second.results.map((r) => r.research)).toEqual(first.results.map((r) => r.research));
    for (const run of [first, second]) {
      const [a, b] = run.results;
      expect(a.research.studyInstanceUid).toBe(b.research.studyInstanceUid);
      expect(a.research.seriesInstanceUid).toBe(b.research.seriesInstanceUid);
      expect(a.research.sopInstanceUid).not.toBe(b.research.sopInstanceUid);
      expect(a.research.studyInstanceUid).not.toBe(a.original.studyInstanceUid);
    }
  });

  test('given the outputs, then the research UIDs reported are the ones written and the patient has one pseudonym', async () => {
    const source = await parseDicomBuffer(readFileSync(FILES[0]));
    const sourcePatientId = asciiValue(source.dataset.get(PATIENT_ID));
    const pseudonyms = new Set<string | undefined>();
    for (const r of first.results) {
      const written = await parseDicomBuffer(Buffer.from(r.output, 'base64'));
      expect(asciiValue(written.dataset.get(Tags.StudyInstanceUID))).toBe(r.research.studyInstanceUid);
      expect(asciiValue(written.dataset.get(Tags.SeriesInstanceUID))).toBe(r.research.seriesInstanceUid);
      expect(asciiValue(written.dataset.get(Tags.SOPInstanceUID))).toBe(r.research.sopInstanceUid);
      pseudonyms.add(await patientIdOf(r));
    }
    expect(pseudonyms.size).toBe(1);
    const [pseudonym] = [...pseudonyms];
    expect(pseudonym).toBeTruthy();
    expect(pseudonym).not.toBe(sourcePatientId);
  });

  test('given another key in a third process, then other research UIDs, another patient pseudonym and other bytes', async () => {
    const research = (run: ProcessRun) => run.results.flatMap((r) => [r.research.studyInstanceUid, r.research.seriesInstanceUid, r.research.sopInstanceUid]);
    const withKey = research(first);
    for (const uid of research(otherKey)) expect(withKey).not.toContain(uid);
    // Still one research study per source study under the other key.
    expect(otherKey.results[0].research.studyInstanceUid).toBe(otherKey.results[1].research.studyInstanceUid);

    for (const i of [0, 1] as const) {
      expect(await patientIdOf(otherKey.results[i])).not.toBe(await patientIdOf(first.results[i]));
      expect(otherKey.results[i].sha256).not.toBe(first.results[i].sha256);
    }
  });
});
