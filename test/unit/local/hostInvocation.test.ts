/**
 * The local host invokes functions through the programming model that @azure/functions
 * registers, as the Node.js worker does: the library builds the arguments and the response,
 * the app's hooks run around each invocation and at start and stop, and host.json's
 * functionTimeout and HTTP concurrency limits apply.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { type FunctionHost, parseFunctionTimeout, readHostJson, startHost } from '../../../local/host';
import { DEFAULT_QUEUE_SETTINGS } from '../../../local/queueTriggers';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));

/** The app notes what its hooks and functions saw in the journal file. */
const app = (journalFile: string) => `
const { app, HttpResponse } = require(${functionsLib});
const fs = require('fs');
const journal = ${JSON.stringify(journalFile)};
const note = (line) => fs.appendFileSync(journal, line + '\\n');

app.hook.appStart((context) => { context.hookData.startedBy = 'appStart'; note('appStart ' + typeof context.hookData); });
app.hook.appTerminate((context) => note('appTerminate ' + context.hookData.startedBy));
app.hook.preInvocation((context) => {
  if (context.invocationContext.functionName === 'hooked') context.inputs = [{ replaced: true }];
});
app.hook.postInvocation((context) => {
  if (context.invocationContext.functionName === 'hooked') context.result = { jsonBody: { seen: context.inputs[0], result: context.result } };
});

app.http('hooked', { methods: ['GET'], authLevel: 'anonymous', handler: async (input) => ({ body: 'from the handler' }) });

app.http('cookies', {
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: async () => new HttpResponse({
    status: 202,
    headers: { 'x-kind': 'response' },
    cookies: [{ name: 'a', value: '1', path: '/api', httpOnly: true, sameSite: 'Strict' }, { name: 'b', value: '2', maxAge: 60, secure: true }],
    jsonBody: { ok: true },
  }),
});

app.http('notAResponse', { methods: ['GET'], authLevel: 'anonymous', handler: async () => 'a string is not an HTTP response' });

// Held requests wait until a 'gate' event opens the gate (the Event Grid webhook is not throttled).
let running = 0;
let peak = 0;
let open = false;
let waiters = [];
app.http('held', {
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: async () => {
    running += 1;
    peak = Math.max(peak, running);
    if (!open) await new Promise((r) => waiters.push(r));
    running -= 1;
    return { jsonBody: { peak } };
  },
});
app.eventGrid('gate', {
  handler: async (event) => {
    open = event.data.open;
    if (open) { waiters.forEach((r) => r()); waiters = []; peak = 0; }
  },
});

// Each event of a delivery waits, up to 1.5 s, until all of its batch have arrived (data.of):
// they all succeed only if the host runs a delivery's events at once.
const arrived = new Map();
app.eventGrid('together', {
  handler: async (event) => {
    if (event.data.fail) throw new Error('this event fails');
    arrived.set(event.data.batch, (arrived.get(event.data.batch) || 0) + 1);
    const deadline = Date.now() + 1500;
    while (arrived.get(event.data.batch) < event.data.of) {
      if (Date.now() > deadline) throw new Error('the rest of the batch never came');
      await new Promise((r) => setTimeout(r, 10));
    }
    note('together ' + event.id);
  },
});

app.eventGrid('onEvent', {
  handler: async (event, context) => {
    note('event ' + JSON.stringify({ id: event.id, methodName: context.triggerMetadata.sys.methodName, subject: context.triggerMetadata.subject }));
    if (event.data && event.data.sleepMs) await new Promise((r) => setTimeout(r, event.data.sleepMs));
  },
});
`;

interface Logged {
  level: string;
  functionName: string;
  message: string;
}

