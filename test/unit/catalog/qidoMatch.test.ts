/**
 * Wild card matching in QIDO-RS under abusive patterns: time linear in the value, agreement
 * with the definition, what is pushed into the SQL, and the bounds on one request.
 */
import { HttpRequest, InvocationContext } from '@azure/functions';
import fc from 'fast-check';

import {
  buildCatalogQuery,
  createQidoHandler,
  matchesWildcard,
  parseQidoRequest,
  QIDO_DEFAULT_LIMITS,
  type QidoLevel,
  type QidoLimits,
  runQido,
  wildcardLiterals,
} from '../../../shared/catalog/qido';
import type { ResearchCatalogReader, SqlQuery } from '../../../shared/catalog/researchCatalog';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { callInFreshProcess } from '../transpiled';
import { PATHOLOGICAL, seriesDoc, timeLongValue, timePostFilter } from './wildcardTiming';

const parse = (level: QidoLevel, query: string, limits?: Pick<QidoLimits, 'maxPatternLength' | 'maxWildcards'>) =>
  parseQidoRequest(level, new URLSearchParams(query), {}, limits);

function parseError(level: QidoLevel, query: string, limits?: Pick<QidoLimits, 'maxPatternLength' | 'maxWildcards'>): PipelineError {
  try {
    parse(level, query, limits);
  } catch (e) {
    if (e instanceof PipelineError) return e;
    throw e;
  }
  throw new Error('expected the query to be rejected');
}

/**
 * The definition of PS3.4 C.2.2.2.4, written as directly as possible (exponential, for small
 * inputs only): `*` is any run of characters, `?` exactly one, anything else itself.
 */
function referenceMatch(pattern: string[], value: string[]): boolean {
  if (pattern.length === 0) return value.length === 0;
  const [head, ...rest] = pattern;
  if (head === '*') return referenceMatch(rest, value) || (value.length > 0 && referenceMatch(pattern, value.slice(1)));
  if (value.length === 0) return false;
  return (head === '?' || head === value[0]) && referenceMatch(rest, value.slice(1));
}
const reference = (pattern: string, value: string) => referenceMatch(Array.from(pattern), Array.from(value));

describe('matchesWildcard', () => {
  const timing = 'test/unit/catalog/wildcardTiming.ts';

  test('given the issue\'s pattern and a 64-character value, then the post-filter decides in under 100 ms', async () => {
    const run = await callInFreshProcess<ReturnType<typeof timePostFilter>>(timing, 'timePostFilter', []);
    expect(run.defined).toBe(true);
    expect(run.accepted).toBe(false);
    expect(run.ms).toBeLessThan(100);
  });

  test('given 32 wild card pairs and a 10,000-character value, then matching takes under 200 ms', async () => {
    const run = await callInFreshProcess<ReturnType<typeof timeLongValue>>(timing, 'timeLongValue', []);
    expect(run.results).toEqual([false, true, false]);
    expect(run.ms).toBeLessThan(200);
  });

  test('given the examples of PS3.4 C.2.2.2.4, then * is any run (none too) and ? exactly one character', () => {
    expect(matchesWildcard('DOE^J*', 'DOE^JOHN')).toBe(true);
    expect(matchesWildcard('DOE^J*', 'DOE^J')).toBe(true);
    expect(matchesWildcard('DOE^J*', 'DOE^')).toBe(false);
    expect(matchesWildcard('A?C', 'ABC')).toBe(true);
    expect(matchesWildcard('A?C', 'AC')).toBe(false);
    expect(matchesWildcard('*HEAD*', 'CT HEAD W/O')).toBe(true);
    expect(matchesWildcard('a*b*c', 'abbbcbc')).toBe(true);
    expect(matchesWildcard('a*b*c', 'abbbcb')).toBe(false);
    // A character outside the Basic Multilingual Plane is one character, not two code units.
    expect(matchesWildcard('?', '\u{1F600}')).toBe(true);
    // Regular expression syntax in a pattern is literal text.
    expect(matchesWildcard('a.c*', 'abc')).toBe(false);
    expect(matchesWildcard('(a|b)*', '(a|b)x')).toBe(true);
  });

  test('given person names, then case-insensitive; given other text, then case-sensitive', () => {
    expect(matchesWildcard('anon^b*', 'ANON^BETA', { ignoreCase: true })).toBe(true);
    expect(matchesWildcard('anon^b*', 'ANON^BETA')).toBe(false);
  });

  const alphabet = fc.constantFrom('a', 'b', '\u{1F600}');
  const patterns = fc.array(fc.oneof(alphabet, fc.constantFrom('*', '?')), { maxLength: 10 }).map((cs) => cs.join(''));
  const values = fc.array(fc.oneof(alphabet, fc.constant('A')), { maxLength: 12 }).map((cs) => cs.join(''));

  test('given random small patterns and values, then it agrees with the definition', () => {
    fc.assert(fc.property(patterns, values, (pattern, value) => matchesWildcard(pattern, value) === reference(pattern, value)), { numRuns: 5000 });
  });

  test('given random small patterns and values ignoring case, then it agrees with the definition on the upper-case forms', () => {
    fc.assert(
      fc.property(patterns, values, (pattern, value) =>
        matchesWildcard(pattern, value, { ignoreCase: true }) === reference(pattern.toUpperCase(), value.toUpperCase())),
      { numRuns: 2000 },
    );
  });

  test('given random patterns, then their literal conditions hold for every match, and decide alone when exact', () => {
    fc.assert(
      fc.property(patterns.filter((p) => /[*?]/.test(p)), values, (pattern, value) => {
        const { prefix, suffix, inner, exact } = wildcardLiterals(pattern);
        const conditions = value.startsWith(prefix) && value.endsWith(suffix) && inner.every((text) => value.includes(text));
        const matches = reference(pattern, value);
        if (matches && !conditions) return false;
        return !exact || conditions === matches;
      }),
      { numRuns: 5000 },
    );
  });
});

