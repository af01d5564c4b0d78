/**
 * Azurite's blob metadata store (LokiJS, in memory or on disk) answers a query such as
 * `{ accountName, containerName, name }` by applying its equality filters one after the other,
 * and only the first may use a binary index. Azurite lists `accountName` first: every blob of
 * the account matches it, so each Get Blob, Put Blob and Get Properties scans every blob the
 * emulator holds, and n uploads cost O(n²). Past ~10,000 blobs uploads slow to tens of ms each
 * (measured: 10,000 blobs in 20 s, the next 10,000 in 155 s), which stalls a large local
 * backfill, the 100,000-file measurement among them.
 *
 * Loaded into the Azurite process with `--require` (local/services/azurite.ts), this puts the
 * most selective indexed property first (`name`, then `blobName`, then `containerName`), so the
 * first filter is a binary-index lookup of a few rows. The filters are ANDed, so their order
 * does not change the result: only how many rows the later ones look at. Nothing else of
 * Azurite is touched; queries with operators at their top level ($and, $or) are left as they
 * are.
 */

/** Properties Azurite indexes, most selective first. */
const SELECTIVE: readonly string[] = ['name', 'blobName', 'containerName', 'accountName'];

function rank(key: string): number {
  const i = SELECTIVE.indexOf(key);
  return i < 0 ? SELECTIVE.length : i;
}

/** The same query with its properties in the order above (a new object), or the query itself when there is nothing to reorder. */
export function selectiveFirst<Q>(query: Q): Q {
  if (query === null || typeof query !== 'object' || Array.isArray(query)) return query;
  const keys = Object.keys(query);
  if (keys.length < 2 || keys.some((k) => k.startsWith('$'))) return query;
  const sorted = [...keys].sort((a, b) => rank(a) - rank(b));
  if (sorted.every((k, i) => k === keys[i])) return query;
  const record = query as Record<string, unknown>;
  return Object.fromEntries(sorted.map((k) => [k, record[k]])) as Q;
}

interface LokiResultset {
  find(query: unknown, firstOnly?: boolean): unknown;
}

/** Wraps LokiJS's `Resultset.prototype.find` (which `Collection.find` and `findOne` go through). */
export function install(loki: { Resultset?: { prototype: LokiResultset } }): boolean {
  const proto = loki.Resultset?.prototype;
  if (!proto || typeof proto.find !== 'function') return false;
  const find = proto.find;
  proto.find = function (this: LokiResultset, query: unknown, firstOnly?: boolean) {
    return find.call(this, selectiveFirst(query), firstOnly);
  };
  return true;
}

// In the Azurite process: the LokiJS that Azurite loads (resolved from Azurite's own folder).
if (process.env.VNA_AZURITE_QUERY_ORDER === '1') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const loki = require(require.resolve('lokijs', { paths: [require.resolve('azurite/package.json')] })) as Parameters<typeof install>[0];
  if (!install(loki)) process.stderr.write('azuriteQueryOrder: LokiJS Resultset.find not found; queries left as they are\n');
}
