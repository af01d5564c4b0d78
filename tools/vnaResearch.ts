#!/usr/bin/env node
/**
 * `npx vna-research` (issue 16): the research catalog from a terminal, through the same
 * endpoints as every other client (QIDO-RS, GET /api/statistics) with a Research.Read token.
 *
 *   vna-research query [studies|series|instances] [Key=Value ...] [--limit N]
 *   vna-research statistics [Key=Value ...] [--json]
 *   vna-research download <folder> [Key=Value ...] [--study UID ...] [--studies-file F] [--concurrency N] [--relist]
 *
 * Options: --api <root> (default VNA_API, else http://127.0.0.1:7071/api); --token <bearer>
 * (default VNA_TOKEN, else the `research` token of .local-data/tokens.json, as npm start writes it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CohortError, defaultDeps, downloadCohort, ExitCodes } from './cohortDownload';
import { canonicalSelection, isUid } from './cohortState';
import { bytes, renderDownloadProgress } from './downloadProgress';
import { lineWriter } from './progressBar';

interface Parsed {
  command: string;
  positional: string[];
  filters: URLSearchParams;
  options: Record<string, string | true>;
  /** `--study` values, in order (the option may be repeated). */
  studies: string[];
}

/** Options that take no value. */
const FLAGS = new Set(['json', 'relist', 'help']);

const USAGE = `usage:
  vna-research query [studies|series|instances] [Key=Value ...] [--limit N]
  vna-research statistics [Key=Value ...] [--json]
  vna-research download <folder> [Key=Value ...] [--study UID ...] [--studies-file FILE]
                        [--concurrency N] [--relist]
options: --api <root>  --token <bearer token>  --help`;

const HELP = `${USAGE}

query        QIDO-RS over the research catalog, printed as a table.
statistics   GET /api/statistics, printed as tables (--json: as answered).
download     The research copies of a cohort into <folder>/<study>/<series>/<instance>.dcm
             (research UIDs), selected by QIDO-RS keys (as query takes them) and/or study UIDs
             (--study, repeatable; --studies-file: one UID a line). Each file is written as
             .part, checked (transfer complete, PS3.10 meta naming the instance asked for,
             sha-256 when the service declares one) and renamed; SHA256SUMS is written when all
             are there. --concurrency: files at once (default 4, at most 32).
             Resume: run the same command again. The cohort listed by the first run is kept in
             <folder>/.vna-research-cohort.json and a resume fetches that listing: complete
             files are skipped, partial ones fetched again, instances added to the catalog since
             are not fetched, instances withdrawn since are reported missing (exit 3).
             --relist asks the catalog again: new instances are fetched, and the files of
             instances it no longer lists are deleted. 503/429 are retried (Retry-After, else
             1, 2, 4... s, at most 6 attempts).
             exit codes: 0 every listed instance is in the folder, checked
                         1 other failure (an unexpected answer; a file failing its check twice)
                         2 bad arguments, or the folder holds another cohort
                         3 done, but instances of the listing answered 404 (withdrawn)
                         4 401/403: the token is missing, expired or lacks Research.Read
                         5 the folder cannot be written (disk full, quota, permissions)
                         6 the service stayed unavailable (503) through the retries
--api      API root (default VNA_API, else http://127.0.0.1:7071/api)
--token    bearer token with Research.Read (default VNA_TOKEN, else the research token of
           .local-data/tokens.json that npm start writes)`;

export function parseArgs(argv: string[]): Parsed {
  const [command = '', ...rest] = argv;
  const positional: string[] = [];
  const filters = new URLSearchParams();
  const options: Record<string, string | true> = {};
  const studies: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    if (arg.startsWith('--')) {
      const name = arg.slice(2);
      const next = rest[i + 1];
      if (FLAGS.has(name)) options[name] = true;
      else if (next === undefined) throw new Error(`--${name} needs a value`);
      else {
        if (name === 'study') studies.push(next);
        else options[name] = next;
        i++;
      }
    } else if (arg.includes('=')) {
      const at = arg.indexOf('=');
      filters.append(arg.slice(0, at), arg.slice(at + 1));
    } else {
      positional.push(arg);
    }
  }
  return { command, positional, filters, options, studies };
}

