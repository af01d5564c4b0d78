/**
 * The Event Grid publisher through the real SDK and a real socket: what reaches the topic (the
 * wire format downstream subscribers parse, and the key header the topic authenticates) and
 * how a topic that is down surfaces, since the ingestion retries only transient codes.
 */
import * as http from 'http';

import { closeServer, listen } from '../../local/net';
import { ErrorCodes, isPipelineError, isTransient } from '../../shared/errors';
import { EventGridPublisher, EXPORT_INSTANCE_WITHDRAWN, INSTANCE_CATALOGED, INSTANCE_WITHDRAWN, InstanceCatalogedData } from '../../shared/events/publisher';

interface Recorded {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

const requests: Recorded[] = [];
let answerStatus = 200;
let server: http.Server;
let publisher: EventGridPublisher;

const data: InstanceCatalogedData = {
  studyInstanceUid: '2.25.111',
  seriesInstanceUid: '2.25.222',
  sopInstanceUid: '2.25.333',
  sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
  modality: 'CT',
  researchBlob: 'studies/2.25.111/series/2.25.222/instances/2.25.333.dcm',
  size: 740,
};

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: text ? (JSON.parse(text) as unknown) : undefined });
      res.writeHead(answerStatus, { 'content-type': 'application/json', 'content-length': 0 });
      res.end();
    });
  });
  const port = await listen(server, 0, '127.0.0.1', 'fake Event Grid topic');
  publisher = new EventGridPublisher({ endpoint: `http://127.0.0.1:${port}/api/events`, key: 'test-key' });
});

beforeEach(() => {
  requests.length = 0;
  answerStatus = 200;
});

afterAll(async () => {
  if (server) await closeServer(server);
});

describe('EventGridPublisher', () => {
  test('given a topic that accepts, then one POST carries the key header and one InstanceCataloged event as sent', async () => {
    await publisher.instanceCataloged(data, 'event-id-1');

    expect(requests).toHaveLength(1);
    const req = requests[0] as Recorded;
    expect(req.method).toBe('POST');
    const url = new URL(req.path, 'http://topic');
    expect(url.pathname).toBe('/api/events');
    expect(url.searchParams.get('api-version')).toMatch(/^\d{4}-\d{2}-\d{2}/);
    expect(req.headers['aeg-sas-key']).toBe('test-key');
    expect(req.headers['content-type']).toMatch(/application\/json/);

    expect(Array.isArray(req.body)).toBe(true);
    const events = req.body as Record<string, unknown>[];
    expect(events).toHaveLength(1);
    expect(events[0]).toEqual({
      id: 'event-id-1',
      eventType: INSTANCE_CATALOGED,
      subject: '/studies/2.25.111/series/2.25.222/instances/2.25.333',
      dataVersion: '1.0',
      // Set by the SDK at send time; only its shape is stable.
      eventTime: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/),
      data,
    });
    expect(INSTANCE_CATALOGED).toBe('VNA.Catalog.InstanceCataloged');
  });

  test('given withdrawals, then InstanceWithdrawn (research UIDs) and Export.InstanceWithdrawn (partner UIDs) go out with their ids and subjects', async () => {
    const withdrawn = { studyInstanceUid: '2.25.111', seriesInstanceUid: '2.25.222', sopInstanceUid: '2.25.333' };
    await publisher.instanceWithdrawn(withdrawn, 'withdrawn-id-1');
    const notice = {
      agreementId: 'agr-0123456789abcdef', partnerId: 'uni-b', destination: 'https://partnerb.blob.core.windows.net/incoming',
      blob: '2.25.7/2.25.8/2.25.9.dcm', studyInstanceUid: '2.25.7', seriesInstanceUid: '2.25.8', sopInstanceUid: '2.25.9', keyId: 'k1.agr-0123456789abcdef',
    };
    await publisher.exportInstanceWithdrawn(notice, 'withdrawn:agr-0123456789abcdef:2.25.9');
    const sent = requests.map((r) => (r.body as Record<string, unknown>[])[0]);
    expect(sent).toEqual([
      expect.objectContaining({ id: 'withdrawn-id-1', eventType: INSTANCE_WITHDRAWN, subject: '/studies/2.25.111/series/2.25.222/instances/2.25.333', dataVersion: '1.0', data: withdrawn }),
      expect.objectContaining({ id: 'withdrawn:agr-0123456789abcdef:2.25.9', eventType: EXPORT_INSTANCE_WITHDRAWN, subject: '/agreements/agr-0123456789abcdef/files/2.25.7/2.25.8/2.25.9.dcm', data: notice }),
    ]);
    expect([INSTANCE_WITHDRAWN, EXPORT_INSTANCE_WITHDRAWN]).toEqual(['VNA.Catalog.InstanceWithdrawn', 'VNA.Export.InstanceWithdrawn']);
  });

  // The publisher passes no retry options, so the SDK's default policy (3 retries, exponential
  // from about 1 s) runs before the error surfaces: about 5-7 s, hence the longer timeout.
  test('given a topic answering 503, then instanceCataloged rejects with a transient SERVICE_UNAVAILABLE', async () => {
    answerStatus = 503;

    const error = await publisher.instanceCataloged(data, 'event-id-2').then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(isPipelineError(error, ErrorCodes.SERVICE_UNAVAILABLE)).toBe(true);
    expect(isTransient(error)).toBe(true);
    expect((error as Error).message).toContain('503');
    // One attempt and the SDK's 3 retries: the latency an ingestion pays before Event Grid redelivers it.
    expect(requests).toHaveLength(4);
    // Every retry resends the same event id, so a subscriber can drop duplicates.
    for (const r of requests) expect((r.body as { id: string }[]).map((e) => e.id)).toEqual(['event-id-2']);
  }, 30000);
});
