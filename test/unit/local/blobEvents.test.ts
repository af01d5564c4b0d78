import { BlobExchange, blobUrl, buildBlobEvent, classifyBlobExchange, LOCAL_STORAGE_TOPIC, Sequencer } from '../../../local/blobEvents';

const ACCOUNT = 'devstoreaccount1';
const exchange = (over: Partial<BlobExchange>): BlobExchange => ({
  method: 'PUT',
  url: `/${ACCOUNT}/anq-replica/a/b.dcm`,
  requestHeaders: { 'x-ms-blob-type': 'BlockBlob', 'content-length': '12', 'x-ms-client-request-id': 'client-1' },
  status: 201,
  responseHeaders: { etag: '"0x1"', 'x-ms-request-id': 'req-1' },
  ...over,
});

describe('classifying proxied blob requests', () => {
  test('given a Put Blob, then BlobCreated from PutBlob with the request length and response ids', () => {
    expect(classifyBlobExchange(exchange({}), ACCOUNT, ['anq-replica'])).toEqual({
      eventType: 'Microsoft.Storage.BlobCreated',
      api: 'PutBlob',
      container: 'anq-replica',
      blobName: 'a/b.dcm',
      clientRequestId: 'client-1',
      requestId: 'req-1',
      eTag: '"0x1"',
      contentLength: 12,
      blobType: 'BlockBlob',
    });
  });

  test('given a Put Block List, then PutBlockList with the length left to the blob properties', () => {
    const got = classifyBlobExchange(exchange({ url: `/${ACCOUNT}/anq-replica/x.dcm?comp=blocklist`, requestHeaders: { 'x-ms-blob-content-type': 'application/dicom' } }), ACCOUNT, ['anq-replica']);
    expect(got).toMatchObject({ api: 'PutBlockList', contentType: 'application/dicom' });
    expect(got?.contentLength).toBeUndefined();
  });

  test('given a copy source header, then CopyBlob', () => {
    const got = classifyBlobExchange(exchange({ status: 202, requestHeaders: { 'x-ms-copy-source': 'http://elsewhere/x' } }), ACCOUNT, ['anq-replica']);
    expect(got?.api).toBe('CopyBlob');
  });

  test('given a blob DELETE answered 202, then BlobDeleted from DeleteBlob', () => {
    const got = classifyBlobExchange(exchange({ method: 'DELETE', status: 202, requestHeaders: {} }), ACCOUNT, ['anq-replica']);
    expect(got).toMatchObject({ eventType: 'Microsoft.Storage.BlobDeleted', api: 'DeleteBlob' });
  });

  test('given a percent-encoded name, then the blob name is decoded per segment', () => {
    const got = classifyBlobExchange(exchange({ url: `/${ACCOUNT}/anq-replica/dir%20one/%C3%A9.dcm` }), ACCOUNT, ['anq-replica']);
    expect(got?.blobName).toBe('dir one/é.dcm');
  });

  test.each([
    ['a failed write', { status: 409 }],
    ['another container', { url: `/${ACCOUNT}/research/a.dcm` }],
    ['a staged block', { url: `/${ACCOUNT}/anq-replica/a.dcm?comp=block&blockid=AAAA` }],
    ['a metadata update', { url: `/${ACCOUNT}/anq-replica/a.dcm?comp=metadata` }],
    ['a container creation', { url: `/${ACCOUNT}/anq-replica?restype=container` }],
    ['a snapshot delete', { method: 'DELETE', status: 202, url: `/${ACCOUNT}/anq-replica/a.dcm?snapshot=2024-01-01` }],
    ['a read', { method: 'GET', status: 200 }],
    ['another account', { url: '/otheraccount/anq-replica/a.dcm' }],
  ])('given %s, then no event', (_what, over) => {
    expect(classifyBlobExchange(exchange(over as Partial<BlobExchange>), ACCOUNT, ['anq-replica'])).toBeUndefined();
  });
});

describe('building Blob Storage events', () => {
  test('given a created blob, then an Event Grid schema event with the public URL and subject', () => {
    const write = classifyBlobExchange(exchange({ url: `/${ACCOUNT}/anq-replica/dir%20one/x.dcm` }), ACCOUNT, ['anq-replica']);
    const event = buildBlobEvent({ ...write!, contentType: 'application/dicom' }, {
      blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
      sequencer: '0001',
      now: new Date('2024-05-06T07:08:09.000Z'),
      id: 'id-1',
    });
    expect(event).toEqual({
      id: 'id-1',
      topic: LOCAL_STORAGE_TOPIC,
      subject: '/blobServices/default/containers/anq-replica/blobs/dir one/x.dcm',
      eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2024-05-06T07:08:09.000Z',
      dataVersion: '',
      metadataVersion: '1',
      data: {
        api: 'PutBlob',
        clientRequestId: 'client-1',
        requestId: 'req-1',
        eTag: '"0x1"',
        contentType: 'application/dicom',
        contentLength: 12,
        blobType: 'BlockBlob',
        url: 'http://127.0.0.1:10000/devstoreaccount1/anq-replica/dir%20one/x.dcm',
        sequencer: '0001',
        storageDiagnostics: { batchId: expect.stringMatching(/^[0-9a-f-]{36}$/) },
      },
    });
  });

  test('given a deleted blob, then no eTag or length in the data', () => {
    const write = classifyBlobExchange(exchange({ method: 'DELETE', status: 202 }), ACCOUNT, ['anq-replica']);
    const event = buildBlobEvent(write!, { blobEndpoint: 'http://h/devstoreaccount1', sequencer: '1' });
    expect(event.eventType).toBe('Microsoft.Storage.BlobDeleted');
    expect(event.data).not.toHaveProperty('eTag');
    expect(event.data).not.toHaveProperty('contentLength');
  });

  test('given names with reserved characters, then the URL encodes each segment as the SDK does', () => {
    expect(blobUrl('http://h:1/acc/', 'c', 'a b/c#d?/e+f')).toBe('http://h:1/acc/c/a%20b/c%23d%3F/e%2Bf');
  });

  test('given successive sequencers, then they are fixed-width hex and sort in emission order', () => {
    const s = new Sequencer(1700000000000);
    const values = Array.from({ length: 20 }, () => s.next());
    expect(values.every((v) => /^[0-9a-f]{32}$/.test(v))).toBe(true);
    expect([...values].sort()).toEqual(values);
    expect(new Sequencer(1700000000001).next() > values[19]!).toBe(true);
  });
});
