/**
 * The cohort download (tools/cohortDownload.ts) and its state (tools/cohortState.ts) against a
 * small DICOMweb server in this process (QIDO-RS /instances with paging, WADO-RS instances),
 * whose answers the tests bend: 503 with Retry-After, 401/403, 404, bodies cut off, wrong
 * content, an instance added or withdrawn between runs. Files are written to a temporary folder;
 * "disk full" is the kernel's own ENOSPC from /dev/full.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { encodeFileMeta } from '../../../shared/dicom/writer';
import { backoffSeconds, downloadCohort, type DownloadDeps, type DownloadOptions, type DownloadProgress, ExitCodes, isCohortError, retryAfterSeconds, sha256OfDigestHeaders } from '../../../tools/cohortDownload';
import { canonicalSelection, CHECKSUMS_FILE, type CohortInstance, JOURNAL_FILE, readJournal, readState, relativeFileOf, relist, STATE_FILE } from '../../../tools/cohortState';
import { renderDownloadProgress } from '../../../tools/downloadProgress';
import { readPartTenMeta } from '../../../tools/partTenMeta';
import { main } from '../../../tools/vnaResearch';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

interface Stored extends CohortInstance {
  bytes: Buffer;
  modality: string;
}

function instanceBytes(sop: string, size: number): Buffer {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 31 + sop.length) & 0xff;
  return Buffer.concat([encodeFileMeta(CT, sop, EXPLICIT_LE), body]);
}

function makeInstances(studies: number, perStudy: number, root = '1.2.3'): Stored[] {
  const out: Stored[] = [];
  for (let s = 1; s <= studies; s++) {
    for (let n = 1; n <= perStudy; n++) {
      const instance = `${root}.${s}.1.${n}`;
      out.push({ study: `${root}.${s}`, series: `${root}.${s}.1`, instance, modality: s % 2 ? 'CT' : 'MR', bytes: instanceBytes(instance, 2000 + n * 97) });
    }
  }
  return out;
}

/** What a test can make the server do for one request: undefined lets it answer normally. */
type Bend = (req: IncomingMessage, res: ServerResponse, sop: string | undefined) => boolean;

class FakeDicomweb {
  server!: Server;
  instances: Stored[] = [];
  /** WADO-RS requests by SOP Instance UID. */
  readonly fetches = new Map<string, number>();
  qidoRequests = 0;
  /** The most instances one QIDO page holds (a service lowering the limit). */
  maxPage = 1000;
  bend: Bend | undefined;
  readonly token = 'good-token';

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.answer(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const wado = /^\/api\/dicomweb\/studies\/([\d.]+)\/series\/([\d.]+)\/instances\/([\d.]+)$/.exec(url.pathname);
    const sop = wado?.[3];
    if (sop) this.fetches.set(sop, (this.fetches.get(sop) ?? 0) + 1);
    if (this.bend?.(req, res, sop)) return;
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'no valid token' } }));
      return;
    }
    if (url.pathname === '/api/dicomweb/instances') {
      this.qidoRequests++;
      let matches = this.instances;
      const studies = url.searchParams.get('StudyInstanceUID');
      if (studies) matches = matches.filter((i) => studies.split(',').includes(i.study));
      const modality = url.searchParams.get('Modality');
      if (modality) matches = matches.filter((i) => i.modality === modality);
      const offset = Number(url.searchParams.get('offset') ?? 0);
      const limit = Math.min(this.maxPage, Number(url.searchParams.get('limit') ?? 100));
      const page = matches.slice(offset, offset + limit);
      if (page.length === 0) {
        res.writeHead(204).end();
        return;
      }
      const json = page.map((i) => ({ '0020000D': { vr: 'UI', Value: [i.study] }, '0020000E': { vr: 'UI', Value: [i.series] }, '00080018': { vr: 'UI', Value: [i.instance] } }));
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(json));
      return;
    }
    const found = wado && this.instances.find((i) => i.study === wado[1] && i.series === wado[2] && i.instance === sop);
    if (!found) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no research instance has this UID' } }));
      return;
    }
    // Streamed as the service streams it: chunked, no Content-Length.
    res.writeHead(200, { 'content-type': `application/dicom; transfer-syntax=${EXPLICIT_LE}` });
    res.end(found.bytes);
  }
}

let server: FakeDicomweb;
let api: string;
let out: string;
let notices: string[];
let sleeps: number[];
let progress: DownloadProgress[];