describe('wild cards pushed into the SQL', () => {
  const build = (query: string) => buildCatalogQuery(parse('study', query));
  const params = (sql: SqlQuery) => Object.fromEntries(sql.parameters.map((p) => [p.name, p.value]));
  const expr = 'c.dicom["00081030"]["Value"][0]';

  test('given *HEAD*, then CONTAINS and no post-filter', () => {
    const { sql, postFilter } = build('StudyDescription=*HEAD*');
    expect(sql.query).toContain(`CONTAINS(${expr}, @p1)`);
    expect(params(sql)['@p1']).toBe('HEAD');
    expect(postFilter).toBeUndefined();
  });

  test('given *HEAD, then ENDSWITH and no post-filter', () => {
    const { sql, postFilter } = build('StudyDescription=*HEAD');
    expect(sql.query).toContain(`ENDSWITH(${expr}, @p1)`);
    expect(postFilter).toBeUndefined();
  });

  test('given AB*CD, then STARTSWITH and ENDSWITH, and a post-filter for the overlap', () => {
    const { sql, postFilter } = build('StudyDescription=AB*CD');
    expect(sql.query).toContain(`STARTSWITH(${expr}, @p1) AND ENDSWITH(${expr}, @p2)`);
    expect(params(sql)).toMatchObject({ '@p1': 'AB', '@p2': 'CD' });
    expect(postFilter?.({ id: 'x', type: 'study', studyInstanceUid: '1', dicom: { '00081030': { vr: 'LO', Value: ['ABCD'] } } })).toBe(true);
    expect(postFilter?.({ id: 'x', type: 'study', studyInstanceUid: '1', dicom: { '00081030': { vr: 'LO', Value: ['ABC'] } } })).toBe(false);
  });

  test('given the issue\'s pattern, then ENDSWITH # in the SQL and the rest in the post-filter', () => {
    const { sql, postFilter } = build(`StudyDescription=${encodeURIComponent(PATHOLOGICAL)}`);
    expect(sql.query).toContain(`ENDSWITH(${expr}, @p1)`);
    expect(params(sql)['@p1']).toBe('#');
    expect(postFilter).toBeDefined();
  });

  test('given literal runs between wild cards, then CONTAINS for each', () => {
    const { sql } = build('StudyDescription=*CT?HEAD*NECK?');
    expect(sql.query).toContain(`CONTAINS(${expr}, @p1) AND CONTAINS(${expr}, @p2) AND CONTAINS(${expr}, @p3)`);
    expect(Object.values(params(sql)).slice(1)).toEqual(['CT', 'HEAD', 'NECK']);
  });

  test('given only wild cards, then no condition and a post-filter', () => {
    const { sql, postFilter } = build('StudyDescription=?*?');
    expect(sql.query).not.toContain('00081030');
    expect(postFilter).toBeDefined();
  });
});

describe('wild card pattern limits', () => {
  test('given more wild cards than allowed, then 400 QUERY_INVALID naming the parameter without echoing the value', () => {
    const e = parseError('series', `SeriesDescription=${encodeURIComponent(`SECRET${'*?'.repeat(17)}`)}`);
    expect(e.code).toBe(ErrorCodes.QUERY_INVALID);
    expect(e.message).toContain('SeriesDescription');
    expect(e.message).toContain(`${QIDO_DEFAULT_LIMITS.maxWildcards} wild cards`);
    expect(e.message).not.toContain('SECRET');
  });

  test('given a pattern longer than allowed, then 400 QUERY_INVALID naming the parameter', () => {
    const e = parseError('study', `StudyDescription=${'A'.repeat(QIDO_DEFAULT_LIMITS.maxPatternLength)}*`);
    expect(e.code).toBe(ErrorCodes.QUERY_INVALID);
    expect(e.message).toContain('StudyDescription');
    expect(e.message).toContain(`${QIDO_DEFAULT_LIMITS.maxPatternLength} characters`);
  });

  test('given patterns within the limits one by one but over them together, then 400 naming the key that went over', () => {
    const limits = { maxPatternLength: 100, maxWildcards: 4 };
    expect(parse('series', 'SeriesDescription=*A*&StudyDescription=*B*', limits).keys).toHaveLength(2);
    expect(parseError('series', 'SeriesDescription=*A*&StudyDescription=*B*&Modality=C*', limits).message).toContain('Modality');
    expect(parseError('study', 'ModalitiesInStudy=C*,M*,P*,U*,X*', limits).message).toContain('ModalitiesInStudy');
  });

  test('given the issue\'s pattern, then it is within the default limits', () => {
    expect(parse('series', `SeriesDescription=${encodeURIComponent(PATHOLOGICAL)}`).keys[0]?.matchers).toEqual([{ kind: 'wildcard', pattern: PATHOLOGICAL }]);
  });
});

