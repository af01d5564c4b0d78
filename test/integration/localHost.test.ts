/**
 * The local runtime against its own small function app (written to a temporary folder), real
 * Azurite and the Cosmos DB emulator server: registrations, HTTP routing, the Event Grid
 * webhook, and the blob proxy that plays Event Grid for the landing container.
 */
import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { BlobStorageEvent, LOCAL_STORAGE_TOPIC } from '../../local/blobEvents';
import { azuriteConnectionString, COSMOS_EMULATOR_KEY } from '../../local/emulators';
import { BlobEventSource, emitExistingBlobs, startEventSource } from '../../local/eventSource';
import { FunctionHost, startHost } from '../../local/host';
import { AzuriteHandle, startAzurite } from '../../local/services/azurite';
import { startCosmosServer } from '../../local/services/cosmos';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));

const HTTP_FUNCTIONS = `
const { app } = require(${functionsLib});
const { Readable } = require('stream');

app.http('itemParts', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'items/{id:int}/parts/{part?}',
  handler: async (request, context) => ({
    jsonBody: { params: request.params, query: request.query.getAll('x'), method: request.method, fn: context.functionName },
  }),
});

app.http('echo', {
  methods: ['POST', 'PUT'],
  authLevel: 'function',
  route: 'echo',
  handler: async (request) => ({ status: 201, headers: { 'x-echo': 'yes' }, body: await request.text() }),
});

app.http('adminOnly', {
  methods: ['GET', 'DELETE'],
  authLevel: 'admin',
  handler: async () => ({ body: 'admin' }),
});

app.http('streamed', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'stream/{*rest}',
  handler: async (request) => ({ body: Readable.from([Buffer.from('chunk-1;'), Buffer.from(request.params.rest || '')]) }),
});

app.http('nothing', { methods: ['GET'], authLevel: 'anonymous', route: 'nothing', handler: async () => undefined });
`;

const EVENT_FUNCTIONS = `
const { app } = require(${functionsLib});
const attempts = new Map();

app.eventGrid('recordEvent', {
  handler: async (event, context) => {
    context.log('EVENT ' + JSON.stringify({ event, methodName: context.triggerMetadata && context.triggerMetadata.sys && context.triggerMetadata.sys.methodName }));
    if (event.data && event.data.fail) throw new Error('asked to fail');
  },
});

app.eventGrid('blobEvents', {
  handler: async (event, context) => {
    const url = (event.data && event.data.url) || '';
    const n = (attempts.get(url) || 0) + 1;
    attempts.set(url, n);
    context.log('BLOB ' + JSON.stringify({ event, attempt: n }));
    if (url.includes('/flaky/') && n < 3) throw new Error('transient');
    if (url.includes('/dead/')) throw new Error('always');
  },
});
`;

interface Captured {
  level: string;
  functionName: string;
  message: string;
}

let dir: string;
let host: FunctionHost;
let azurite: AzuriteHandle;
let events: BlobEventSource;
const logs: Captured[] = [];

function loggedJson(prefix: string, functionName?: string): Record<string, unknown>[] {
  return logs
    .filter((l) => l.message.startsWith(`${prefix} `) && (!functionName || l.functionName === functionName))
    .map((l) => JSON.parse(l.message.slice(prefix.length + 1)) as Record<string, unknown>);
}

function eventGridEvent(id: string, data: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, subject: `/s/${id}`, eventType: 'Test.Happened', eventTime: new Date().toISOString(), dataVersion: '1', data };
}

async function postWebhook(functionName: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=${functionName}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-host-test-'));
  fs.mkdirSync(path.join(dir, 'functions'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'functions/*.js' }));
  fs.writeFileSync(path.join(dir, 'functions', 'http.js'), HTTP_FUNCTIONS);
  fs.writeFileSync(path.join(dir, 'functions', 'events.js'), EVENT_FUNCTIONS);
  fs.writeFileSync(path.join(dir, 'functions', 'notes.txt'), 'not matched by the glob');
  host = await startHost({ projectRoot: dir, port: 0, logSink: (level, functionName, message) => logs.push({ level, functionName, message }) });
  azurite = await startAzurite({ blobPort: 0, queuePort: 0 });
  events = await startEventSource({
    upstreamUrl: `http://127.0.0.1:${azurite.blobPort}`,
    port: 0,
    sourceContainers: ['landing'],
    webhookBaseUrl: host.url,
    functionName: 'blobEvents',
    maxAttempts: 4,
    initialBackoffMs: 10,
    maxBackoffMs: 50,
    deadLetterFile: path.join(dir, 'deadletter.jsonl'),
  });
});