function deps(): DownloadDeps {
  return {
    fetch: globalThis.fetch,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    now: Date.now,
    notice: (line) => notices.push(line),
    progress: (p) => progress.push(p),
  };
}

function options(extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return { api, token: server.token, out, selection: canonicalSelection([['Modality', 'CT']], []), concurrency: 3, ...extra };
}

function filesIn(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.relative(dir, path.join(d.parentPath, d.name))).sort();
}

function expectFilesEqual(instances: Stored[]): void {
  for (const i of instances) expect(fs.readFileSync(path.join(out, relativeFileOf(i))).equals(i.bytes)).toBe(true);
  const expected = [...instances.map((i) => relativeFileOf(i)), STATE_FILE, JOURNAL_FILE, CHECKSUMS_FILE].sort();
  expect(filesIn(out)).toEqual(expected);
}

const ct = () => server.instances.filter((i) => i.modality === 'CT');

beforeEach(async () => {
  server = new FakeDicomweb();
  server.instances = makeInstances(4, 5);
  api = await server.start();
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'cohort-'));
  notices = [];
  sleeps = [];
  progress = [];
});

afterEach(async () => {
  await server.stop();
  fs.rmSync(out, { recursive: true, force: true });
});

describe('downloadCohort', () => {
  test('given a filter, then every matching instance is written under study/series/instance.dcm, byte-equal, with the state, journal and SHA256SUMS', async () => {
    const result = await downloadCohort(options(), deps());
    expect(result).toMatchObject({ exitCode: ExitCodes.OK, total: 10, fetched: 10, present: 0, missing: 0, failed: 0 });
    expectFilesEqual(ct());
    expect(result.bytes).toBe(ct().reduce((n, i) => n + i.bytes.length, 0));
    const sums = fs.readFileSync(path.join(out, CHECKSUMS_FILE), 'utf8').trim().split('\n');
    expect(sums).toEqual(ct().map((i) => `${createHash('sha256').update(i.bytes).digest('hex')}  ${i.study}/${i.series}/${i.instance}.dcm`));
    expect(readState(out)?.instances).toEqual(ct().map(({ study, series, instance }) => ({ study, series, instance })));
    expect(progress.at(-1)).toMatchObject({ done: true, fetched: 10 });
  });

  test('given explicit studies and a service that pages by 3, then the listing follows the pages to the end', async () => {
    server.maxPage = 3;
    const studies = [server.instances[0]!.study, server.instances[19]!.study];
    const result = await downloadCohort(options({ selection: canonicalSelection([], studies) }), deps());
    const expected = server.instances.filter((i) => studies.includes(i.study));
    expect(result).toMatchObject({ exitCode: ExitCodes.OK, total: expected.length, fetched: expected.length });
    expectFilesEqual(expected);
  });

  test('given a re-run after complete, partial, truncated and unjournaled files, then only the partial, truncated and missing ones are fetched again', async () => {
    await downloadCohort(options(), deps());
    const [gone, partial, truncated, unjournaled, ...rest] = ct();
    fs.rmSync(path.join(out, relativeFileOf(gone!)));
    fs.renameSync(path.join(out, relativeFileOf(partial!)), path.join(out, `${relativeFileOf(partial!)}.part`));
    fs.truncateSync(path.join(out, `${relativeFileOf(partial!)}.part`), 700);
    fs.truncateSync(path.join(out, relativeFileOf(truncated!)), 1000);
    // The journal as if the run was killed between the rename of `unjournaled` and its line.
    const journal = fs.readFileSync(path.join(out, JOURNAL_FILE), 'utf8').split('\n').filter((l) => l && !l.includes(unjournaled!.instance));
    fs.writeFileSync(path.join(out, JOURNAL_FILE), `${journal.join('\n')}\n{"instance":"1.2.3`);
    server.fetches.clear();
    const qidoBefore = server.qidoRequests;

    const result = await downloadCohort(options(), deps());
    expect(result).toMatchObject({ exitCode: ExitCodes.OK, fetched: 3, present: 7 });
    expect(Object.fromEntries(server.fetches)).toEqual({ [gone!.instance]: 1, [partial!.instance]: 1, [truncated!.instance]: 1 });
    expect(server.qidoRequests).toBe(qidoBefore);
    expectFilesEqual(ct());
    expect([...readJournal(out).keys()].sort()).toEqual(ct().map((i) => i.instance).sort());
    expect(rest.length).toBe(6);
  });

  test('given instances added and withdrawn in the catalog between runs, then a resume keeps the first listing (the withdrawn one missing, exit 3) and --relist takes the catalog\'s', async () => {
    server.instances = makeInstances(4, 5);
    const first = ct();
    // The first run stops after some files: the service goes away (503 through every attempt).
    let served = 0;
    server.bend = (_req, res, sop) => {
      if (sop && ++served > 4) {
        res.writeHead(503, { 'retry-after': '1' }).end();
        return true;
      }
      return false;
    };
    await expect(downloadCohort(options({ concurrency: 1, maxAttempts: 2 }), deps())).rejects.toMatchObject({ exitCode: ExitCodes.UNAVAILABLE });
    expect(filesIn(out).filter((f) => f.endsWith('.dcm'))).toHaveLength(4);
    server.bend = undefined;
    const withdrawn = first[9]!;
    const added = { ...first[0]!, instance: `${first[0]!.series}.99`, bytes: instanceBytes(`${first[0]!.series}.99`, 3000) };
    server.instances = [...server.instances.filter((i) => i !== withdrawn), added];

    const resumed = await downloadCohort(options(), deps());
    expect(resumed).toMatchObject({ exitCode: ExitCodes.INCOMPLETE, total: 10, present: 4, fetched: 5, missing: 1 });
    expect(server.fetches.get(added.instance)).toBeUndefined();
    expect(notices.some((n) => n.includes(withdrawn.instance) && n.includes('404'))).toBe(true);
    expect(fs.existsSync(path.join(out, CHECKSUMS_FILE))).toBe(false);

    const relisted = await downloadCohort(options({ relist: true }), deps());
    expect(relisted).toMatchObject({ exitCode: ExitCodes.OK, total: 10, present: 9, fetched: 1, relisted: { added: 1, removed: 1 } });
    expectFilesEqual(ct());
    expect(readState(out)?.instances.map((i) => i.instance)).toContain(added.instance);
  });

  test('given a folder holding another cohort, then exit 2 naming it, and nothing is fetched', async () => {
    await downloadCohort(options(), deps());
    server.fetches.clear();
    const error = await downloadCohort(options({ selection: canonicalSelection([['Modality', 'MR']], []) }), deps()).catch((e: unknown) => e);
    expect(isCohortError(error) && error.exitCode).toBe(ExitCodes.USAGE);
    expect((error as Error).message).toContain('Modality=CT');
    expect(server.fetches.size).toBe(0);
  });

  test('given a filter nothing matches, then exit 0 with an empty cohort, and a notice that says so', async () => {
    const result = await downloadCohort(options({ selection: canonicalSelection([['Modality', 'US']], []) }), deps());
    expect(result).toMatchObject({ exitCode: ExitCodes.OK, total: 0, fetched: 0 });
    expect(notices).toEqual(['the selection matches no research instance (Modality=US)']);
  });

  test('given no filter and no study, then exit 2: the whole catalog is not a cohort', async () => {
    await expect(downloadCohort(options({ selection: canonicalSelection([], []) }), deps())).rejects.toMatchObject({ exitCode: ExitCodes.USAGE });
  });

  test('given 503 with Retry-After twice, then it waits as told and the file arrives', async () => {
    let refusals = 0;
    const target = ct()[2]!.instance;
    server.bend = (_req, res, sop) => {
      if (sop === target && refusals < 2) {
        refusals++;
        res.writeHead(503, { 'retry-after': refusals === 1 ? '7' : '3' }).end();
        return true;
      }
      return false;
    };
    const result = await downloadCohort(options(), deps());
    expect(result.exitCode).toBe(ExitCodes.OK);
    expect(sleeps).toEqual([7000, 3000]);
    expect(notices.filter((n) => n.includes('503'))).toHaveLength(2);
    expectFilesEqual(ct());
  });

  test('given 503 without Retry-After for good, then backoff 1, 2, 4 s, bounded by the attempts, and exit 6', async () => {
    server.bend = (_req, res, sop) => {
      if (!sop) return false;
      res.writeHead(503).end();
      return true;
    };
    await expect(downloadCohort(options({ concurrency: 1, maxAttempts: 4 }), deps())).rejects.toMatchObject({ exitCode: ExitCodes.UNAVAILABLE });
    expect(sleeps).toEqual([1000, 2000, 4000]);
  });

  test.each([
    [401, 'expired'],
    [403, 'Research.Read'],
  ])('given %i, then exit 4 with what to do, and no further requests', async (status, words) => {
    server.bend = (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'refused' } }));
      return true;
    };
    const error = await downloadCohort(options(), deps()).catch((e: unknown) => e);
    expect(isCohortError(error) && error.exitCode).toBe(ExitCodes.NOT_AUTHORIZED);
    expect((error as Error).message).toContain(words);
    expect(server.qidoRequests + server.fetches.size).toBe(0);
  });

  test('given a full disk (the .part is /dev/full), then exit 5 and nothing left at the final name', async () => {
    const victim = ct()[0]!;
    fs.mkdirSync(path.join(out, victim.study, victim.series), { recursive: true });
    fs.symlinkSync('/dev/full', path.join(out, `${relativeFileOf(victim)}.part`));
    const error = await downloadCohort(options({ concurrency: 1 }), deps()).catch((e: unknown) => e);
    expect(isCohortError(error) && error.exitCode).toBe(ExitCodes.DISK);
    expect((error as Error).message).toContain('ENOSPC');
    expect(fs.existsSync(path.join(out, relativeFileOf(victim)))).toBe(false);
    // Space back: the same command resumes.
    fs.rmSync(path.join(out, `${relativeFileOf(victim)}.part`), { force: true });
    expect((await downloadCohort(options(), deps())).exitCode).toBe(ExitCodes.OK);
    expectFilesEqual(ct());
  });

  test('given a body cut off mid-way once, then the part is fetched again and the file is whole', async () => {
    const target = ct()[1]!;
    let cut = false;
    server.bend = (_req, res, sop) => {
      if (sop !== target.instance || cut) return false;
      cut = true;
      res.writeHead(200, { 'content-type': `application/dicom; transfer-syntax=${EXPLICIT_LE}` });
      res.write(target.bytes.subarray(0, 1500), () => res.destroy());
      return true;
    };
    const result = await downloadCohort(options(), deps());
    expect(result.exitCode).toBe(ExitCodes.OK);
    expect(server.fetches.get(target.instance)).toBe(2);
    expect(notices.some((n) => n.includes('broke off'))).toBe(true);
    expectFilesEqual(ct());
  });

  test('given an answer that is another instance, or has a wrong declared sha-256, twice, then no final file and exit 1', async () => {
    const [a, b] = ct();
    server.bend = (_req, res, sop) => {
      if (sop === a!.instance) {
        res.writeHead(200, { 'content-type': `application/dicom; transfer-syntax=${EXPLICIT_LE}` }).end(b!.bytes);
        return true;
      }
      if (sop === b!.instance) {
        res.writeHead(200, { 'content-type': `application/dicom; transfer-syntax=${EXPLICIT_LE}`, 'repr-digest': `sha-256=:${createHash('sha256').update('other').digest('base64')}:` }).end(b!.bytes);
        return true;
      }
      return false;
    };
    const result = await downloadCohort(options(), deps());
    expect(result).toMatchObject({ exitCode: ExitCodes.FAILED, fetched: 8, failed: 2 });
    expect(server.fetches.get(a!.instance)).toBe(2);
    expect(fs.existsSync(path.join(out, relativeFileOf(a!)))).toBe(false);
    expect(fs.existsSync(path.join(out, relativeFileOf(b!)))).toBe(false);
    expect(notices.some((n) => n.includes('another SOP instance'))).toBe(true);
    expect(notices.some((n) => n.includes('sha-256'))).toBe(true);
    // The service mends: the same command finishes the cohort.
    server.bend = undefined;
    expect(await downloadCohort(options(), deps())).toMatchObject({ exitCode: ExitCodes.OK, fetched: 2, present: 8 });
  });
});

