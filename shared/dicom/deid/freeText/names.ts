/**
 * Person names in free text: the source's own names (every PN value of the file) in the
 * spellings people write them in, and names the header never mentions (compromise's people(),
 * its name lexicon of some 4,000 first and last names plus its grammar).
 *
 * Spellings of a source name "Family^Given^Middle" (each of its alphabetic, ideographic and
 * phonetic groups):
 * - each component of 2 letters or more, alone, in any order and case ("Li^Na" as "Na Li");
 * - initials with a component ("J. Smith", "Smith, J.", "J.S.");
 * - one typing slip in a component of 5 letters or more ("Smyth", "Jonhson");
 * - CJK components (Han, kana, Hangul) inside a run without separators, whole components of
 *   2 characters or more, and the components joined in either order ("王小东", "小东王").
 * Placeholder words (TEST, PATIENT, ANONYMOUS, ...) and honorifics name nobody and are left.
 */
import nlp from 'compromise';

import type { TextSpan } from './detector';

const NOT_A_NAME = new Set([
  'DR', 'MR', 'MRS', 'MS', 'MISS', 'PROF', 'JR', 'SR', 'II', 'III', 'IV', 'MD', 'PHD',
  'TEST', 'PATIENT', 'PHANTOM', 'ANONYMOUS', 'ANONYMIZED', 'UNKNOWN', 'NAME', 'FIRST', 'LAST', 'MIDDLE',
]);
const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

/** The source's names, compiled once per file. */
export interface SourceNames {
  /** Latin-script (and other spaced scripts') components and initials forms, one expression; undefined when none. */
  spaced?: RegExp;
  /** Components of 5 letters or more, upper case, for the typing-slip search. */
  fuzzy: string[];
  /** CJK components and joined forms, longest first. */
  cjk: string[];
}

