#!/usr/bin/env node
/**
 * `npx vna-research` (issue 16): the research catalog from a terminal, through the same
 * endpoints as every other client (QIDO-RS, GET /api/statistics) with a Research.Read token.
 *
 *   vna-research query [studies|series|instances] [Key=Value ...] [--limit N]
 *   vna-research statistics [Key=Value ...] [--json]
 *
 * Options: --api <root> (default VNA_API, else http://127.0.0.1:7071/api); --token <bearer>
 * (default VNA_TOKEN, else the `research` token of .local-data/tokens.json, as npm start writes it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

interface Parsed {
  command: string;
  positional: string[];
  filters: URLSearchParams;
  options: Record<string, string | true>;
}

const USAGE = `usage:
  vna-research query [studies|series|instances] [Key=Value ...] [--limit N]
  vna-research statistics [Key=Value ...] [--json]
options: --api <root>  --token <bearer token>`;

export function parseArgs(argv: string[]): Parsed {
  const [command = '', ...rest] = argv;
  const positional: string[] = [];
  const filters = new URLSearchParams();
  const options: Record<string, string | true> = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    if (arg.startsWith('--')) {
      const name = arg.slice(2);
      const next = rest[i + 1];
      if (name === 'json') options[name] = true;
      else if (next === undefined) throw new Error(`--${name} needs a value`);
      else {
        options[name] = next;
        i++;
      }
    } else if (arg.includes('=')) {
      const at = arg.indexOf('=');
      filters.append(arg.slice(0, at), arg.slice(at + 1));
    } else {
      positional.push(arg);
    }
  }
  return { command, positional, filters, options };
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

export async function main(argv: string[]): Promise<number> {
  let p: Parsed;
  try {
    p = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const api = (typeof p.options.api === 'string' ? p.options.api : process.env.VNA_API ?? 'http://127.0.0.1:7071/api').replace(/\/+$/, '');
  try {
    if (p.command === 'query') process.stdout.write(`${await query(p, api, tokenOf(p.options))}\n`);
    else if (p.command === 'statistics') process.stdout.write(`${await statistics(p, api, tokenOf(p.options))}\n`);
    else {
      process.stderr.write(`${USAGE}\n`);
      return 2;
    }
    return 0;
  } catch (e) {
    process.stderr.write(`vna-research: ${(e as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code), () => (process.exitCode = 1));
}
