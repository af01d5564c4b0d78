/**
 * QIDO-RS query parsing: a request becomes one QidoQuery, and every 400 is raised here
 * (PS3.18 10.6.1: unknown or unsearchable attributes, malformed values, ranges, limit, offset,
 * and wild card patterns beyond the limits that keep matching cheap).
 */
import { lookupTag, parseTagOrKeyword, tagToHex } from '../../dicom/dictionary';
import { ErrorCodes, PipelineError } from '../../errors';
import {
  levelsInScope,
  QIDO_DEFAULT_LIMIT,
  QIDO_DEFAULT_LIMITS,
  QIDO_MAX_LIMIT,
  type QidoLevel,
  type QidoLimits,
  type QidoMatcher,
  type QidoMatchKey,
  type QidoQuery,
  SEARCHABLE,
} from './model';

/** Cosmos DB caps the parameters of one query; a longer UID list is a client error, not a 500. */
const MAX_LIST_VALUES = 500;

const RESERVED = new Set(['limit', 'offset', 'includefield', 'fuzzymatching', 'emptyvaluematching', 'multiplevaluematching']);

const NUMERIC_VRS = new Set(['IS', 'DS', 'US', 'SS', 'UL', 'SL', 'FL', 'FD', 'UV', 'SV']);
const WILDCARD_VRS = new Set(['AE', 'CS', 'LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UR', 'UT']);
const RANGE_VRS = new Set(['DA', 'TM']);

function invalid(message: string): PipelineError {
  return new PipelineError(ErrorCodes.QUERY_INVALID, message);
}

function resolveAttribute(text: string, purpose: 'match' | 'includefield'): { tag: string; keyword: string; vr: string } {
  if (text.includes('.')) {
    if (purpose === 'match') throw invalid(`Sequence matching is not supported (query key ${text})`);
    // Returning a nested attribute means returning its top-level sequence.
    return resolveAttribute(text.slice(0, text.indexOf('.')), purpose);
  }
  const tagNumber = parseTagOrKeyword(text);
  if (tagNumber === undefined) {
    throw invalid(`${text} is not a DICOM attribute keyword or tag (${purpose === 'match' ? 'query key' : 'includefield'})`);
  }
  const entry = lookupTag(tagNumber);
  return { tag: tagToHex(tagNumber), keyword: entry?.keyword ?? tagToHex(tagNumber), vr: entry?.vr ?? 'UN' };
}

const UID_RE = /^[0-9]+(\.[0-9]+)*$/;
const DA_RE = /^\d{8}$/;
const TM_RE = /^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$/;