export const NO_SOURCE_NAMES: SourceNames = { fuzzy: [], cjk: [] };

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Compiles the spellings of the file's person names (PN values as written, "^" and "=" included). */
export function sourceNames(pnValues: readonly string[]): SourceNames {
  const spaced = new Set<string>();
  const initials = new Set<string>();
  const fuzzy = new Set<string>();
  const cjk = new Set<string>();
  for (const value of pnValues) {
    for (const v of value.split('\\')) {
      for (const group of v.split('=')) {
        const components = group.split('^').map((c) => c.trim()).filter((c) => c !== '');
        const words = components.flatMap((c) => c.split(/[\s,]+/)).filter((w) => w !== '' && !NOT_A_NAME.has(w.replace(/\.$/, '').toUpperCase()));
        if (words.length === 0) continue;
        if (CJK.test(group)) {
          const parts = words.filter((w) => CJK.test(w));
          for (const p of parts) if ([...p].length >= 2) cjk.add(p);
          if (parts.length >= 2) {
            cjk.add(parts.join(''));
            cjk.add([...parts].reverse().join(''));
            if (parts.length > 2) cjk.add(parts.slice(0, 2).join('')).add(`${parts[1]}${parts[0]}`);
          }
          continue;
        }
        for (const w of words) {
          const letters = w.replace(/\.$/, '');
          if ([...letters].length >= 2) spaced.add(letters);
          if ([...letters].length >= 5) fuzzy.add(letters.toUpperCase());
        }
        // Initials next to a component: "J. Smith", "J Smith", "Smith, J.", "Smith J", and "J.S.".
        const family = words[0];
        const given = words[1];
        // Only real words get initials forms: "S R" would make "SR" a name.
        if (family && given && [...family].length >= 2 && [...given].length >= 2) {
          const fi = escapeRegExp([...family][0] ?? '');
          const gi = escapeRegExp([...given][0] ?? '');
          const f = escapeRegExp(family);
          const g = escapeRegExp(given);
          initials.add(`${gi}\\.?\\s*${f}`).add(`${f},?\\s*${gi}\\.?(?![\\p{L}])`).add(`${fi}\\.?\\s*${g}`).add(`${g},?\\s*${fi}\\.?(?![\\p{L}])`);
          initials.add(`${gi}\\.\\s?${fi}\\.`).add(`${fi}\\.\\s?${gi}\\.`);
        }
      }
    }
  }
  const alternatives = [...initials, ...[...spaced].sort((a, b) => b.length - a.length).map(escapeRegExp)];
  return {
    spaced: alternatives.length === 0 ? undefined : new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives.join('|')})(?![\\p{L}\\p{N}])`, 'giu'),
    fuzzy: [...fuzzy],
    cjk: [...cjk].sort((a, b) => b.length - a.length),
  };
}

/** Optimal string alignment distance, up to `max` (more returns max + 1). */
function slipDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0]!.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]!.push(d);
    }
  }
  return rows[a.length]![b.length]!;
}

function findSourceNames(text: string, names: SourceNames, out: TextSpan[]): void {
  if (names.spaced) {
    names.spaced.lastIndex = 0;
    for (const m of text.matchAll(names.spaced)) out.push({ start: m.index ?? 0, end: (m.index ?? 0) + m[0].length, kind: 'name' });
  }
  if (names.fuzzy.length > 0) {
    for (const m of text.matchAll(/\p{L}{4,}/gu)) {
      const word = m[0].toUpperCase();
      if (names.fuzzy.some((n) => slipDistance(word, n, n.length >= 8 ? 2 : 1) <= (n.length >= 8 ? 2 : 1))) {
        out.push({ start: m.index ?? 0, end: (m.index ?? 0) + m[0].length, kind: 'name' });
      }
    }
  }
  if (names.cjk.length > 0 && CJK.test(text)) {
    for (const n of names.cjk) {
      for (let at = text.indexOf(n); at >= 0; at = text.indexOf(n, at + n.length)) out.push({ start: at, end: at + n.length, kind: 'name' });
    }
  }
}

/** Tags of compromise's lexicon that make a word worth the full parse (a name or a title). */
const NAME_TAGS = /FirstName|MaleName|FemaleName|LastName|Honorific|Person/;
/** Honorifics that introduce a name; MR and MS are also a modality and a diagnosis. */
const TITLES = new Set(['dr', 'prof', 'mrs', 'miss', 'mme', 'herr', 'frau']);
let lexicon: Record<string, unknown> | undefined;

function mayNameSomeone(text: string): boolean {
  lexicon ??= (nlp.model() as { one: { lexicon: Record<string, unknown> } }).one.lexicon;
  for (const m of text.matchAll(/\p{L}{2,}/gu)) {
    const tags = lexicon[m[0].toLowerCase()];
    if (tags !== undefined && NAME_TAGS.test(String(tags))) return true;
  }
  return false;
}

interface CompromiseTerm {
  text: string;
  tags?: string[];
  offset?: { start: number; length: number };
}

/**
 * Names compromise finds: a span counts when one of its words is a known first or last name,
 * or when a title (Dr, Prof, Mrs) introduces it; the title itself stays. The full parse costs
 * about a millisecond, so it runs only on text holding a word of compromise's name lexicon.
 */
function findOtherNames(text: string, out: TextSpan[]): void {
  if (!mayNameSomeone(text)) return;
  const people = nlp(text).people().json({ offset: true, terms: { offset: true } }) as { terms: CompromiseTerm[] }[];
  for (const person of people) {
    const terms = person.terms.filter((t) => t.offset !== undefined);
    const first = terms[0];
    const titled = first !== undefined && TITLES.has(first.text.toLowerCase().replace(/\.$/, '')) && terms.length > 1;
    const named = terms.some((t) => (t.tags ?? []).some((tag) => tag === 'FirstName' || tag === 'LastName'));
    if (!titled && !named) continue;
    const words = terms.filter((t) => !(t.tags ?? []).includes('Honorific'));
    // A lone short capitalised word is a code more often than a name ("URI", "MAX", "AL").
    if (!titled && words.length === 1 && /^\p{Lu}{1,4}$/u.test(words[0]?.text ?? '')) continue;
    const a = words[0]?.offset;
    const b = words[words.length - 1]?.offset;
    if (a && b) out.push({ start: a.start, end: b.start + b.length, kind: 'name' });
  }
}

export function findNames(text: string, names: SourceNames): TextSpan[] {
  const spans: TextSpan[] = [];
  if (!/\p{L}/u.test(text)) return spans;
  findSourceNames(text, names, spans);
  findOtherNames(text, spans);
  return spans;
}