function tokenOf(options: Parsed['options']): string {
  if (typeof options.token === 'string') return options.token;
  if (process.env.VNA_TOKEN) return process.env.VNA_TOKEN;
  const file = path.join(process.cwd(), '.local-data', 'tokens.json');
  if (fs.existsSync(file)) {
    const tokens = JSON.parse(fs.readFileSync(file, 'utf8')) as { research?: string };
    if (tokens.research) return tokens.research;
  }
  throw new Error('no token: pass --token, set VNA_TOKEN, or run from the project folder after npm start (.local-data/tokens.json)');
}

async function getJson(url: string, token: string): Promise<unknown> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json, application/dicom+json' } });
  const text = await res.text();
  const body: unknown = text ? JSON.parse(text) : [];
  if (!res.ok) {
    const message = (body as { error?: { message?: string } }).error?.message ?? text;
    throw new Error(`${res.status}: ${message}`);
  }
  return body;
}

/** A plain text table, columns padded to their widest cell; numbers right-aligned. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? c.toLocaleString('en-US') : c)));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const line = (r: string[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

const COLUMNS: Record<string, [string, string][]> = {
  studies: [['StudyInstanceUID', '0020000D'], ['StudyDate', '00080020'], ['Modalities', '00080061'], ['Description', '00081030'], ['Series', '00201206'], ['Instances', '00201208']],
  series: [['StudyInstanceUID', '0020000D'], ['SeriesInstanceUID', '0020000E'], ['Modality', '00080060'], ['Number', '00200011'], ['Description', '0008103E'], ['Instances', '00201209']],
  instances: [['SeriesInstanceUID', '0020000E'], ['SOPInstanceUID', '00080018'], ['SOPClassUID', '00080016'], ['Number', '00200013']],
};

function valueOf(item: Record<string, { Value?: unknown[] }>, tag: string): string | number {
  const values = item[tag]?.Value ?? [];
  if (values.length === 1 && typeof values[0] === 'number') return values[0];
  return values.map((v) => (typeof v === 'object' && v !== null ? String((v as { Alphabetic?: string }).Alphabetic ?? '') : String(v))).join('\\');
}

async function query(p: Parsed, api: string, token: string): Promise<string> {
  const level = p.positional[0] ?? 'studies';
  const columns = COLUMNS[level];
  if (!columns) throw new Error(`query: the level must be studies, series or instances, not "${level}"`);
  const q = new URLSearchParams(p.filters);
  if (typeof p.options.limit === 'string') q.set('limit', p.options.limit);
  const extra = columns.map(([, tag]) => tag).join(',');
  q.set('includefield', extra);
  const items = (await getJson(`${api}/dicomweb/${level}?${q.toString()}`, token)) as Record<string, { Value?: unknown[] }>[];
  return `${table(columns.map(([name]) => name), items.map((item) => columns.map(([, tag]) => valueOf(item, tag))))}\n${items.length} ${level}`;
}

interface StatisticsBody {
  minCellSize: number;
  totals?: { studies: number; series: number; instances: number; bytes: number };
  breakdowns: Record<string, { cells: { value: string; studies: number; series: number; instances: number; bytes: number }[]; suppressedCells: number }>;
}

async function statistics(p: Parsed, api: string, token: string): Promise<string> {
  const body = (await getJson(`${api}/statistics?${p.filters.toString()}`, token)) as StatisticsBody;
  if (p.options.json) return JSON.stringify(body, null, 2);
  const out: string[] = [];
  const t = body.totals;
  out.push(t ? table(['studies', 'series', 'instances', 'bytes'], [[t.studies, t.series, t.instances, t.bytes]]) : `totals withheld: fewer than ${body.minCellSize} studies match`);
  for (const [name, b] of Object.entries(body.breakdowns)) {
    out.push('', `${name}${b.suppressedCells ? ` (${b.suppressedCells} value(s) withheld: fewer than ${body.minCellSize} studies)` : ''}`);
    out.push(table(['value', 'studies', 'series', 'instances', 'bytes'], b.cells.map((c) => [c.value || '(not recorded)', c.studies, c.series, c.instances, c.bytes])));
  }
  return out.join('\n');
}

/** A whole number option within [min, max], or `fallback` when absent. Throws a usage error naming it. */
function intOption(p: Parsed, name: string, fallback: number, min: number, max: number): number {
  const raw = p.options[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new CohortError(ExitCodes.USAGE, `--${name} must be a whole number from ${min} to ${max}`);
  return n;
}

/** The study UIDs of --study and --studies-file (one a line; blank lines and # comments skipped). */
function studiesOf(p: Parsed): string[] {
  const studies = [...p.studies];
  if (typeof p.options['studies-file'] === 'string') {
    const text = fs.readFileSync(p.options['studies-file'], 'utf8');
    studies.push(...text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
  }
  const bad = studies.filter((u) => !isUid(u));
  if (bad.length > 0) throw new CohortError(ExitCodes.USAGE, `${bad.length} study UID(s) are not valid UIDs (PS3.5 9.1), the first: "${bad[0]}"`);
  return studies;
}

async function download(p: Parsed, api: string): Promise<number> {
  const out = p.positional[0];
  if (!out || p.positional.length > 1) throw new CohortError(ExitCodes.USAGE, 'download: name one output folder');
  const selection = canonicalSelection(p.filters.entries(), studiesOf(p));
  const concurrency = intOption(p, 'concurrency', 4, 1, 32);
  const token = tokenOf(p.options);
  const bar = lineWriter(process.stderr, renderDownloadProgress);
  const tty = process.stderr.isTTY === true;
  const result = await downloadCohort(
    { api, token, out: path.resolve(out), selection, concurrency, relist: p.options.relist === true },
    {
      ...defaultDeps(),
      // On a terminal the bar's line is cleared first, so the notice does not end up inside it.
      notice: (line) => process.stderr.write(`${tty ? '\r\x1b[2K' : ''}vna-research: ${line}\n`),
      progress: (progress) => (progress.done ? bar.finish(progress) : bar.update(progress)),
    },
  );
  const tally = [`${result.fetched} fetched`, `${result.present} already here`, ...(result.missing ? [`${result.missing} missing (404)`] : []), ...(result.failed ? [`${result.failed} failed`] : [])].join(', ');
  process.stdout.write(`download: ${tally}, of ${result.total} instances; ${bytes(result.bytes)} in ${result.elapsedSeconds.toFixed(1)} s into ${out}\n`);
  if (result.missing) process.stdout.write('download: instances of the listing are no longer in the catalog; --relist drops them from the cohort\n');
  return result.exitCode;
}

export async function main(argv: string[]): Promise<number> {
  let p: Parsed;
  try {
    p = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const api = (typeof p.options.api === 'string' ? p.options.api : process.env.VNA_API ?? 'http://127.0.0.1:7071/api').replace(/\/+$/, '');
  if (p.options.help === true || p.command === 'help' || p.command === '--help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  try {
    if (p.command === 'download') return await download(p, api);
    if (p.command === 'query') process.stdout.write(`${await query(p, api, tokenOf(p.options))}\n`);
    else if (p.command === 'statistics') process.stdout.write(`${await statistics(p, api, tokenOf(p.options))}\n`);
    else {
      process.stderr.write(`${USAGE}\n`);
      return 2;
    }
    return 0;
  } catch (e) {
    process.stderr.write(`vna-research: ${(e as Error).message}\n`);
    if (e instanceof CohortError && e.exitCode === ExitCodes.USAGE) process.stderr.write(`${USAGE}\n`);
    return e instanceof CohortError ? e.exitCode : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code), () => (process.exitCode = 1));
}