describe('cohort state and checks', () => {
  test('given the same filters and studies in another order, then the selections are equal', () => {
    expect(canonicalSelection([['Modality', 'CT'], ['BodyPartExamined', 'CHEST']], ['1.3', '1.2', '1.3'])).toEqual(canonicalSelection([['BodyPartExamined', 'CHEST'], ['Modality', 'CT']], ['1.2', '1.3']));
  });

  test('given listings before and after, then relist names the added and the removed', () => {
    const i = (n: string) => ({ study: '1', series: '1.1', instance: n });
    expect(relist([i('1.1.1'), i('1.1.2')], [i('1.1.2'), i('1.1.3')])).toEqual({ added: [i('1.1.3')], removed: [i('1.1.1')] });
  });

  test('given a state file whose listing names a path, then it is refused', () => {
    fs.writeFileSync(path.join(out, STATE_FILE), JSON.stringify({ version: 1, api, selection: { filters: [], studies: [] }, listedAt: '', instances: [{ study: '..', series: '1', instance: '1' }] }));
    expect(() => readState(out)).toThrow('not a cohort state');
  });

  test('given a PS3.10 head, then its meta is read; given no DICM or a cut meta, then it says so', () => {
    const bytes = instanceBytes('1.2.3.4', 10);
    expect(readPartTenMeta(bytes)).toEqual({ mediaStorageSopClassUid: CT, mediaStorageSopInstanceUid: '1.2.3.4', transferSyntaxUid: EXPLICIT_LE });
    expect(() => readPartTenMeta(Buffer.alloc(200))).toThrow('DICM');
    expect(() => readPartTenMeta(bytes.subarray(0, 160))).toThrow('cut short');
  });

  test('given Retry-After as seconds or a date, and digest headers, then they are read', () => {
    expect(retryAfterSeconds('12', 0)).toBe(12);
    expect(retryAfterSeconds(new Date(30_000).toUTCString(), 0)).toBe(30);
    expect(retryAfterSeconds('soon', 0)).toBeUndefined();
    expect([1, 2, 3, 4, 8].map((a) => backoffSeconds(a, undefined, 60))).toEqual([1, 2, 4, 8, 60]);
    expect(backoffSeconds(1, 600, 60)).toBe(60);
    const sha = createHash('sha256').update('x').digest();
    expect(sha256OfDigestHeaders(new Headers({ 'repr-digest': `sha-512=:AA==:, sha-256=:${sha.toString('base64')}:` }))).toBe(sha.toString('hex'));
    expect(sha256OfDigestHeaders(new Headers({ digest: `SHA-256=${sha.toString('base64')}` }))).toBe(sha.toString('hex'));
    expect(sha256OfDigestHeaders(new Headers())).toBeUndefined();
  });

  test('given progress mid-way, then the line shows files, bytes, rate and ETA', () => {
    const line = renderDownloadProgress({ total: 100, present: 20, fetched: 30, missing: 0, failed: 0, bytes: 15_000_000, elapsedSeconds: 10, done: false }, 20);
    expect(line).toBe('[##########..........]  50.0% 50/100 files  15.0 MB  1.5 MB/s  ETA 0:17  (fetched 30, already here 20)');
  });
});

