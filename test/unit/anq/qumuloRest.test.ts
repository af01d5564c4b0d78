/** The REST client's side of the Qumulo REST API Guide's contract, on a fake fetch: requests, paging, and how faults surface. */
import { afterOfNext, exportAndAncestors, fileRef, QumuloRestClient } from '../../../shared/anq/qumuloRest';
import { ErrorCodes } from '../../../shared/errors';

function fakeFetch(answer: (url: string, init: RequestInit | undefined) => Response): { fetch: typeof fetch; calls: { url: string; headers: Record<string, string> }[] } {
  const calls: { url: string; headers: Record<string, string> }[] = [];
  return {
    calls,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      calls.push({ url: String(input), headers: (init?.headers ?? {}) as Record<string, string> });
      return answer(String(input), init);
    }) as typeof fetch,
  };
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

describe('QumuloRestClient', () => {
  test('given snapshots, then it asks without those being deleted, with the bearer token, and answers oldest first', async () => {
    const f = fakeFetch(() => json({ entries: [{ id: 9, name: '9_x', in_delete: false }, { id: 3, name: '3_x', in_delete: false }, { id: 5, name: '5_x', in_delete: true }] }));
    const client = new QumuloRestClient('https://anq:8000', 'tok', f.fetch);
    expect((await client.listSnapshots()).map((s) => s.id)).toEqual([3, 9]);
    expect(f.calls[0]).toMatchObject({ url: 'https://anq:8000/v3/snapshots/?filter=exclude_in_delete', headers: { authorization: 'Bearer tok' } });
  });

  test('given a tree diff page with paging.next, then its after key; without one, the last page', async () => {
    const f = fakeFetch((url) =>
      url.includes('after=')
        ? json({ entries: [{ op: 'DELETE', path: '/r/b' }], paging: { next: null } })
        : json({ entries: [{ op: 'CREATE', path: '/r/a' }], paging: { next: '/v2/snapshots/4/changes-since/3?after=k%2F1&limit=1' } }),
    );
    const client = new QumuloRestClient('https://anq:8000', 'tok', f.fetch);
    expect(await client.changesSince(4, 3, undefined, { limit: 1 })).toEqual({ entries: [{ op: 'CREATE', path: '/r/a' }], after: 'k/1' });
    expect(await client.changesSince(4, 3, 'k/1', { limit: 1 })).toEqual({ entries: [{ op: 'DELETE', path: '/r/b' }], after: undefined });
    expect(f.calls.map((c) => c.url)).toEqual(['https://anq:8000/v2/snapshots/4/changes-since/3?limit=1', 'https://anq:8000/v2/snapshots/4/changes-since/3?after=k%2F1&limit=1']);
  });

  test('given paths, then the whole path is URL-encoded as the ref, with the snapshot as a parameter; a missing file is undefined', async () => {
    const f = fakeFetch(() => new Response('{"error_class":"fs_no_such_entry_error"}', { status: 404 }));
    const client = new QumuloRestClient('https://anq:8000', 'tok', f.fetch);
    expect(await client.attributes('/replica/a b/c.dcm', 7)).toBeUndefined();
    expect(f.calls[0]!.url).toBe(`https://anq:8000/v1/files/${fileRef('/replica/a b/c.dcm')}/info/attributes?snapshot=7`);
    expect(fileRef('/replica/a b/c.dcm')).toBe('%2Freplica%2Fa%20b%2Fc.dcm');
  });

  test.each([
    [503, ErrorCodes.SERVICE_UNAVAILABLE],
    [429, ErrorCodes.SERVICE_THROTTLED],
    [401, ErrorCodes.SERVICE_UNAVAILABLE],
    [400, ErrorCodes.INTERNAL],
  ])('given an answer %i, then %s', async (status, code) => {
    const client = new QumuloRestClient('https://anq:8000', 'tok', fakeFetch(() => json({}, status)).fetch);
    await expect(client.listSnapshots()).rejects.toMatchObject({ code });
  });

  test('given a diff of a snapshot that is gone, then NOT_FOUND; an answer that is not JSON, SERVICE_UNAVAILABLE', async () => {
    await expect(new QumuloRestClient('h', 't', fakeFetch(() => new Response('', { status: 404 })).fetch).changesSince(2, 1, undefined)).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND });
    await expect(new QumuloRestClient('h', 't', fakeFetch(() => new Response('<html>', { status: 200 })).fetch).listSnapshots()).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
  });

  test('given a refused connection, then SERVICE_UNAVAILABLE', async () => {
    const refused = (async () => {
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    }) as typeof fetch;
    await expect(new QumuloRestClient('h', 't', refused).listSnapshots()).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
  });
});

describe('helpers', () => {
  test('afterOfNext reads the after key of a next link, and nothing from an empty or absent one', () => {
    expect(afterOfNext('/v2/snapshots/2/changes-since/1?after=abc&limit=10')).toBe('abc');
    expect(afterOfNext('')).toBeUndefined();
    expect(afterOfNext(null)).toBeUndefined();
  });

  test('exportAndAncestors lists the root, each ancestor and the export, as directory paths', () => {
    expect(exportAndAncestors('/a/b')).toEqual(['/', '/a/', '/a/b/']);
    expect(exportAndAncestors('/')).toEqual(['/']);
  });
});
