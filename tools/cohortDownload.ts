/**
 * `vna-research download` (issue 16): a cohort of research copies into a folder, through the
 * public DICOMweb endpoints only (QIDO-RS lists it, WADO-RS fetches each instance), with the same
 * bearer token as the other subcommands. Resumable: see cohortState.ts for what the folder keeps.
 *
 * Each instance is fetched alone (`Accept: application/dicom; transfer-syntax=*`: the stored
 * bytes, which are the research blob's) into `<instance>.dcm.part`, checked, then renamed. The
 * checks: the body ended as the transport said it would (chunked end, or Content-Length when the
 * service sends one), a `Repr-Digest`/`Content-Digest` sha-256 when the service sends one (it
 * does not today), and the PS3.10 head (preamble, "DICM", meta naming the SOP instance asked for
 * and the transfer syntax of the answer). WADO-RS has no Range on instances, so a partial file
 * is fetched again from its start.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import {
  appendJournal,
  checksums,
  CHECKSUMS_FILE,
  type CohortInstance,
  type CohortSelection,
  type CohortState,
  describeSelection,
  isUid,
  type JournalEntry,
  readJournal,
  readState,
  relativeFileOf,
  relist,
  rewriteJournal,
  sameSelection,
  writeState,
} from './cohortState';
import { checkPartTenHead, META_HEAD_BYTES } from './partTenMeta';

/** Exit codes of `vna-research download` (printed by --help). */
export const ExitCodes = {
  OK: 0,
  /** Anything else: an unexpected answer, a network failure after retries, a file failing its check twice. */
  FAILED: 1,
  /** Bad arguments, or the output folder holds another cohort. */
  USAGE: 2,
  /** Done, but instances of the listing are no longer in the catalog (404: withdrawn since the listing). */
  INCOMPLETE: 3,
  /** 401 or 403: the token is missing, expired or lacks Research.Read. */
  NOT_AUTHORIZED: 4,
  /** The output folder cannot be written: disk full, quota, read-only, permissions. */
  DISK: 5,
  /** 503 (or 429, 502, 504) still after the bounded retries. */
  UNAVAILABLE: 6,
} as const;

export class CohortError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CohortError';
  }
}

export function isCohortError(e: unknown): e is CohortError {
  return e instanceof CohortError;
}

export interface DownloadProgress {
  /** Instances in the listing. */
  total: number;
  /** Already complete when this run started (not fetched again). */
  present: number;
  /** Fetched and checked by this run. */
  fetched: number;
  /** Answered 404 (withdrawn since the listing). */
  missing: number;
  /** Failed their check twice, or failed otherwise. */
  failed: number;
  /** Bytes received by this run (parts that were abandoned included). */
  bytes: number;
  /** Seconds since this run's fetching started. */
  elapsedSeconds: number;
  done: boolean;
}

export interface DownloadOptions {
  api: string;
  token: string;
  out: string;
  selection: CohortSelection;
  /** Ask the catalog again instead of resuming the recorded listing. */
  relist?: boolean;
  /** Instances fetched at once (default 4). */
  concurrency?: number;
  /** Attempts of one request when the service is unavailable or the connection fails (default 6). */
  maxAttempts?: number;
  /** Longest wait between two attempts, seconds (default 60; a longer Retry-After is capped). */
  maxRetryWaitSeconds?: number;
  /** QIDO-RS page size for the listing (default 1000, the service's most). */
  pageSize?: number;
}

export interface DownloadDeps {
  fetch: typeof fetch;
  sleep: (ms: number) => Promise<void>;
  /** One line for the user (stderr): a relist's changes, a missing instance, a retry. */
  notice: (line: string) => void;
  progress: (p: DownloadProgress) => void;
  now: () => number;
}

export const defaultDeps = (): Omit<DownloadDeps, 'notice' | 'progress'> => ({
  fetch: globalThis.fetch,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  now: Date.now,
});

export interface DownloadResult extends DownloadProgress {
  exitCode: number;
  /** A relist's changes (undefined without a relist). */
  relisted?: { added: number; removed: number };
}

/** Statuses worth another attempt: the service said so (503, 429) or a gateway did. */
const RETRIABLE = new Set([429, 502, 503, 504]);