afterAll(async () => {
  await events?.stop();
  await host?.stop();
  await azurite?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('function host registrations', () => {
  test('given function files matched by the main glob, then every registration is listed with trigger, route, methods and auth level', () => {
    const byName = Object.fromEntries(host.functions.map((f) => [f.name, f]));
    expect(Object.keys(byName).sort()).toEqual(['adminOnly', 'blobEvents', 'echo', 'itemParts', 'nothing', 'recordEvent', 'streamed']);
    expect(byName.itemParts).toEqual({ name: 'itemParts', trigger: 'httpTrigger', route: 'items/{id:int}/parts/{part?}', methods: ['GET'], authLevel: 'anonymous' });
    expect(byName.echo).toMatchObject({ methods: ['POST', 'PUT'], authLevel: 'function', route: 'echo' });
    expect(byName.adminOnly).toMatchObject({ route: 'adminOnly', authLevel: 'admin' });
    expect(byName.recordEvent).toEqual({ name: 'recordEvent', trigger: 'eventGridTrigger' });
  });

  test('given a project without files matching main, then startHost fails and says so', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'local-host-empty-'));
    fs.writeFileSync(path.join(empty, 'package.json'), JSON.stringify({ main: 'dist/functions/*.js' }));
    await expect(startHost({ projectRoot: empty, port: 0, logSink: () => undefined })).rejects.toThrow(/no file matches the "main" glob/);
    fs.rmSync(empty, { recursive: true, force: true });
  });
});

