/**
 * Opt-in fix of the local Cosmos DB emulator server's scan cost. Its query engine
 * (@zeit/cosmosdb-query, under @vercel/cosmosdb-server 1.0.1) compiles `FROM c` into
 * `$c.reduce(($, c) => [...$, { c }], [])`: every document copies the array built so far, so
 * one page of any query, and of the read feed (`SELECT * FROM c` inside), costs O(n²) in the
 * container's documents. That is what makes the server superlinear past ~15,000 documents
 * (docs/statistics.md). Rewriting the spread into a push keeps the result identical and the cost
 * O(n) per page. On by default wherever the server is started (`linearScans: false` turns it off).
 */
import * as path from 'node:path';

let applied = false;

/** Patches the query compiler of the server's copy of @zeit/cosmosdb-query. Idempotent; throws when the shape is not found. */
export function applyLinearScanFix(): void {
  if (applied) return;
  const serverEntry = require.resolve('@vercel/cosmosdb-server');
  const queryEntry = require.resolve('@zeit/cosmosdb-query', { paths: [path.dirname(serverEntry)] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const query = require(queryEntry) as { default(sql: string): object };
  const proto = Object.getPrototypeOf(query.default('SELECT * FROM c')) as object;
  const descriptor = Object.getOwnPropertyDescriptor(proto, 'code');
  const get = descriptor?.get;
  if (!get) throw new Error('cosmos linear scan fix: the query compiler has no `code` getter (package changed?)');
  const spread = /\[\.\.\.\$, (\{\s*c: c\s*\})\] : \$/g;
  if (!spread.test(String(get.call(query.default('SELECT * FROM c'))))) throw new Error('cosmos linear scan fix: the compiled scan has another shape (package changed?)');
  Object.defineProperty(proto, 'code', {
    configurable: true,
    get(this: object) {
      return String(get.call(this)).replace(spread, '($.push($1), $) : $');
    },
  });
  applied = true;
}