let dir: string;
let journal: string;
let host: FunctionHost;
const logs: Logged[] = [];
const journalLines = () => fs.readFileSync(journal, 'utf8').split('\n').filter(Boolean);
const executions = (name: string) => logs.filter((l) => l.functionName === name && l.message.startsWith(`Executing 'Functions.${name}'`)).length;

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function setGate(open: boolean): Promise<void> {
  const event = { id: `gate-${Date.now()}`, subject: '/gate', eventType: 'Test.Gate', eventTime: new Date().toISOString(), dataVersion: '1', data: { open } };
  const res = await fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=gate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
    body: JSON.stringify([event]),
  });
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-invocation-'));
  journal = path.join(dir, 'journal.txt');
  fs.writeFileSync(journal, '');
  fs.mkdirSync(path.join(dir, 'functions'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'functions/*.js' }));
  fs.writeFileSync(
    path.join(dir, 'host.json'),
    JSON.stringify({ version: '2.0', functionTimeout: '00:00:02', extensions: { http: { routePrefix: 'api', maxConcurrentRequests: 2, maxOutstandingRequests: 3 } } }),
  );
  fs.writeFileSync(path.join(dir, 'functions', 'app.js'), app(journal));
  host = await startHost({ projectRoot: dir, port: 0, logSink: (level, functionName, message) => logs.push({ level, functionName, message }) });
});

afterAll(async () => {
  await host?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('invocation through the library', () => {
  test('given preInvocation and postInvocation hooks, then the handler gets the inputs a hook set and the client gets the result a hook set', async () => {
    const res = await fetch(`${host.url}/api/hooked`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ seen: { replaced: true }, result: { body: 'from the handler' } });
  });

  test('given an HttpResponse with cookies and jsonBody, then status, headers, cookies and body reach the client', async () => {
    const res = await fetch(`${host.url}/api/cookies`);
    expect(res.status).toBe(202);
    expect(res.headers.get('x-kind')).toBe('response');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/api; HttpOnly; SameSite=Strict', 'b=2; Max-Age=60; Secure']);
    expect(await res.json()).toEqual({ ok: true });
  });

  test('given a handler that returns something that is not an HTTP response, then 500 and the failure is logged', async () => {
    const res = await fetch(`${host.url}/api/notAResponse`);
    expect(res.status).toBe(500);
    expect(logs.some((l) => l.functionName === 'notAResponse' && l.level === 'error' && /Failed/.test(l.message))).toBe(true);
  });

  test('given an Event Grid event, then the library hands the function the event and the trigger metadata with camel-cased keys', async () => {
    const event = { id: 'e-1', subject: '/s/e-1', eventType: 'Test.Happened', eventTime: new Date().toISOString(), dataVersion: '1', data: {} };
    const res = await fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=onEvent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
      body: JSON.stringify([event]),
    });
    expect(res.status).toBe(200);
    expect(journalLines()).toContain(`event ${JSON.stringify({ id: 'e-1', methodName: 'onEvent', subject: '/s/e-1' })}`);
  });
});