/** A catalog of `count` series documents that no wild card below matches; optionally slow. */
class ScanReader implements ResearchCatalogReader {
  yielded = 0;
  constructor(private readonly count: number, private readonly perDocumentMs = 0, private readonly honoursAbort = true) {}
  async *query<T>(_spec: SqlQuery, options: { abortSignal?: AbortSignal } = {}): AsyncIterable<T> {
    for (let i = 0; i < this.count; i++) {
      if (this.perDocumentMs > 0) await this.wait(this.perDocumentMs, options.abortSignal);
      this.yielded++;
      yield seriesDoc(`DESCRIPTION ${i}`) as unknown as T;
    }
  }
  private wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      if (!this.honoursAbort || !signal) return;
      const abort = () => {
        clearTimeout(timer);
        reject(Object.assign(new Error('The operation was aborted'), { name: 'AbortError' }));
      };
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
    });
  }
}

describe('the work one request may do', () => {
  const unmatched = () => parse('series', 'SeriesDescription=*?NOWHERE');

  async function rejection(work: Promise<unknown>): Promise<PipelineError> {
    try {
      await work;
    } catch (e) {
      if (e instanceof PipelineError) return e;
      throw e;
    }
    throw new Error('expected a rejection');
  }

  test('given more documents to read than allowed, then QUERY_TOO_BROAD and reading stops there', async () => {
    const reader = new ScanReader(5000);
    const e = await rejection(runQido(reader, unmatched(), { limits: { maxScannedDocuments: 100, timeBudgetMs: 10_000 } }));
    expect(e.code).toBe(ErrorCodes.QUERY_TOO_BROAD);
    expect(e.message).toContain('100 catalog entries');
    expect(reader.yielded).toBe(101);
  });

  test('given a catalog read that outlasts the time budget, then QUERY_TOO_BROAD soon after the budget, the read aborted', async () => {
    const reader = new ScanReader(1000, 50);
    const started = Date.now();
    const e = await rejection(runQido(reader, unmatched(), { limits: { maxScannedDocuments: 1_000_000, timeBudgetMs: 300 } }));
    expect(e.code).toBe(ErrorCodes.QUERY_TOO_BROAD);
    expect(e.message).toContain('300 ms');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(reader.yielded).toBeLessThan(10);
  });

  test('given a catalog that ignores the abort signal, then the budget still ends the request at the next document', async () => {
    const reader = new ScanReader(1000, 50, false);
    const started = Date.now();
    const e = await rejection(runQido(reader, unmatched(), { limits: { maxScannedDocuments: 1_000_000, timeBudgetMs: 300 } }));
    expect(e.code).toBe(ErrorCodes.QUERY_TOO_BROAD);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('given the caller aborts, then its abort is not reported as a query too broad', async () => {
    const reader = new ScanReader(1000, 50);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(runQido(reader, unmatched(), { abortSignal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  test('given a query too broad through the handler, then 413 with the code and message', async () => {
    const handler = createQidoHandler(async () => new ScanReader(5000), 'series', { limits: () => ({ ...QIDO_DEFAULT_LIMITS, maxScannedDocuments: 100 }) });
    const res = await handler(
      new HttpRequest({ method: 'GET', url: 'http://localhost/api/dicomweb/series?SeriesDescription=*%3FNOWHERE' }),
      new InvocationContext({ functionName: 'qido', logHandler: () => undefined }),
    );
    expect(res.status).toBe(413);
    expect(res.jsonBody).toEqual({ error: { code: 'QUERY_TOO_BROAD', message: expect.stringContaining('100 catalog entries') } });
  });

  test('given a pattern over the handler\'s limits, then 400 and no catalog read', async () => {
    const reader = new ScanReader(10);
    const handler = createQidoHandler(async () => reader, 'series', { limits: () => ({ ...QIDO_DEFAULT_LIMITS, maxWildcards: 4 }) });
    const res = await handler(
      new HttpRequest({ method: 'GET', url: `http://localhost/api/dicomweb/series?SeriesDescription=${encodeURIComponent(PATHOLOGICAL)}` }),
      new InvocationContext({ functionName: 'qido', logHandler: () => undefined }),
    );
    expect(res.status).toBe(400);
    expect(res.jsonBody).toEqual({ error: { code: 'QUERY_INVALID', message: expect.stringContaining('SeriesDescription') } });
    expect(reader.yielded).toBe(0);
  });
});
