import { parseIncomingEvent, resolveSourceUrl } from '../../../shared/events/ingestEvents';

const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';

describe('parseIncomingEvent', () => {
  const data = { url: `${ENDPOINT}/anq-replica/a/b.dcm`, eTag: '0x1', contentLength: 10 };

  it('given an Event Grid schema BlobCreated, then a created request naming the version it was raised for', () => {
    const r = parseIncomingEvent({ id: 'e1', eventType: 'Microsoft.Storage.BlobCreated', subject: '/blobServices/default/containers/anq-replica/blobs/a/b.dcm', eventTime: '2024-01-01T00:00:00Z', data });
    expect(r).toEqual({ kind: 'ingest', request: { kind: 'created', eventId: 'e1', eventType: 'Microsoft.Storage.BlobCreated', eventTime: '2024-01-01T00:00:00Z', url: data.url, site: undefined, etag: data.eTag } });
  });

  it('given an event without an eTag, then the request names no version', () => {
    const r = parseIncomingEvent({ id: 'e1b', eventType: 'Microsoft.Storage.BlobCreated', data: { url: data.url } });
    expect(r.kind === 'ingest' && 'etag' in r.request).toBe(false);
  });

  it('given a CloudEvents BlobDeleted, then a deleted request', () => {
    const r = parseIncomingEvent({ specversion: '1.0', id: 'e2', type: 'Microsoft.Storage.BlobDeleted', source: '/x', time: '2024-01-01T00:00:00Z', data });
    expect(r.kind === 'ingest' && r.request.kind).toBe('deleted');
  });

  it('given the custom FileReplicated event, then a created request with its site', () => {
    const r = parseIncomingEvent({ specversion: '1.0', id: 'e3', type: 'VNA.Archive.FileReplicated', source: '/anq', data: { url: data.url, site: 'north', replicatedAt: '2024-01-01T00:00:00Z', size: 10 } });
    expect(r.kind === 'ingest' && r.request).toMatchObject({ kind: 'created', site: 'north' });
  });

  it('given another event type, then it is ignored with a reason', () => {
    expect(parseIncomingEvent({ id: 'e4', eventType: 'Microsoft.Storage.BlobTierChanged', data })).toMatchObject({ kind: 'ignored' });
  });

  it.each([[null], ['text'], [{ eventType: 'Microsoft.Storage.BlobCreated', data }], [{ id: 'e5', eventType: 'Microsoft.Storage.BlobCreated', data: {} }]])(
    'given the malformed event %j, then EVENT_INVALID',
    (e) => {
      expect(() => parseIncomingEvent(e)).toThrow(expect.objectContaining({ code: 'EVENT_INVALID' }));
    },
  );
});

describe('resolveSourceUrl', () => {
  const resolve = (url: string) => resolveSourceUrl(url, [ENDPOINT], ['anq-replica']);

  it('given a blob of a source container, then its container and decoded name', () => {
    expect(resolve(`${ENDPOINT}/anq-replica/site%201/Doe%5EJohn/1.dcm`)).toEqual({
      kind: 'source',
      location: { canonicalUrl: `${ENDPOINT}/anq-replica/site%201/Doe%5EJohn/1.dcm`, container: 'anq-replica', blobName: 'site 1/Doe^John/1.dcm' },
    });
  });

  it('given a blob of another container of the account, then it is ignored', () => {
    expect(resolve(`${ENDPOINT}/research/x.dcm`).kind).toBe('ignored');
    // Dot segments are resolved by URL parsing before the container is read.
    expect(resolve(`${ENDPOINT}/anq-replica/%2e%2e/research/a.dcm`).kind).toBe('ignored');
  });

  it.each([
    ['http://169.254.169.254/metadata/instance'],
    ['https://evil.example.com/devstoreaccount1/anq-replica/a.dcm'],
    ['http://127.0.0.1:10001/devstoreaccount1/anq-replica/a.dcm'],
    [`${ENDPOINT}/anq-replica/a.dcm?sv=2020&sig=x`],
    [`${ENDPOINT}/anq-replica/a%2F..%2F..%2Fresearch%2Fa.dcm`],
    ['not a url'],
  ])('given %s, then it is refused', (url) => {
    expect(resolve(url).kind).toBe('refused');
  });
});