describe('Event Grid deliveries of several events', () => {
  const deliver = (events: object[]) =>
    fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=together`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
      body: JSON.stringify(events),
    });
  const event = (id: string, data: object) => ({ id, subject: `/s/${id}`, eventType: 'Test.Happened', eventTime: new Date().toISOString(), dataVersion: '1', data });

  test('given a delivery of three events, then the host runs the three at once, as the Event Grid extension runs a batch, and answers 2xx', async () => {
    const res = await deliver(['t-1', 't-2', 't-3'].map((id) => event(id, { batch: 'all', of: 3 })));
    expect(res.status).toBe(200);
    expect(journalLines().filter((l) => l.startsWith('together '))).toEqual(expect.arrayContaining(['together t-1', 'together t-2', 'together t-3']));
  });

  test('given a delivery in which one event fails, then the others still run to their end and the delivery is answered 500, for Event Grid to send it again', async () => {
    const res = await deliver([event('u-1', { batch: 'pair', of: 2 }), event('u-2', { fail: true }), event('u-3', { batch: 'pair', of: 2 })]);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: '1 of 3 invocations failed' });
    expect(journalLines()).toEqual(expect.arrayContaining(['together u-1', 'together u-3']));
  });
});

describe('host.json limits', () => {
  test('given an Event Grid invocation longer than functionTimeout, then it fails (500, so that Event Grid retries), the timeout is logged, and so is the late end of the handler', async () => {
    const event = { id: 'slow-1', subject: '/s', eventType: 'Test.Happened', eventTime: new Date().toISOString(), dataVersion: '1', data: { sleepMs: 3000 } };
    const res = await fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=onEvent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
      body: JSON.stringify([event]),
    });
    expect(res.status).toBe(500);
    const lateEnd = () => logs.some((l) => l.functionName === 'onEvent' && /finished after its timeout/.test(l.message));
    // Answered at the timeout, before the handler ended.
    expect(lateEnd()).toBe(false);
    expect(logs.some((l) => l.functionName === 'onEvent' && /Timeout value of 00:00:02 exceeded/.test(l.message))).toBe(true);
    expect(logs.some((l) => l.functionName === 'onEvent' && /Failed.*FunctionTimeoutError/.test(l.message))).toBe(true);
    // The handler cannot be stopped: it runs on, and its end is reported.
    await until(lateEnd);
  });

  test('given more HTTP requests than maxConcurrentRequests, then at most that many run at once and the others wait their turn', async () => {
    await setGate(false);
    const answers = [0, 1, 2].map(() => fetch(`${host.url}/api/held`));
    await until(() => executions('held') === 2);
    // The third is admitted but waits: it does not start while two are running.
    await new Promise((r) => setTimeout(r, 300));
    expect(executions('held')).toBe(2);
    await setGate(true);
    const done = await Promise.all(answers);
    expect(done.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(executions('held')).toBe(3);
    await Promise.all(done.map((r) => r.arrayBuffer()));
  });

  test('given more HTTP requests than maxOutstandingRequests, then the ones past it are answered 429 while the others are held', async () => {
    await setGate(false);
    const before = executions('held');
    const answers = [0, 1, 2, 3, 4].map(() => fetch(`${host.url}/api/held`));
    const statuses: number[] = [];
    for (const answer of answers) void answer.then((r) => statuses.push(r.status));
    await until(() => statuses.length === 2);
    expect(statuses).toEqual([429, 429]);
    expect(executions('held') - before).toBe(2);
    await setGate(true);
    const done = await Promise.all(answers);
    expect(done.map((r) => r.status).sort()).toEqual([200, 200, 200, 429, 429]);
    await Promise.all(done.map((r) => r.arrayBuffer()));
  });
});

describe('app hooks', () => {
  test('given an appStart hook, then it ran once before the first request', () => {
    expect(journalLines().filter((l) => l.startsWith('appStart'))).toEqual(['appStart object']);
  });

  test('given an appTerminate hook, then stop() runs it once, with the hook data appStart left', async () => {
    await host.stop();
    await host.stop();
    expect(journalLines().filter((l) => l.startsWith('appTerminate'))).toEqual(['appTerminate appStart']);
  });
});

describe('host.json', () => {
  test('given functionTimeout durations, then hh:mm:ss and d.hh:mm:ss are read, -1 is no limit, and anything else is refused', () => {
    expect(parseFunctionTimeout('00:10:00')).toBe(600_000);
    expect(parseFunctionTimeout('1.00:00:30')).toBe(86_430_000);
    expect(parseFunctionTimeout('00:00:01.5')).toBe(1_500);
    expect(parseFunctionTimeout('-1')).toBe(Infinity);
    for (const bad of ['10:00', '00:61:00', '00:00:00', 'ten minutes']) expect(() => parseFunctionTimeout(bad)).toThrow(/functionTimeout/);
  });

  test("given the project's host.json, then the route prefix, a ten-minute timeout, the HTTP limits and the queue settings it sets", () => {
    expect(readHostJson(path.resolve(__dirname, '..', '..', '..'))).toEqual({
      routePrefix: 'api',
      functionTimeoutMs: 600_000,
      maxConcurrentRequests: 64,
      maxOutstandingRequests: 512,
      queues: { batchSize: 16, newBatchThreshold: 8, maxDequeueCount: 5, visibilityTimeoutMs: 0, maxPollingIntervalMs: 2000, messageEncoding: 'base64' },
    });
  });

  test('given no host.json, then the defaults: prefix api, the Flex Consumption timeout and no HTTP limits', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'host-json-'));
    try {
      expect(readHostJson(empty)).toEqual({ routePrefix: 'api', functionTimeoutMs: 30 * 60_000, maxConcurrentRequests: Infinity, maxOutstandingRequests: Infinity, queues: DEFAULT_QUEUE_SETTINGS });
      fs.writeFileSync(path.join(empty, 'host.json'), JSON.stringify({ extensions: { http: { maxConcurrentRequests: 0 } } }));
      expect(() => readHostJson(empty)).toThrow(/maxConcurrentRequests/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});
