/** The ANQ watcher's CloudEvents as the ingestion reads them, and the check that keeps them inside the configured export. */
import { AnqScope, anqSourceUrl, parseIncomingEvent, resolveAnqUrl, resolveRequestSource } from '../../../shared/events/ingestEvents';

const scope: AnqScope = { cluster: 'anq-west', bucket: 'replica', exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' };

describe('parseIncomingEvent, ANQ events', () => {
  const data = { url: 'anq://anq-west/replica/dicom/site%201/a.dcm', path: '/replica/dicom/site 1/a.dcm', size: 10, mtime: '2026-01-01T00:00:00Z', snapshotId: 7, snapshotName: '7_replication' };

  it('given a FileReplicated CloudEvent from the watcher, then a created request naming the snapshot', () => {
    const r = parseIncomingEvent({ specversion: '1.0', id: 'w1', type: 'VNA.Archive.FileReplicated', source: 'anq://anq-west', time: '2026-01-01T00:00:01Z', data });
    expect(r).toEqual({ kind: 'ingest', request: { kind: 'created', eventId: 'w1', eventType: 'VNA.Archive.FileReplicated', eventTime: '2026-01-01T00:00:01Z', url: data.url, site: undefined, snapshotId: 7 } });
  });

  it('given a FileDeleted CloudEvent, then a deleted request', () => {
    const r = parseIncomingEvent({ specversion: '1.0', id: 'w2', type: 'VNA.Archive.FileDeleted', source: 'anq://anq-west', data: { ...data, size: null, mtime: null } });
    expect(r.kind === 'ingest' && r.request).toMatchObject({ kind: 'deleted', snapshotId: 7 });
  });

  it.each([['7'], [-1], [1.5], [{}]])('given the snapshot id %j, then EVENT_INVALID', (snapshotId) => {
    expect(() => parseIncomingEvent({ id: 'w3', type: 'VNA.Archive.FileReplicated', data: { ...data, snapshotId } })).toThrow(expect.objectContaining({ code: 'EVENT_INVALID' }));
  });
});

describe('resolveAnqUrl', () => {
  it('given a file under the export and prefix, then the bucket, and the key as of the event snapshot', () => {
    expect(resolveAnqUrl('anq://anq-west/replica/dicom/site%201/Doe%5EJohn/1.dcm', scope, 7)).toEqual({
      kind: 'source',
      location: { canonicalUrl: 'anq://anq-west/replica/dicom/site%201/Doe%5EJohn/1.dcm', container: 'anq/replica', blobName: '.snapshot/7/dicom/site 1/Doe^John/1.dcm' },
    });
  });

  it('given head reads, or no snapshot in the event, then the live key', () => {
    expect(resolveAnqUrl('anq://anq-west/replica/dicom/1.dcm', { ...scope, readFrom: 'head' }, 7)).toMatchObject({ location: { blobName: 'dicom/1.dcm' } });
    expect(resolveAnqUrl('anq://ANQ-WEST/replica/dicom/1.dcm', scope)).toMatchObject({ location: { blobName: 'dicom/1.dcm', canonicalUrl: 'anq://anq-west/replica/dicom/1.dcm' } });
  });

  it('given the export at the root of the file system, then the key is the whole path', () => {
    expect(resolveAnqUrl('anq://anq-west/dicom/1.dcm', { ...scope, exportPath: '/' })).toMatchObject({ kind: 'source', location: { blobName: 'dicom/1.dcm' } });
  });

  it.each([
    ['anq://anq-east/replica/dicom/1.dcm', 'another cluster'],
    ['anq://anq-west/replica/other/1.dcm', 'outside the prefix'],
    ['anq://anq-west/replica/dicom2/1.dcm', 'a sibling of the prefix'],
    ['anq://anq-west/private/dicom/1.dcm', 'outside the export'],
    ['anq://anq-west/replica-old/dicom/1.dcm', 'a sibling of the export'],
    ['anq://anq-west/replica/dicom/../../etc/passwd', 'dot segments'],
    ['anq://anq-west/replica/dicom/%2e%2e/%2e%2e/private/x', 'encoded dot segments'],
    ['anq://anq-west/replica/dicom/a%2F..%2F..%2Fx', 'an encoded slash'],
    ['anq://anq-west/replica/dicom//1.dcm', 'an empty segment'],
    ['anq://anq-west/replica/dicom/sub/', 'a directory'],
    ['anq://user:pw@anq-west/replica/dicom/1.dcm', 'credentials'],
    ['anq://anq-west:9000/replica/dicom/1.dcm', 'a port'],
    ['anq://anq-west/replica/dicom/1.dcm?x=1', 'a query'],
    ['anq://anq-west/replica/dicom/%E0%A4%A.dcm', 'bad encoding'],
    ['http://anq-west/replica/dicom/1.dcm', 'another scheme'],
  ])('given %s (%s), then it is refused and never read', (url) => {
    expect(resolveAnqUrl(url, scope, 7).kind).toBe('refused');
  });

  it('given a path made by anqSourceUrl, then it resolves back to the same file', () => {
    const url = anqSourceUrl('anq-west', '/replica/dicom/a b/ü#?.dcm');
    expect(resolveAnqUrl(url, scope)).toMatchObject({ kind: 'source', location: { canonicalUrl: url, blobName: 'dicom/a b/ü#?.dcm' } });
  });
});

describe('resolveRequestSource', () => {
  const blob = { blobEndpoints: ['http://127.0.0.1:10000/devstoreaccount1'], sourceContainers: ['anq-replica'] };

  it('given an anq:// URL, then the ANQ export decides; a blob URL, the accounts', () => {
    expect(resolveRequestSource({ url: 'anq://anq-west/replica/dicom/1.dcm', snapshotId: 3 }, { ...blob, anq: scope })).toMatchObject({ kind: 'source', location: { blobName: '.snapshot/3/dicom/1.dcm' } });
    expect(resolveRequestSource({ url: 'http://127.0.0.1:10000/devstoreaccount1/anq-replica/a.dcm' }, { ...blob, anq: scope })).toMatchObject({ kind: 'source', location: { container: 'anq-replica' } });
  });

  it('given an anq:// URL while the ANQ source is off, then it is refused', () => {
    expect(resolveRequestSource({ url: 'anq://anq-west/replica/dicom/1.dcm' }, blob)).toEqual({ kind: 'refused', reason: 'the ANQ source is not configured' });
  });
});
