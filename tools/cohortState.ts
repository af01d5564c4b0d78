/**
 * What a cohort download keeps in its output folder so that a re-run resumes it (issue 16):
 *
 * - `.vna-research-cohort.json`, the state: the service, the selection (filters and study UIDs)
 *   and the cohort's listing as QIDO-RS answered it on the first run. A resume downloads that
 *   listing, not the catalog's answer of the day, so an interrupted download ends with the
 *   cohort it started (instances added since are not fetched; instances withdrawn since answer
 *   404 and are reported missing). `--relist` asks the catalog again (see relist below).
 *   Written whole to a temporary name and renamed, so a kill leaves the old state or the new.
 * - `.vna-research-cohort.done`, the journal: one JSON line per verified file (its SOP Instance
 *   UID, size and SHA-256), appended after the file got its final name. A torn last line (a
 *   kill mid-append) is ignored; a final file without a line is checked again before it counts.
 *
 * Files are `<study>/<series>/<instance>.dcm` (research UIDs, safe as names), written as
 * `<instance>.dcm.part` and renamed once checked: a final name always holds a whole, checked copy.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const STATE_FILE = '.vna-research-cohort.json';
export const JOURNAL_FILE = '.vna-research-cohort.done';
export const CHECKSUMS_FILE = 'SHA256SUMS';

/** One research instance of the cohort, by its research UIDs. */
export interface CohortInstance {
  study: string;
  series: string;
  instance: string;
}

/** What selects the cohort, in a canonical order (so that the same arguments compare equal). */
export interface CohortSelection {
  /** QIDO-RS keys and values, sorted. */
  filters: [string, string][];
  /** Explicit study UIDs, sorted, without duplicates. */
  studies: string[];
}

export interface CohortState {
  version: 1;
  /** The API root the cohort was listed from. */
  api: string;
  selection: CohortSelection;
  listedAt: string;
  instances: CohortInstance[];
}

/** One verified file. */
export interface JournalEntry {
  instance: string;
  size: number;
  sha256: string;
}

/** The selection in canonical form: filters sorted by key then value, study UIDs sorted and unique. Pure. */
export function canonicalSelection(filters: Iterable<[string, string]>, studies: Iterable<string>): CohortSelection {
  return {
    filters: [...filters].sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0)),
    studies: [...new Set(studies)].sort(),
  };
}

export function sameSelection(a: CohortSelection, b: CohortSelection): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A selection as a user would type it again (for messages). */
export function describeSelection(s: CohortSelection): string {
  const parts = [...s.filters.map(([k, v]) => `${k}=${v}`), ...s.studies.map((u) => `--study ${u}`)];
  return parts.length > 0 ? parts.join(' ') : '(nothing)';
}

/** Where an instance's file goes, relative to the output folder. */
export function relativeFileOf(i: CohortInstance): string {
  return path.join(i.study, i.series, `${i.instance}.dcm`);
}

/** PS3.5 9.1 UIDs only: a listing that names anything else is refused, since its UIDs become paths. */
const UID = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
export function isUid(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 64 && UID.test(value);
}

/** The state in `dir`, undefined when there is none. Throws when the file is not a state this tool wrote. */
export function readState(dir: string): CohortState | undefined {
  const file = path.join(dir, STATE_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const state = JSON.parse(text) as CohortState;
  const valid =
    state?.version === 1 &&
    typeof state.api === 'string' &&
    Array.isArray(state.selection?.filters) &&
    Array.isArray(state.selection?.studies) &&
    Array.isArray(state.instances) &&
    state.instances.every((i) => isUid(i.study) && isUid(i.series) && isUid(i.instance));
  if (!valid) throw new Error(`${STATE_FILE} in the output folder is not a cohort state this tool wrote`);
  return state;
}

/** Writes the state whole: a temporary file renamed over the old one (a kill leaves one or the other). */
export function writeState(dir: string, state: CohortState): void {
  const file = path.join(dir, STATE_FILE);
  const temporary = `${file}.tmp`;
  fs.writeFileSync(temporary, `${JSON.stringify(state)}\n`);
  fs.renameSync(temporary, file);
}

/** The journal's entries by SOP Instance UID (the last line of an instance wins); lines that do not parse are ignored. */
export function readJournal(dir: string): Map<string, JournalEntry> {
  const entries = new Map<string, JournalEntry>();
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, JOURNAL_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return entries;
    throw e;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line) as JournalEntry;
      if (isUid(e.instance) && Number.isSafeInteger(e.size) && /^[0-9a-f]{64}$/.test(e.sha256)) entries.set(e.instance, e);
    } catch {
      // A line torn by a kill mid-append: its file is checked again.
    }
  }
  return entries;
}

/** Appends one entry. A line torn by a kill is ignored on reading, and the line after it starts afresh. */
export function appendJournal(dir: string, entry: JournalEntry): void {
  fs.appendFileSync(path.join(dir, JOURNAL_FILE), `\n${JSON.stringify({ instance: entry.instance, size: entry.size, sha256: entry.sha256 })}\n`);
}

/** Rewrites the journal with only `entries` (after a relist dropped instances). */
export function rewriteJournal(dir: string, entries: Iterable<JournalEntry>): void {
  const file = path.join(dir, JOURNAL_FILE);
  const temporary = `${file}.tmp`;
  fs.writeFileSync(temporary, [...entries].map((e) => `${JSON.stringify(e)}\n`).join(''));
  fs.renameSync(temporary, file);
}

/** What a relist changes: the instances the catalog no longer lists, and those it lists anew. Pure. */
export function relist(previous: readonly CohortInstance[], current: readonly CohortInstance[]): { added: CohortInstance[]; removed: CohortInstance[] } {
  const before = new Set(previous.map((i) => i.instance));
  const now = new Set(current.map((i) => i.instance));
  return { added: current.filter((i) => !before.has(i.instance)), removed: previous.filter((i) => !now.has(i.instance)) };
}

/** `sha256sum -c` lines of the cohort's files, in listing order. Pure. */
export function checksums(instances: readonly CohortInstance[], journal: ReadonlyMap<string, JournalEntry>): string {
  return instances
    .map((i) => {
      const e = journal.get(i.instance);
      return e ? `${e.sha256}  ${relativeFileOf(i).split(path.sep).join('/')}\n` : '';
    })
    .join('');
}