/** Write failures that mean the output folder cannot take the cohort, whichever file hit them. */
const DISK_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EFBIG']);

function isDiskError(e: unknown): boolean {
  return DISK_CODES.has((e as NodeJS.ErrnoException)?.code ?? '');
}

/**
 * Seconds a Retry-After header asks for (delta-seconds or an HTTP date), undefined when absent
 * or unreadable. Pure but for `now`.
 */
export function retryAfterSeconds(header: string | null, now: number): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/** The wait before attempt `attempt + 1` (attempt counts from 1): Retry-After when given, else 1, 2, 4... s; capped. Pure. */
export function backoffSeconds(attempt: number, retryAfter: number | undefined, cap: number): number {
  return Math.min(cap, retryAfter ?? 2 ** (attempt - 1));
}

/** The sha-256 a `Repr-Digest` / `Content-Digest` (RFC 9530) or legacy `Digest` header carries, as hex; undefined when none. */
export function sha256OfDigestHeaders(headers: Headers): string | undefined {
  for (const name of ['repr-digest', 'content-digest']) {
    const m = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):/i.exec(headers.get(name) ?? '');
    if (m?.[1]) return Buffer.from(m[1], 'base64').toString('hex');
  }
  const legacy = /(?:^|,)\s*sha-256=([A-Za-z0-9+/=]+)/i.exec(headers.get('digest') ?? '');
  return legacy?.[1] ? Buffer.from(legacy[1], 'base64').toString('hex') : undefined;
}

class Client {
  private stopped = false;

  constructor(
    private readonly options: Required<Pick<DownloadOptions, 'api' | 'token' | 'maxAttempts' | 'maxRetryWaitSeconds'>>,
    private readonly deps: DownloadDeps,
    readonly abort: AbortController,
  ) {}

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  /**
   * A GET that is retried (bounded) on 429/502/503/504 and on connection failures. Answers
   * the response of any other status; throws CohortError NOT_AUTHORIZED on 401/403 and
   * UNAVAILABLE when the attempts run out. `what` names the request in messages (no PHI: research UIDs at most).
   */
  async get(url: string, accept: string, what: string): Promise<Response> {
    const { maxAttempts, maxRetryWaitSeconds } = this.options;
    for (let attempt = 1; ; attempt++) {
      let res: Response | undefined;
      let failure: unknown;
      try {
        res = await this.deps.fetch(url, { headers: { authorization: `Bearer ${this.options.token}`, accept }, signal: this.abort.signal });
      } catch (e) {
        if (this.stopped) throw e;
        failure = e;
      }
      if (res && (res.status === 401 || res.status === 403)) {
        const message = await errorMessageOf(res);
        throw new CohortError(ExitCodes.NOT_AUTHORIZED, `${res.status} on ${what}: ${res.status === 401 ? 'the token is missing, expired or not accepted' : 'the token lacks the Research.Read role'}${message ? ` (${message})` : ''}`);
      }
      if (res && !RETRIABLE.has(res.status)) return res;
      const retryAfter = res ? retryAfterSeconds(res.headers.get('retry-after'), this.deps.now()) : undefined;
      const reason = res ? `${res.status}` : `connection failed (${(failure as Error)?.message ?? failure})`;
      if (res) await res.body?.cancel().catch(() => undefined);
      if (attempt >= maxAttempts) {
        throw new CohortError(ExitCodes.UNAVAILABLE, `${what}: ${reason} after ${attempt} attempts; run the same command again later to resume`, { cause: failure });
      }
      const wait = backoffSeconds(attempt, retryAfter, maxRetryWaitSeconds);
      this.deps.notice(`${what}: ${reason}, attempt ${attempt} of ${maxAttempts}; retrying in ${wait} s${retryAfter !== undefined ? ' (Retry-After)' : ''}`);
      await this.deps.sleep(wait * 1000);
      if (this.stopped) throw new Error('stopped');
    }
  }
}