describe('vna-research download arguments', () => {
  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
    const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
    try {
      return { code: await main(args), stdout, stderr };
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
  }

  test('given --help, then the usage with every exit code, and 0', async () => {
    const help = await cli(['download', '--help']);
    expect(help.code).toBe(0);
    for (const code of Object.values(ExitCodes)) expect(help.stdout).toMatch(new RegExp(`^\\s+(exit codes: )?${code} \\S`, 'm'));
  });

  test('given no folder, a study that is not a UID, or a bad concurrency, then exit 2 and the usage', async () => {
    for (const args of [['download'], ['download', out, '--study', '1.2.abc'], ['download', out, 'Modality=CT', '--concurrency', '0']]) {
      const r = await cli([...args, '--token', 't', '--api', api]);
      expect({ code: r.code, usage: r.stderr.includes('usage') }).toEqual({ code: ExitCodes.USAGE, usage: true });
    }
    expect(server.qidoRequests + server.fetches.size).toBe(0);
  });

  test('given a study file and a filter, then the cohort is those studies matching the filter, and the summary says so', async () => {
    const list = path.join(os.tmpdir(), `studies-${process.pid}.txt`);
    fs.writeFileSync(list, `# cohort\n${server.instances[0]!.study}\n\n${server.instances[5]!.study}\n`);
    try {
      const r = await cli(['download', out, 'Modality=CT', '--studies-file', list, '--token', server.token, '--api', api]);
      expect(r.code).toBe(ExitCodes.OK);
      expect(r.stdout).toContain('download: 5 fetched, 0 already here, of 5 instances');
      expectFilesEqual(server.instances.filter((i) => i.study === server.instances[0]!.study));
    } finally {
      fs.rmSync(list, { force: true });
    }
  });
});
