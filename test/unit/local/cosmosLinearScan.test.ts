/**
 * The opt-in scan fix of the local Cosmos DB server (local/services/cosmosLinearScan.ts): the
 * compiled scan no longer copies its result once per document, and queries, paging and the read
 * feed answer exactly as before.
 */
import * as path from 'node:path';

import { applyLinearScanFix } from '../../../local/services/cosmosLinearScan';

type Query = { code: string; exec(docs: object[], o?: { parameters?: { name: string; value: unknown }[]; maxItemCount?: number; continuation?: { token: string } | null }): { result: unknown[]; continuation: { token: string } | null } };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const compile = (require(require.resolve('@zeit/cosmosdb-query', { paths: [path.dirname(require.resolve('@vercel/cosmosdb-server'))] })) as { default(sql: string): Query }).default;

const docs = Array.from({ length: 250 }, (_, i) => ({ id: `d${i}`, _rid: `r${String(i).padStart(5, '0')}`, type: i % 3 ? 'instance' : 'series', n: i % 7 }));
const QUERIES = ['SELECT * FROM c', "SELECT c.id, c.n FROM c WHERE c.type = 'series'", 'SELECT * FROM c WHERE c.n > @n ORDER BY c.n', 'SELECT VALUE COUNT(1) FROM c'];

function pages(sql: string): unknown[][] {
  const out: unknown[][] = [];
  let continuation: { token: string } | null = null;
  do {
    const r = compile(sql).exec(docs, { parameters: [{ name: '@n', value: 3 }], maxItemCount: 40, continuation });
    out.push(r.result);
    continuation = r.continuation;
  } while (continuation);
  return out;
}

test('given the fix, then the compiled scan has no per-document spread, and every query pages to the same results as before', () => {
  const before = QUERIES.map(pages);
  expect(compile('SELECT * FROM c').code).toMatch(/\[\.\.\.\$,/);
  applyLinearScanFix();
  expect(compile('SELECT * FROM c').code).not.toMatch(/\[\.\.\.\$,/);
  expect(compile("SELECT c.id FROM c WHERE c.type = 'series'").code).not.toMatch(/\[\.\.\.\$,/);
  expect(QUERIES.map(pages)).toEqual(before);
  // Idempotent.
  applyLinearScanFix();
  expect(QUERIES.map(pages)).toEqual(before);
});