function checkDate(value: string, keyword: string): void {
  if (!DA_RE.test(value)) throw invalid(`${keyword} needs a date YYYYMMDD or a range of them (YYYYMMDD-YYYYMMDD, -YYYYMMDD, YYYYMMDD-)`);
  const y = Number(value.slice(0, 4));
  const m = Number(value.slice(4, 6));
  const d = Number(value.slice(6, 8));
  const date = new Date(Date.UTC(y, m - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    throw invalid(`${keyword} has a date that does not exist`);
  }
}

function checkTime(value: string, keyword: string): void {
  if (!TM_RE.test(value)) throw invalid(`${keyword} needs a time HH[MM[SS[.FFFFFF]]] or a range of them`);
}

/**
 * The upper end of a time range covers the whole period its precision names: "-10" takes
 * in 10:59:59.999999, as a partial value is a period, not an instant.
 */
function timeUpperBound(value: string): string {
  const [whole = '', fraction] = value.split('.');
  if (fraction !== undefined) return `${whole}.${fraction.padEnd(6, '9')}`;
  return `${whole}${'595959'.slice(whole.length)}.999999`;
}

type PatternLimits = Pick<QidoLimits, 'maxPatternLength' | 'maxWildcards'>;

/** What the wild card patterns of one request have used so far of their limits. */
interface PatternBudget {
  limits: PatternLimits;
  characters: number;
  wildcards: number;
}

/**
 * Counts a wild card pattern against the request's limits. Matching one value costs at most
 * the pattern's length times the value's, so the limits, over all patterns of a request
 * together, keep the cost per document small whatever the request.
 */
function checkPattern(pattern: string, keyword: string, budget: PatternBudget): void {
  budget.characters += pattern.length;
  for (const ch of pattern) if (ch === '*' || ch === '?') budget.wildcards++;
  if (budget.characters > budget.limits.maxPatternLength) {
    throw invalid(`${keyword} has a wild card pattern that makes the patterns of this query longer than ${budget.limits.maxPatternLength} characters`);
  }
  if (budget.wildcards > budget.limits.maxWildcards) {
    throw invalid(`${keyword} has a wild card pattern that brings this query over ${budget.limits.maxWildcards} wild cards (* and ?)`);
  }
}

function parseMatcher(raw: string, key: { keyword: string; vr: string }, budget: PatternBudget): QidoMatcher[] {
  const { keyword, vr } = key;
  if (raw === '') return [{ kind: 'universal' }];
  if (vr === 'SQ') throw invalid(`Sequence matching is not supported (query key ${keyword})`);
  const hasWildcard = /[*?]/.test(raw);

  if (vr === 'UI') {
    if (hasWildcard) throw invalid(`${keyword} is a UID: wild cards are not allowed, only a UID or a comma-separated list of UIDs`);
    const uids = raw.split(/[,\\]/);
    if (uids.length > MAX_LIST_VALUES) throw invalid(`${keyword} lists more than ${MAX_LIST_VALUES} UIDs`);
    for (const uid of uids) {
      if (uid.length > 64 || !UID_RE.test(uid)) throw invalid(`${keyword} holds a value that is not a UID`);
    }
    return [uids.length === 1 ? { kind: 'single', value: uids[0] as string } : { kind: 'uidList', uids }];
  }

  if (RANGE_VRS.has(vr)) {
    if (hasWildcard) {
      if (raw === '*') return [{ kind: 'universal' }];
      throw invalid(`${keyword} is a ${vr === 'DA' ? 'date' : 'time'}: wild cards are not allowed, use a range`);
    }
    const check = vr === 'DA' ? checkDate : checkTime;
    const dash = raw.indexOf('-');
    if (dash < 0) {
      check(raw, keyword);
      return [{ kind: 'single', value: raw }];
    }
    const from = raw.slice(0, dash);
    const to = raw.slice(dash + 1);
    if (from === '' && to === '') throw invalid(`${keyword} has a range with neither start nor end`);
    if (from !== '') check(from, keyword);
    if (to !== '') check(to, keyword);
    const upper = to === '' ? undefined : vr === 'TM' ? timeUpperBound(to) : to;
    if (from !== '' && upper !== undefined && from > upper) throw invalid(`${keyword} has a range whose start is after its end`);
    return [{ kind: 'range', ...(from !== '' ? { from } : {}), ...(upper !== undefined ? { to: upper } : {}) }];
  }

  if (NUMERIC_VRS.has(vr)) {
    if (hasWildcard) {
      if (raw === '*') return [{ kind: 'universal' }];
      throw invalid(`${keyword} is numeric: wild cards are not allowed`);
    }
    const values = raw.split(',');
    if (values.length > MAX_LIST_VALUES) throw invalid(`${keyword} lists more than ${MAX_LIST_VALUES} values`);
    return values.map((v) => {
      const n = Number(v.trim());
      if (v.trim() === '' || !Number.isFinite(n)) throw invalid(`${keyword} needs a number`);
      return { kind: 'single', value: n };
    });
  }

  if (!WILDCARD_VRS.has(vr)) throw invalid(`${keyword} (VR ${vr}) cannot be matched`);
  // Code strings never hold commas, so a comma there is a list of alternatives; free text keeps its commas.
  const values = vr === 'CS' || vr === 'AE' ? raw.split(',') : [raw];
  if (values.length > MAX_LIST_VALUES) throw invalid(`${keyword} lists more than ${MAX_LIST_VALUES} values`);
  return values.map((v): QidoMatcher => {
    if (/^\*+$/.test(v)) return { kind: 'universal' };
    if (!/[*?]/.test(v)) return { kind: 'single', value: v };
    checkPattern(v, keyword, budget);
    return { kind: 'wildcard', pattern: v };
  });
}

function parseUint(name: string, raw: string): number {
  if (!/^\d{1,9}$/.test(raw)) throw invalid(`${name} must be a non-negative integer`);
  return Number(raw);
}

function parseBoolean(name: string, raw: string): boolean {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw invalid(`${name} must be true or false`);
}

/**
 * Parses a QIDO-RS request. Throws PipelineError QUERY_INVALID (400) for an unknown attribute,
 * an attribute not searchable at this resource, a malformed value, range, limit or offset, or
 * wild card patterns longer, or with more wild cards, than `limits` allow (all keys together).
 */
export function parseQidoRequest(
  level: QidoLevel,
  query: URLSearchParams,
  path: { study?: string; series?: string },
  limits: PatternLimits = QIDO_DEFAULT_LIMITS,
): QidoQuery {
  const scope = levelsInScope(level, path);
  const budget: PatternBudget = { limits, characters: 0, wildcards: 0 };
  for (const [name, uid] of [['study', path.study], ['series', path.series]] as const) {
    if (uid !== undefined && (uid.length > 64 || !UID_RE.test(uid))) throw invalid(`the ${name} in the path is not a UID`);
  }

  const keys = new Map<string, QidoMatchKey>();
  const includes = new Set<string>();
  let includeAll = false;
  let limit = QIDO_DEFAULT_LIMIT;
  let offset = 0;
  const warnings: string[] = [];

  for (const [name, raw] of query) {
    const lower = name.toLowerCase();
    if (RESERVED.has(lower)) {
      if (lower === 'limit') {
        limit = parseUint('limit', raw);
        if (limit === 0) throw invalid('limit must be at least 1');
        if (limit > QIDO_MAX_LIMIT) {
          limit = QIDO_MAX_LIMIT;
          warnings.push(`The limit has been reduced to ${QIDO_MAX_LIMIT}, the most this service returns at once.`);
        }
      } else if (lower === 'offset') {
        offset = parseUint('offset', raw);
      } else if (lower === 'includefield') {
        for (const field of raw.split(',')) {
          const f = field.trim();
          if (f === '') continue;
          if (f.toLowerCase() === 'all') includeAll = true;
          else includes.add(resolveAttribute(f, 'includefield').tag);
        }
      } else if (lower === 'fuzzymatching') {
        if (parseBoolean(name, raw)) warnings.push('The fuzzymatching parameter is not supported. Only literal matching has been performed.');
      } else if (lower === 'emptyvaluematching') {
        if (parseBoolean(name, raw)) warnings.push('The emptyvaluematching parameter is not supported. Empty Value Matching has not been performed.');
      } else if (parseBoolean(name, raw)) {
        warnings.push('The multiplevaluematching parameter is not supported. Multiple Value Matching has not been performed.');
      }
      continue;
    }

    const attr = resolveAttribute(name, 'match');
    const attrLevel = SEARCHABLE[attr.tag];
    if (attrLevel === undefined) throw invalid(`${attr.keyword} is not a searchable attribute of this service`);
    if (!scope.includes(attrLevel)) {
      throw invalid(`${attr.keyword} is a ${attrLevel}-level attribute and cannot be matched at this resource (${scope.join(', ')} attributes only)`);
    }
    const matchers = parseMatcher(raw, attr, budget);
    const existing = keys.get(attr.tag);
    // A repeated key is one more alternative for the same attribute, as a list would be.
    if (existing) existing.matchers.push(...matchers);
    else keys.set(attr.tag, { ...attr, level: attrLevel, matchers });
  }

  return {
    level,
    ...(path.study !== undefined ? { studyInstanceUid: path.study } : {}),
    ...(path.series !== undefined ? { seriesInstanceUid: path.series } : {}),
    keys: [...keys.values()],
    includeFields: includeAll ? 'all' : [...includes],
    limit,
    offset,
    warnings,
  };
}