async function errorMessageOf(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    return (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}

const LISTING_FIELDS = '0020000D,0020000E,00080018';

/**
 * The cohort as QIDO-RS lists it: `/instances` with the filters and, for explicit studies,
 * `StudyInstanceUID=<list>` (100 at a time), paged by offset until an empty page (a service
 * that lowers the limit is followed, not cut short). Instances listed twice (offset paging
 * while the catalog changes) are kept once.
 */
async function listCohort(client: Client, api: string, selection: CohortSelection, pageSize: number): Promise<CohortInstance[]> {
  if (selection.filters.length === 0 && selection.studies.length === 0) throw new CohortError(ExitCodes.USAGE, 'download: give QIDO-RS filters (Key=Value) and/or --study UIDs: the whole catalog is not a cohort');
  const batches: (string[] | undefined)[] = selection.studies.length === 0 ? [undefined] : [];
  for (let i = 0; i < selection.studies.length; i += 100) batches.push(selection.studies.slice(i, i + 100));
  const seen = new Map<string, CohortInstance>();
  for (const studies of batches) {
    for (let offset = 0; ; ) {
      const q = new URLSearchParams(selection.filters);
      if (studies) q.set('StudyInstanceUID', studies.join(','));
      q.set('includefield', LISTING_FIELDS);
      q.set('limit', String(pageSize));
      q.set('offset', String(offset));
      const res = await client.get(`${api}/dicomweb/instances?${q.toString()}`, 'application/dicom+json', 'the cohort listing (QIDO-RS)');
      if (res.status === 204) break;
      if (!res.ok) throw new CohortError(ExitCodes.FAILED, `the cohort listing (QIDO-RS): ${res.status}: ${await errorMessageOf(res)}`);
      const text = await res.text();
      const page = (text ? JSON.parse(text) : []) as Record<string, { Value?: unknown[] }>[];
      if (page.length === 0) break;
      for (const item of page) {
        const [study, series, instance] = ['0020000D', '0020000E', '00080018'].map((t) => item[t]?.Value?.[0]);
        if (!isUid(study) || !isUid(series) || !isUid(instance)) throw new CohortError(ExitCodes.FAILED, 'the cohort listing (QIDO-RS) answered an instance without valid study, series and SOP instance UIDs');
        if (!seen.has(instance)) seen.set(instance, { study, series, instance });
      }
      offset += page.length;
    }
  }
  return [...seen.values()];
}

/** The state to download from: the recorded one (same service and selection), or a new listing. */
async function cohortOf(client: Client, options: Required<DownloadOptions>, deps: DownloadDeps): Promise<{ state: CohortState; relisted?: { added: CohortInstance[]; removed: CohortInstance[] } }> {
  const recorded = readState(options.out);
  if (recorded && (!sameSelection(recorded.selection, options.selection) || recorded.api !== options.api)) {
    throw new CohortError(
      ExitCodes.USAGE,
      `the output folder holds another cohort (${describeSelection(recorded.selection)}${recorded.api !== options.api ? ` from ${recorded.api}` : ''}): give the same arguments to resume it, or another folder`,
    );
  }
  if (recorded && !options.relist) return { state: recorded };
  const instances = await listCohort(client, options.api, options.selection, options.pageSize);
  const state: CohortState = { version: 1, api: options.api, selection: options.selection, listedAt: new Date(deps.now()).toISOString(), instances };
  if (!recorded) return { state };
  return { state, relisted: relist(recorded.instances, instances) };
}

/**
 * After a relist, the files of instances the catalog no longer lists are deleted (with their
 * journal lines): a cohort folder mirrors research copies, and an instance leaves the catalog
 * when its source was deleted or withdrawn, which the copies must follow.
 */
function dropRemoved(out: string, removed: readonly CohortInstance[], journal: Map<string, JournalEntry>): void {
  for (const i of removed) {
    const file = path.join(out, relativeFileOf(i));
    fs.rmSync(file, { force: true });
    fs.rmSync(`${file}.part`, { force: true });
    journal.delete(i.instance);
  }
  rewriteJournal(out, journal.values());
}

/** The first bytes of a file (up to META_HEAD_BYTES). */
function headOf(file: string): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(META_HEAD_BYTES);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return head.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

function sha256OfFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    fs.createReadStream(file)
      .on('data', (d) => hash.update(d))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/**
 * Whether the final file of `i` is complete: its journal line has its size; a file without a
 * line (a kill between rename and append) is checked again (PS3.10 head) and journaled. A file
 * that fails is removed, to be fetched again.
 */
async function alreadyComplete(out: string, i: CohortInstance, journal: Map<string, JournalEntry>): Promise<boolean> {
  const file = path.join(out, relativeFileOf(i));
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  const entry = journal.get(i.instance);
  if (entry && entry.size === size) return true;
  if (!entry) {
    try {
      checkPartTenHead(headOf(file), i.instance);
      const checked = { instance: i.instance, size, sha256: await sha256OfFile(file) };
      appendJournal(out, checked);
      journal.set(i.instance, checked);
      return true;
    } catch {
      // Not a whole copy of this instance: fetched again.
    }
  }
  fs.rmSync(file, { force: true });
  return false;
}

type FetchOutcome = { kind: 'fetched'; entry: JournalEntry } | { kind: 'missing' } | { kind: 'bad'; reason: string };

/** The transfer syntax a `Content-Type: application/dicom; transfer-syntax=...` names. */
function transferSyntaxOf(contentType: string): string | undefined {
  return /;\s*transfer-syntax="?([0-9.]+)"?/i.exec(contentType)?.[1];
}

/**
 * Fetches one instance into its `.part`, checks it and renames it. Throws CohortError
 * (NOT_AUTHORIZED, UNAVAILABLE, DISK) for what stops the whole download.
 */
async function fetchInstance(client: Client, options: Required<DownloadOptions>, i: CohortInstance, onBytes: (n: number) => void): Promise<FetchOutcome> {
  const url = `${options.api}/dicomweb/studies/${i.study}/series/${i.series}/instances/${i.instance}`;
  const what = `instance ${i.instance}`;
  const res = await client.get(url, 'application/dicom; transfer-syntax=*', what);
  if (res.status === 404) {
    await res.body?.cancel().catch(() => undefined);
    return { kind: 'missing' };
  }
  if (res.status !== 200) throw new CohortError(ExitCodes.FAILED, `${what}: ${res.status}: ${await errorMessageOf(res)}`);
  const contentType = res.headers.get('content-type') ?? '';
  if (!/^application\/dicom\s*(;|$)/i.test(contentType)) {
    await res.body?.cancel().catch(() => undefined);
    return { kind: 'bad', reason: `the answer is ${contentType || 'untyped'}, not application/dicom` };
  }
  const file = path.join(options.out, relativeFileOf(i));
  const part = `${file}.part`;
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let headBytes = 0;
  let size = 0;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // Opened for writing from the start: a partial file left by an earlier run is fetched again whole.
    const handle = await fs.promises.open(part, 'w');
    try {
      if (!res.body) throw new Error('no body');
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        await handle.write(chunk);
        hash.update(chunk);
        if (headBytes < META_HEAD_BYTES) {
          head.push(Buffer.from(chunk.subarray(0, META_HEAD_BYTES - headBytes)));
          headBytes += Math.min(chunk.length, META_HEAD_BYTES - headBytes);
        }
        size += chunk.length;
        onBytes(chunk.length);
      }
    } finally {
      await handle.close();
    }
  } catch (e) {
    if (isDiskError(e)) {
      fs.rmSync(part, { force: true });
      throw new CohortError(ExitCodes.DISK, `cannot write ${path.relative(options.out, part)}: ${(e as NodeJS.ErrnoException).code} (${(e as Error).message}); free space (or fix the folder) and run the same command again to resume`, { cause: e });
    }
    if (client.abort.signal.aborted) throw e;
    // The connection broke off mid-body: the part is fetched again.
    return { kind: 'bad', reason: `the answer broke off after ${size} bytes (${(e as Error).message})` };
  }
  const declared = res.headers.get('content-length');
  if (declared !== null && Number(declared) !== size) return { kind: 'bad', reason: `${size} bytes received, Content-Length says ${declared}` };
  const sha256 = hash.digest('hex');
  const digest = sha256OfDigestHeaders(res.headers);
  if (digest !== undefined && digest !== sha256) return { kind: 'bad', reason: 'the bytes do not have the sha-256 the answer declares' };
  try {
    checkPartTenHead(Buffer.concat(head), i.instance, transferSyntaxOf(contentType));
  } catch (e) {
    return { kind: 'bad', reason: (e as Error).message };
  }
  fs.renameSync(part, file);
  return { kind: 'fetched', entry: { instance: i.instance, size, sha256 } };
}

