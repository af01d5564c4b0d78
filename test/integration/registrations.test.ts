/**
 * The project's own function files, loaded as the Node.js worker loads them (the package.json
 * `main` glob over dist), register exactly the triggers, routes, methods and auth levels that
 * Azure must expose: a missing, renamed or extra function, or a route or auth level that
 * drifts, changes what is public.
 */
import * as path from 'path';

import { FunctionHost, RegisteredFunction, startHost } from '../../local/host';

const projectRoot = path.resolve(__dirname, '..', '..');

// authLevel is the Functions host's key check: anonymous everywhere, because every route but
// health checks a bearer token and an app role itself (shared/auth; test/integration/auth.test.ts).
const anonymousGet = (name: string, route: string): RegisteredFunction => ({ name, trigger: 'httpTrigger', route, methods: ['GET'], authLevel: 'anonymous' });

const EXPECTED: RegisteredFunction[] = [
  { name: 'ingestReplicatedFile', trigger: 'eventGridTrigger' },
  // The ANQ side: diffs the replication target's snapshots and publishes file events.
  { name: 'anqSnapshotWatcher', trigger: 'timerTrigger', schedule: '0 */1 * * * *' },
  // The analytics export (issue 16): Parquet snapshots of the research catalog, daily by default.
  { name: 'exportParquet', trigger: 'timerTrigger', schedule: process.env.PARQUET_EXPORT_SCHEDULE?.trim() || '0 0 2 * * *' },
  anonymousGet('health', 'health'),
  // Identified data (source paths, errors): Operations.Read, unlike the research routes.
  anonymousGet('ingestions', 'ingestions'),
  anonymousGet('audit', 'audit'),
  anonymousGet('qidoStudies', 'dicomweb/studies'),
  anonymousGet('qidoStudySeries', 'dicomweb/studies/{study}/series'),
  anonymousGet('qidoSeries', 'dicomweb/series'),
  anonymousGet('qidoStudySeriesInstances', 'dicomweb/studies/{study}/series/{series}/instances'),
  anonymousGet('qidoStudyInstances', 'dicomweb/studies/{study}/instances'),
  anonymousGet('qidoInstances', 'dicomweb/instances'),
  // WADO-RS over the research copies (Research.Read, like QIDO-RS).
  anonymousGet('wadoStudy', 'dicomweb/studies/{study}'),
  anonymousGet('wadoSeries', 'dicomweb/studies/{study}/series/{series}'),
  anonymousGet('wadoInstance', 'dicomweb/studies/{study}/series/{series}/instances/{instance}'),
  anonymousGet('wadoStudyMetadata', 'dicomweb/studies/{study}/metadata'),
  anonymousGet('wadoSeriesMetadata', 'dicomweb/studies/{study}/series/{series}/metadata'),
  anonymousGet('wadoInstanceMetadata', 'dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata'),
  anonymousGet('wadoFrames', 'dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}'),
  // Catalog statistics (Research.Read; the ingestion outcomes on top for Operations.Read).
  anonymousGet('statistics', 'statistics'),
  anonymousGet('wadoBulkData', 'dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{*path}'),
  // Data sharing (Sharing.Manage): agreements, exports, and the worker of the export queue.
  { name: 'createAgreement', trigger: 'httpTrigger', route: 'agreements', methods: ['POST'], authLevel: 'anonymous' },
  anonymousGet('getAgreement', 'agreements/{id}'),
  { name: 'patchAgreement', trigger: 'httpTrigger', route: 'agreements/{id}', methods: ['PATCH'], authLevel: 'anonymous' },
  { name: 'startExport', trigger: 'httpTrigger', route: 'agreements/{id}/exports', methods: ['POST'], authLevel: 'anonymous' },
  anonymousGet('getExport', 'exports/{exportId}'),
  { name: 'shareCatalogedInstance', trigger: 'eventGridTrigger' },
  { name: 'withdrawSharedInstance', trigger: 'eventGridTrigger' },
  { name: 'exportInstance', trigger: 'queueTrigger', queueName: process.env.EXPORT_QUEUE?.trim() || 'partner-exports' },
  // Closes the live agreements' parts of past days (their manifest, then VNA.Export.Completed).
  { name: 'closeLiveParts', trigger: 'timerTrigger', schedule: '0 */5 * * * *' },
  // The backfill in Azure: start a job (Operations.Manage), read its status, one slice per tick.
  { name: 'startBackfill', trigger: 'httpTrigger', route: 'backfill', methods: ['POST'], authLevel: 'anonymous' },
  anonymousGet('getBackfill', 'backfill'),
  { name: 'backfillSlice', trigger: 'timerTrigger', schedule: process.env.BACKFILL_SCHEDULE?.trim() || '0 */1 * * * *' },
];

const byName = (a: RegisteredFunction, b: RegisteredFunction) => a.name.localeCompare(b.name);

let host: FunctionHost;

beforeAll(async () => {
  // A second host in this worker: the functions-core shim then routes registrations here, and
  // the stack's host (started by globalSetup in the parent process) is unaffected. Its appStart
  // hook would set the heap growth of this jest worker for the test files it runs next: 0 keeps V8's own.
  process.env.HEAP_GROWING_PERCENT = '0';
  host = await startHost({ projectRoot, port: 0, logSink: () => undefined });
});

afterAll(async () => {
  await host?.stop();
});

describe('registrations of the built function app', () => {
  test('given dist/functions loaded through the main glob, then exactly the expected functions are registered and no other', () => {
    expect([...host.functions].sort(byName)).toEqual([...EXPECTED].sort(byName));
  });

  test('given the app hooks, then exactly two: appStart, which sets the heap growth, and appTerminate, which flushes telemetry before the worker exits', () => {
    expect([...host.hooks].sort()).toEqual(['appStart', 'appTerminate']);
  });

  test('given the running host, then its admin listing reports the same registrations', async () => {
    const res = await fetch(`${host.url}/admin/functions`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as RegisteredFunction[]).sort(byName)).toEqual([...EXPECTED].sort(byName));
  });
});
