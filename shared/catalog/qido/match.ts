/**
 * Deciding in code what the catalog's SQL cannot: wild cards inside a value, case-insensitive
 * person names, multi-valued attributes.
 *
 * Wild card matching never builds a regular expression from the request: a backtracking
 * engine takes time exponential in the number of `*` (`*?*?*?*?*?*?*?*?*#` against 64
 * characters took 17 s and held up the whole host). `matchesWildcard` makes at most
 * (pattern length + 1) x (value length + 1) steps, and the parser bounds the pattern length.
 */
import { lookupTag } from '../../dicom/dictionary';
import { FIELD_OF_TAG, type QidoDocument, type QidoMatcher, type QidoMatchKey, T } from './model';

/**
 * Whether `value` matches `pattern`, where `*` stands for any run of characters (none too)
 * and `?` for exactly one character (PS3.4 C.2.2.2.4). Characters are code points, so a `?`
 * also stands for a character outside the Basic Multilingual Plane. `ignoreCase` compares the
 * upper-case forms (person names). Linear in the value's length for a given pattern.
 */
export function matchesWildcard(pattern: string, value: string, options: { ignoreCase?: boolean } = {}): boolean {
  const p = Array.from(options.ignoreCase ? pattern.toUpperCase() : pattern);
  const v = Array.from(options.ignoreCase ? value.toUpperCase() : value);
  let pi = 0;
  let vi = 0;
  // The most recent `*` and where in the value its run started. Only the most recent one is
  // ever widened: widening an earlier one can only lead to a state already tried, which is
  // why one pass with this single resume point is enough (no backtracking over earlier stars).
  let star = -1;
  let resume = 0;
  while (vi < v.length) {
    const pc = p[pi];
    if (pc === '*') {
      star = pi++;
      resume = vi;
    } else if (pc !== undefined && (pc === '?' || pc === v[vi])) {
      pi++;
      vi++;
    } else if (star >= 0) {
      // The last `*` takes one more character, and the rest of the pattern starts over after it.
      pi = star + 1;
      vi = ++resume;
    } else {
      return false;
    }
  }
  while (p[pi] === '*') pi++;
  return pi === p.length;
}

/**
 * What a wild card pattern says about literal text, as conditions the database can check:
 * the value starts with `prefix`, ends with `suffix` and contains each of `inner`. These are
 * necessary; `exact` says whether they are also sufficient (`AB*`, `*AB`, `*AB*`).
 */
export interface WildcardLiterals {
  prefix: string;
  suffix: string;
  inner: string[];
  exact: boolean;
}

export function wildcardLiterals(pattern: string): WildcardLiterals {
  // Runs of literal characters, split at every wild card; '' marks where one was.
  const runs = pattern.split(/[*?]/);
  const prefix = runs[0] ?? '';
  const suffix = runs.length > 1 ? (runs[runs.length - 1] ?? '') : '';
  const inner = [...new Set(runs.slice(1, -1).filter((r) => r !== ''))];
  const collapsed = pattern.replace(/\*+/g, '*');
  const literal = (text: string) => text !== '' && !/[*?]/.test(text);
  const exact =
    (collapsed.endsWith('*') && collapsed.indexOf('*') === collapsed.length - 1 && literal(collapsed.slice(0, -1))) ||
    (collapsed.startsWith('*') && collapsed.lastIndexOf('*') === 0 && literal(collapsed.slice(1))) ||
    (collapsed.length > 2 && collapsed.startsWith('*') && collapsed.endsWith('*') && literal(collapsed.slice(1, -1)));
  return { prefix, suffix, inner, exact };
}

/** Every value the document holds for the attribute, as matching sees it. */
function valuesOf(doc: QidoDocument, key: QidoMatchKey): unknown[] {
  if (key.tag === T.ModalitiesInStudy && doc.modalitiesInStudy) return doc.modalitiesInStudy;
  const field = FIELD_OF_TAG[key.tag];
  if (field) {
    const v = (doc as unknown as Record<string, unknown>)[field];
    if (v !== undefined) return [v];
  }
  const values = doc.dicom[key.tag]?.Value ?? [];
  if (key.vr !== 'PN') return values;
  return values.map((v) => (v && typeof v === 'object' ? (v as { Alphabetic?: unknown }).Alphabetic : v));
}

function matcherAccepts(key: QidoMatchKey, m: QidoMatcher, value: unknown): boolean {
  const pn = key.vr === 'PN';
  switch (m.kind) {
    case 'universal':
      return true;
    case 'single':
      if (typeof m.value === 'number') return value === m.value || value === String(m.value);
      if (typeof value !== 'string') return false;
      return pn ? value.toUpperCase() === m.value.toUpperCase() : value === m.value;
    case 'uidList':
      return typeof value === 'string' && m.uids.includes(value);
    case 'range':
      return typeof value === 'string' && (m.from === undefined || value >= m.from) && (m.to === undefined || value <= m.to);
    case 'wildcard':
      return typeof value === 'string' && matchesWildcard(m.pattern, value, { ignoreCase: pn });
  }
}

/** Whether a document satisfies one key: any of its matchers accepts any of its values. */
export function keyMatches(doc: QidoDocument, key: QidoMatchKey): boolean {
  if (key.matchers.some((m) => m.kind === 'universal')) return true;
  const values = valuesOf(doc, key);
  return key.matchers.some((m) => values.some((v) => matcherAccepts(key, m, v)));
}

/** Whether the attribute may hold several values (its VM is not 1): the SQL then sees only the first. */
export function isMultiValued(tag: string): boolean {
  const entry = lookupTag(parseInt(tag, 16));
  return entry !== undefined && entry.vm !== '1';
}