/**
 * Downloads (or resumes) the cohort. Resolves with the counts and the exit code (OK,
 * INCOMPLETE when instances answered 404, FAILED when files failed their check twice); throws
 * CohortError for what stops it (USAGE, NOT_AUTHORIZED, UNAVAILABLE, DISK, FAILED). What was
 * complete stays complete: a re-run with the same arguments continues.
 */
export async function downloadCohort(input: DownloadOptions, deps: DownloadDeps): Promise<DownloadResult> {
  const options: Required<DownloadOptions> = { relist: false, concurrency: 4, maxAttempts: 6, maxRetryWaitSeconds: 60, pageSize: 1000, ...input };
  try {
    fs.mkdirSync(options.out, { recursive: true });
  } catch (e) {
    throw new CohortError(isDiskError(e) ? ExitCodes.DISK : ExitCodes.FAILED, `cannot create the output folder: ${(e as Error).message}`, { cause: e });
  }
  const client = new Client(options, deps, new AbortController());
  const { state, relisted } = await cohortOf(client, options, deps);
  const journal = readJournal(options.out);
  try {
    writeState(options.out, state);
    if (relisted) {
      dropRemoved(options.out, relisted.removed, journal);
      deps.notice(`relisted: ${relisted.added.length} instance(s) added to the cohort, ${relisted.removed.length} removed (their files deleted)`);
    }
  } catch (e) {
    throw new CohortError(isDiskError(e) ? ExitCodes.DISK : ExitCodes.FAILED, `cannot write the cohort state: ${(e as Error).message}`, { cause: e });
  }

  if (state.instances.length === 0) deps.notice(`the selection matches no research instance (${describeSelection(state.selection)})`);
  const progress: DownloadProgress = { total: state.instances.length, present: 0, fetched: 0, missing: 0, failed: 0, bytes: 0, elapsedSeconds: 0, done: false };
  const todo: CohortInstance[] = [];
  for (const i of state.instances) {
    if (await alreadyComplete(options.out, i, journal)) progress.present++;
    else todo.push(i);
  }
  const started = deps.now();
  const report = () => deps.progress({ ...progress, elapsedSeconds: (deps.now() - started) / 1000 });
  report();

  let fatal: unknown;
  let next = 0;
  const worker = async () => {
    while (fatal === undefined && next < todo.length) {
      const i = todo[next++] as CohortInstance;
      try {
        let outcome = await fetchInstance(client, options, i, (n) => { progress.bytes += n; report(); });
        if (outcome.kind === 'bad') {
          deps.notice(`instance ${i.instance}: ${outcome.reason}; fetching it again`);
          outcome = await fetchInstance(client, options, i, (n) => { progress.bytes += n; report(); });
        }
        if (outcome.kind === 'fetched') {
          appendJournal(options.out, outcome.entry);
          journal.set(i.instance, outcome.entry);
          progress.fetched++;
        } else if (outcome.kind === 'missing') {
          deps.notice(`instance ${i.instance}: 404, no longer in the catalog (withdrawn since the listing)`);
          progress.missing++;
        } else {
          deps.notice(`instance ${i.instance}: ${outcome.reason}; left for a later run`);
          progress.failed++;
        }
        report();
      } catch (e) {
        if (fatal === undefined) {
          fatal = isDiskError(e) ? new CohortError(ExitCodes.DISK, `cannot write to the output folder: ${(e as Error).message}`, { cause: e }) : e;
          client.stop();
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, todo.length)) }, worker));
  if (fatal !== undefined) {
    // Parts being written when the download stopped are fetched again by the next run.
    throw isCohortError(fatal) ? fatal : new CohortError(ExitCodes.FAILED, (fatal as Error)?.message ?? String(fatal), { cause: fatal });
  }

  progress.done = true;
  report();
  if (progress.missing === 0 && progress.failed === 0) {
    fs.writeFileSync(path.join(options.out, CHECKSUMS_FILE), checksums(state.instances, journal));
  }
  const exitCode = progress.failed > 0 ? ExitCodes.FAILED : progress.missing > 0 ? ExitCodes.INCOMPLETE : ExitCodes.OK;
  return { ...progress, elapsedSeconds: (deps.now() - started) / 1000, exitCode, ...(relisted ? { relisted: { added: relisted.added.length, removed: relisted.removed.length } } : {}) };
}
