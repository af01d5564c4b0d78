/**
 * The order of Azurite's metadata query filters (local/services/azuriteQueryOrder.ts): the most
 * selective indexed property first, the same rows found. Checked on LokiJS itself, the store
 * Azurite uses, with the indices Azurite gives its blob collection.
 */
import { install, selectiveFirst } from '../../../local/services/azuriteQueryOrder';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Loki = require(require.resolve('lokijs', { paths: [require.resolve('azurite/package.json')] })) as {
  new (name: string): { addCollection(name: string, options: { indices: string[] }): Collection };
  Resultset: { prototype: { find(query: unknown, firstOnly?: boolean): unknown } };
};
interface Collection {
  insert(doc: object): void;
  find(query: object): { accountName: string; containerName: string; name: string }[];
  findOne(query: object): { name: string } | null;
}

describe('selectiveFirst', () => {
  it('puts name, then blobName, then containerName, then accountName first, keeping the values and the other keys after', () => {
    const q = { accountName: 'devstoreaccount1', containerName: 'c', snapshot: '', name: 'a.dcm' };
    const out = selectiveFirst(q);
    expect(Object.keys(out)).toEqual(['name', 'containerName', 'accountName', 'snapshot']);
    expect(out).toEqual(q);
    expect(Object.keys(selectiveFirst({ isCommitted: true, blobName: 'b', accountName: 'x', name: 'blk' }))).toEqual(['name', 'blobName', 'accountName', 'isCommitted']);
  });

  it('leaves alone what it must not reorder: one key, operators at the top, non-objects', () => {
    const single = { name: 'a' };
    expect(selectiveFirst(single)).toBe(single);
    const ops = { $and: [{ accountName: 'x' }, { name: 'a' }] };
    expect(selectiveFirst(ops)).toBe(ops);
    expect(selectiveFirst('getAll')).toBe('getAll');
    expect(selectiveFirst(undefined)).toBeUndefined();
  });
});

describe('installed on LokiJS', () => {
  const original = Loki.Resultset.prototype.find;
  afterAll(() => {
    Loki.Resultset.prototype.find = original;
  });

  it('finds the same blobs as before, by find and findOne, with ranges and misses', () => {
    const build = () => {
      const blobs = new Loki('t').addCollection('$BLOBS_COLLECTION$', { indices: ['accountName', 'containerName', 'name', 'snapshot'] });
      for (let i = 0; i < 300; i++) blobs.insert({ accountName: i % 7 === 0 ? 'other' : 'devstoreaccount1', containerName: `c${i % 3}`, name: `study${i % 10}/${String(i).padStart(3, '0')}.dcm`, snapshot: '' });
      return blobs;
    };
    const queries = [
      { accountName: 'devstoreaccount1', containerName: 'c1', name: 'study1/001.dcm', snapshot: '' },
      { accountName: 'devstoreaccount1', containerName: 'c2', name: 'study1/001.dcm' },
      { accountName: 'other', containerName: 'c0', name: { $gt: 'study5' } },
      { accountName: 'devstoreaccount1', containerName: 'c0', name: { $regex: /^study3\// } },
      { containerName: 'c2', accountName: 'devstoreaccount1' },
    ];
    const before = build();
    const expected = queries.map((q) => ({ all: before.find(q).map((d) => d.name).sort(), one: before.findOne(q)?.name ?? null }));
    expect(expected.some((e) => e.all.length > 1)).toBe(true);
    expect(expected.some((e) => e.all.length === 0)).toBe(true);
    expect(install(Loki)).toBe(true);
    const after = build();
    const got = queries.map((q) => ({ all: after.find(q).map((d) => d.name).sort(), one: after.findOne(q)?.name ?? null }));
    expect(got.map((g) => g.all)).toEqual(expected.map((e) => e.all));
    // findOne answers a match whenever there is one (which one may differ with the index used).
    expect(got.map((g) => g.one !== null)).toEqual(expected.map((e) => e.one !== null));
  });
});