describe('HTTP triggers', () => {
  test('given a route with parameters, then the handler gets the params and repeated query values', async () => {
    const res = await fetch(`${host.url}/api/items/42/parts/wheel?x=1&x=2`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(await res.json()).toEqual({ params: { id: '42', part: 'wheel' }, query: ['1', '2'], method: 'GET', fn: 'itemParts' });
  });

  test('given an optional parameter left out and literal segments in another case, then the route still matches', async () => {
    const res = await fetch(`${host.url}/API/Items/7/PARTS`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { params: unknown }).params).toEqual({ id: '7' });
  });

  test('given a value that breaks a route constraint, then 404', async () => {
    const res = await fetch(`${host.url}/api/items/abc/parts`);
    expect(res.status).toBe(404);
  });

  test('given a POST body, then the handler reads it and its status and headers are written back', async () => {
    const res = await fetch(`${host.url}/api/echo`, { method: 'POST', body: 'hello body' });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-echo')).toBe('yes');
    expect(await res.text()).toBe('hello body');
  });

  test('given a method the function does not accept, then 404 as in Azure', async () => {
    const res = await fetch(`${host.url}/api/echo`);
    expect(res.status).toBe(404);
  });

  test('given an admin function without a route, then it is served at /api/<name> from loopback', async () => {
    const res = await fetch(`${host.url}/api/adminOnly`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('admin');
  });

  test('given a stream body and a catch-all parameter, then the streamed bytes arrive', async () => {
    const res = await fetch(`${host.url}/api/stream/a/b%20c`);
    expect(await res.text()).toBe('chunk-1;a/b c');
  });

  test('given a handler that returns nothing, then 204', async () => {
    expect((await fetch(`${host.url}/api/nothing`)).status).toBe(204);
  });

  test('given an unknown route, then 404 with a JSON body', async () => {
    const res = await fetch(`${host.url}/api/does/not/exist`);
    expect(res.status).toBe(404);
    expect(await res.json()).toHaveProperty('error');
  });

  test('given an invocation, then the host logs executing and executed lines for the function', () => {
    const lines = logs.filter((l) => l.functionName === 'itemParts').map((l) => l.message);
    expect(lines.some((m) => m.startsWith("Executing 'Functions.itemParts'"))).toBe(true);
    expect(lines.some((m) => m.startsWith("Executed 'Functions.itemParts' (Succeeded"))).toBe(true);
  });
});

describe('Event Grid webhook', () => {
  const recorded = () => loggedJson('EVENT', 'recordEvent').map((r) => r.event as Record<string, unknown>);

  test('given an array of Event Grid events, then each event invokes the function once and the answer is 200', async () => {
    const res = await postWebhook('recordEvent', [eventGridEvent('a-1'), eventGridEvent('a-2')]);
    expect(res.status).toBe(200);
    expect(recorded().filter((e) => String(e.id).startsWith('a-')).map((e) => e.id)).toEqual(['a-1', 'a-2']);
    expect(loggedJson('EVENT', 'recordEvent').find((r) => (r.event as { id: string }).id === 'a-1')?.methodName).toBe('recordEvent');
  });

  test('given a single Event Grid event object, then the function is invoked once', async () => {
    expect((await postWebhook('recordEvent', eventGridEvent('single-1'))).status).toBe(200);
    expect(recorded().filter((e) => e.id === 'single-1')).toHaveLength(1);
  });

  test('given a CloudEvent, then the function receives it once, as sent', async () => {
    const cloudEvent = { specversion: '1.0', id: 'c-1', source: '/test', type: 'Test.Happened', data: { n: 1 } };
    const res = await postWebhook('recordEvent', cloudEvent, { 'content-type': 'application/cloudevents+json; charset=utf-8' });
    expect(res.status).toBe(200);
    expect(recorded().filter((e) => e.id === 'c-1')).toEqual([cloudEvent]);
  });

  test('given a CloudEvents batch, then each event invokes the function once', async () => {
    const batch = ['b-1', 'b-2', 'b-3'].map((id) => ({ specversion: '1.0', id, source: '/test', type: 'Test.Happened' }));
    const res = await postWebhook('recordEvent', batch, { 'content-type': 'application/cloudevents-batch+json' });
    expect(res.status).toBe(200);
    expect(recorded().filter((e) => String(e.id).startsWith('b-')).map((e) => e.id)).toEqual(['b-1', 'b-2', 'b-3']);
  });

  test('given a subscription validation event, then the code is echoed and the function is not invoked', async () => {
    const before = recorded().length;
    const validation = [{ id: 'v-1', subject: '', eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent', eventTime: new Date().toISOString(), dataVersion: '2', data: { validationCode: 'code-123' } }];
    const res = await postWebhook('recordEvent', validation, { 'aeg-event-type': 'SubscriptionValidation' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ validationResponse: 'code-123' });
    expect(recorded()).toHaveLength(before);
  });

  test('given a handler that throws, then 500 so that the sender retries', async () => {
    const res = await postWebhook('recordEvent', [eventGridEvent('f-1', { fail: true }), eventGridEvent('f-2')]);
    expect(res.status).toBe(500);
    expect(recorded().filter((e) => String(e.id).startsWith('f-'))).toHaveLength(2);
    expect(logs.some((l) => l.level === 'error' && l.functionName === 'recordEvent' && /Failed.*asked to fail/.test(l.message))).toBe(true);
  });

  test('given an unknown function name, then 404', async () => {
    expect((await postWebhook('noSuchFunction', [eventGridEvent('x')])).status).toBe(404);
  });

  test('given a body that is not JSON, then 400', async () => {
    expect((await postWebhook('recordEvent', '{not json')).status).toBe(400);
  });
});

describe('blob event source', () => {
  let service: BlobServiceClient;
  let landing: ContainerClient;
  const blobEvents = () => loggedJson('BLOB', 'blobEvents') as { event: BlobStorageEvent; attempt: number }[];
  const eventsFor = (name: string) => blobEvents().filter((r) => r.event.subject.endsWith(`/blobs/${name}`));

  beforeAll(async () => {
    service = BlobServiceClient.fromConnectionString(azuriteConnectionString(events.port, azurite.queuePort));
    landing = service.getContainerClient('landing');
    await landing.create();
    await service.getContainerClient('elsewhere').create();
  });

  test('given a Put Blob to the landing container, then one BlobCreated with the fields Event Grid sends', async () => {
    const name = 'dir one/é file.dcm';
    const upload = await landing.getBlockBlobClient(name).upload(Buffer.from('0123456789'), 10, { blobHTTPHeaders: { blobContentType: 'application/dicom' } });
    await events.idle();
    const got = eventsFor(name);
    expect(got).toHaveLength(1);
    const e = got[0]?.event as BlobStorageEvent;
    expect(e).toMatchObject({
      topic: LOCAL_STORAGE_TOPIC,
      subject: `/blobServices/default/containers/landing/blobs/${name}`,
      eventType: 'Microsoft.Storage.BlobCreated',
      dataVersion: '',
      metadataVersion: '1',
    });
    expect(e.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.data).toMatchObject({
      api: 'PutBlob',
      eTag: upload.etag,
      requestId: upload.requestId,
      contentType: 'application/dicom',
      contentLength: 10,
      blobType: 'BlockBlob',
      url: landing.getBlockBlobClient(name).url,
    });
    expect(e.data.url).toBe(`http://127.0.0.1:${events.port}/devstoreaccount1/landing/dir%20one/%C3%A9%20file.dcm`);
    expect(e.data.sequencer).toMatch(/^[0-9a-f]{32}$/);
    expect(e.data.storageDiagnostics.batchId).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('given a staged upload, then one BlobCreated from PutBlockList with the blob length', async () => {
    const data = Buffer.alloc(300 * 1024, 7);
    await landing.getBlockBlobClient('staged.bin').uploadData(data, { blockSize: 100 * 1024, maxSingleShotSize: 64 * 1024 });
    await events.idle();
    const got = eventsFor('staged.bin');
    expect(got).toHaveLength(1);
    expect(got[0]?.event.data).toMatchObject({ api: 'PutBlockList', contentLength: data.length, contentType: 'application/octet-stream' });
  });

  test('given a copy into the landing container, then BlobCreated from CopyBlob', async () => {
    const source = service.getContainerClient('elsewhere').getBlockBlobClient('src.bin');
    await source.upload(Buffer.from('copy me'), 7);
    const poller = await landing.getBlockBlobClient('copied.bin').beginCopyFromURL(source.url);
    await poller.pollUntilDone();
    await events.idle();
    const got = eventsFor('copied.bin');
    expect(got).toHaveLength(1);
    expect(got[0]?.event.data).toMatchObject({ api: 'CopyBlob', contentLength: 7 });
  });

  test('given writes to another container, then no event', async () => {
    await events.idle();
    expect(blobEvents().filter((r) => r.event.subject.includes('/containers/elsewhere/'))).toHaveLength(0);
  });

  test('given a blob deleted from the landing container, then one BlobDeleted', async () => {
    await landing.getBlockBlobClient('gone.bin').upload(Buffer.from('x'), 1);
    await landing.getBlockBlobClient('gone.bin').delete();
    await events.idle();
    const deleted = eventsFor('gone.bin').filter((r) => r.event.eventType === 'Microsoft.Storage.BlobDeleted');
    expect(deleted).toHaveLength(1);
    expect(deleted[0]?.event.data).toMatchObject({ api: 'DeleteBlob', blobType: 'BlockBlob' });
  });

  test('given a function that fails twice, then the event is retried until a 2xx', async () => {
    const before = events.stats();
    await landing.getBlockBlobClient('flaky/one.bin').upload(Buffer.from('f'), 1);
    await events.idle();
    const got = eventsFor('flaky/one.bin');
    expect(got.map((r) => r.attempt)).toEqual([1, 2, 3]);
    expect(new Set(got.map((r) => r.event.id)).size).toBe(1);
    const after = events.stats();
    expect(after.delivered - before.delivered).toBe(1);
    expect(after.retried - before.retried).toBe(2);
    expect(after.pending).toBe(0);
  });

  test('given a function that always fails, then the event is dead-lettered after the last attempt', async () => {
    const before = events.stats();
    await landing.getBlockBlobClient('dead/one.bin').upload(Buffer.from('d'), 1);
    await events.idle();
    expect(eventsFor('dead/one.bin')).toHaveLength(4);
    expect(events.stats().deadLettered - before.deadLettered).toBe(1);
    const lines = fs.readFileSync(path.join(dir, 'deadletter.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toMatchObject({ deadLetterReason: 'MaxDeliveryAttemptsExceeded', deliveryAttempts: 4, lastHttpStatusCode: 500, eventType: 'Microsoft.Storage.BlobCreated' });
  });

  test.each([
    ['never answers', false],
    ['sends its headers and never ends its answer', true],
  ])('given a webhook that %s, then each attempt times out and the event is dead-lettered as timed out', async (_what, sendsHeaders) => {
    // A host that reads the delivery and never finishes answering it.
    const held: http.ServerResponse[] = [];
    const silent = http.createServer((req, res) => {
      req.resume();
      if (sendsHeaders) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
      }
      held.push(res);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const deadLetters = path.join(dir, `deadletter-timeout-${sendsHeaders ? 'headers' : 'silent'}.jsonl`);
    const source = await startEventSource({
      upstreamUrl: `http://127.0.0.1:${azurite.blobPort}`,
      port: 0,
      sourceContainers: ['landing'],
      webhookBaseUrl: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
      maxAttempts: 2,
      initialBackoffMs: 10,
      deliveryTimeoutMs: 300,
      deadLetterFile: deadLetters,
    });
    try {
      const client = BlobServiceClient.fromConnectionString(azuriteConnectionString(source.port, azurite.queuePort)).getContainerClient('landing');
      await client.getBlockBlobClient(`silent/${sendsHeaders ? 'headers' : 'none'}.bin`).upload(Buffer.from('s'), 1);
      await source.idle();
      expect(source.stats()).toMatchObject({ emitted: 1, delivered: 0, retried: 1, deadLettered: 1, pending: 0 });
      expect(held).toHaveLength(2);
      const [line] = fs.readFileSync(deadLetters, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(line).toMatchObject({ deliveryAttempts: 2, lastDeliveryOutcome: 'timed out', lastHttpStatusCode: 0, subject: `/blobServices/default/containers/landing/blobs/silent/${sendsHeaders ? 'headers' : 'none'}.bin` });
    } finally {
      await source.stop();
      held.forEach((res) => res.destroy());
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('given blobs already in the container, then the reconciliation scan emits one BlobCreated each', async () => {
    const names: string[] = [];
    for await (const b of landing.listBlobsFlat()) names.push(b.name);
    const before = blobEvents().length;
    const emitted = await emitExistingBlobs(events, { container: 'landing', prefix: 'dir one/' });
    await events.idle();
    expect(emitted).toBe(names.filter((n) => n.startsWith('dir one/')).length);
    expect(blobEvents().slice(before).map((r) => r.event.data.api)).toEqual(Array(emitted).fill('PutBlob'));
  });

  test('given a large upload through the proxy, then the bytes arrive intact', async () => {
    const data = Buffer.alloc(12 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    await landing.getBlockBlobClient('large.bin').uploadData(data, { blockSize: 4 * 1024 * 1024, concurrency: 3 });
    const back = await landing.getBlockBlobClient('large.bin').downloadToBuffer();
    expect(back.equals(data)).toBe(true);
    await events.idle();
    expect(eventsFor('large.bin')[0]?.event.data.contentLength).toBe(data.length);
  });
});

describe('blob event source: batches (an Event Grid subscription with maxEventsPerBatch)', () => {
  /** A webhook that keeps each delivery's events and answers with what `answer` says. */
  async function recordingWebhook(answer: (events: BlobStorageEvent[]) => number) {
    const deliveries: BlobStorageEvent[][] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const events = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BlobStorageEvent[];
        deliveries.push(events);
        res.writeHead(answer(events), { 'content-length': 0 });
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { deliveries, url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => new Promise((resolve) => server.close(resolve)) };
  }
  const write = (blobName: string) => ({
    eventType: 'Microsoft.Storage.BlobCreated' as const,
    api: 'PutBlob' as const,
    container: 'landing',
    blobName,
    clientRequestId: 'batch-test',
    requestId: '',
    contentLength: 1,
    contentType: 'application/octet-stream',
    blobType: 'BlockBlob',
  });
  const names = (deliveries: BlobStorageEvent[][]) => deliveries.map((d) => d.map((e) => e.subject.split('/blobs/')[1]));

  async function withSource(webhook: { url: string }, options: { maxEventsPerBatch?: number; preferredBatchSizeInKilobytes?: number }, work: (source: BlobEventSource) => Promise<void>) {
    const source = await startEventSource({
      upstreamUrl: `http://127.0.0.1:${azurite.blobPort}`,
      port: 0,
      sourceContainers: ['landing'],
      webhookBaseUrl: webhook.url,
      concurrency: 1,
      maxAttempts: 3,
      initialBackoffMs: 10,
      ...options,
    });
    try {
      await work(source);
    } finally {
      await source.stop();
    }
  }

  test('given a burst of eight writes and batches of at most three, then every event goes once, in batches of what was queued when a delivery began', async () => {
    const webhook = await recordingWebhook(() => 200);
    try {
      await withSource(webhook, { maxEventsPerBatch: 3 }, async (source) => {
        for (let i = 1; i <= 8; i++) source.emit(write(`b/${i}`));
        await source.idle();
        // The first write went at once, alone: a delivery does not wait for a batch to fill.
        expect(names(webhook.deliveries)).toEqual([['b/1'], ['b/2', 'b/3', 'b/4'], ['b/5', 'b/6', 'b/7'], ['b/8']]);
        expect(new Set(webhook.deliveries.flat().map((e) => e.id)).size).toBe(8);
        expect(source.stats()).toMatchObject({ emitted: 8, delivered: 8, retried: 0, deadLettered: 0, pending: 0 });
      });
    } finally {
      await webhook.close();
    }
  });

  test('given a batch the function host fails, then the whole batch is sent again, the same events with the same ids', async () => {
    let failures = 0;
    const webhook = await recordingWebhook((events) => (events.length > 1 && failures++ === 0 ? 500 : 200));
    try {
      await withSource(webhook, { maxEventsPerBatch: 3 }, async (source) => {
        for (let i = 1; i <= 4; i++) source.emit(write(`r/${i}`));
        await source.idle();
        const [, failed, again] = webhook.deliveries;
        expect(names(webhook.deliveries)).toEqual([['r/1'], ['r/2', 'r/3', 'r/4'], ['r/2', 'r/3', 'r/4']]);
        expect(again?.map((e) => e.id)).toEqual(failed?.map((e) => e.id));
        expect(source.stats()).toMatchObject({ emitted: 4, delivered: 4, retried: 3, deadLettered: 0, pending: 0 });
      });
    } finally {
      await webhook.close();
    }
  });

  test('given a batch size that is not a whole number (a bad setting), then one event per delivery', async () => {
    const webhook = await recordingWebhook(() => 200);
    try {
      await withSource(webhook, { maxEventsPerBatch: Number('ten') }, async (source) => {
        for (let i = 1; i <= 3; i++) source.emit(write(`n/${i}`));
        await source.idle();
        expect(names(webhook.deliveries)).toEqual([['n/1'], ['n/2'], ['n/3']]);
        expect(source.stats()).toMatchObject({ emitted: 3, delivered: 3, pending: 0 });
      });
    } finally {
      await webhook.close();
    }
  });

  test('given events larger than half the preferred batch size, then each goes alone although the batch could hold three', async () => {
    const webhook = await recordingWebhook(() => 200);
    try {
      await withSource(webhook, { maxEventsPerBatch: 3, preferredBatchSizeInKilobytes: 1 }, async (source) => {
        const long = (i: number) => `p/${String(i).repeat(600)}`;
        for (let i = 1; i <= 4; i++) source.emit(write(long(i)));
        await source.idle();
        expect(names(webhook.deliveries)).toEqual([[long(1)], [long(2)], [long(3)], [long(4)]]);
        expect(source.stats()).toMatchObject({ emitted: 4, delivered: 4, pending: 0 });
      });
    } finally {
      await webhook.close();
    }
  });
});

describe('local services', () => {
  test("given spaceReclaimIntervalMs, then Azurite's space reclaim runs at that interval instead of every ten minutes", async () => {
    const sweeps = (log: string) => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('Start next mark and sweep').length - 1 : 0);
    const often = path.join(dir, 'azurite-often.log');
    const usual = path.join(dir, 'azurite-usual.log');
    const fast = await startAzurite({ blobPort: 0, queuePort: 0, spaceReclaimIntervalMs: 200, debugLog: often });
    const plain = await startAzurite({ blobPort: 0, queuePort: 0, debugLog: usual });
    try {
      const deadline = Date.now() + 10_000;
      while (sweeps(often) < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(sweeps(often)).toBeGreaterThanOrEqual(4);
      // The same time for the one left alone: its sweep at start, and none since.
      expect(sweeps(usual)).toBe(1);
    } finally {
      await fast.stop();
      await plain.stop();
    }
  });

  test('given the Cosmos DB emulator server over HTTP, then a CosmosClient creates, upserts and queries', async () => {
    const cosmos = await startCosmosServer({ port: 0 });
    try {
      const client = new CosmosClient({ endpoint: cosmos.endpoint, key: COSMOS_EMULATOR_KEY, connectionPolicy: { enableEndpointDiscovery: false } });
      const { database } = await client.databases.createIfNotExists({ id: 'vna' });
      const { container } = await database.containers.createIfNotExists({ id: 'ingestions', partitionKey: { paths: ['/id'] } });
      await container.items.upsert({ id: 'a', status: 'cataloged' });
      await container.items.upsert({ id: 'b', status: 'failed' });
      const { resources } = await container.items
        .query<{ id: string }>({ query: 'SELECT c.id FROM c WHERE c.status = @s', parameters: [{ name: '@s', value: 'failed' }] })
        .fetchAll();
      expect(resources.map((r) => r.id)).toEqual(['b']);
      client.dispose();
    } finally {
      await cosmos.stop();
    }
  });

  test('given a queue port that is taken, then startAzurite fails with a message naming Azurite and its output', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(startAzurite({ blobPort: 0, queuePort: port, timeoutMs: 15000 })).rejects.toThrow(/Azurite could not start/);
    } finally {
      blocker.close();
    }
  });
});
