/** The watcher's timer function called as the host calls it: off without ANQ settings, and a bad setting fails the run with one message. */
import { InvocationContext, Timer } from '@azure/functions';

import { anqSnapshotWatcher } from '../../../functions/anqSnapshotWatcher';
import { resetWatcherDepsForTests } from '../../../shared/anq/watcherRuntime';
import { ErrorCodes } from '../../../shared/errors';

const timer: Timer = { isPastDue: false, schedule: { adjustForDST: true }, scheduleStatus: { last: '', next: '', lastUpdated: '' } };

function contextWithLog(): { context: InvocationContext; lines: string[] } {
  const lines: string[] = [];
  const context = new InvocationContext({ functionName: 'anqSnapshotWatcher', invocationId: 'i1', logHandler: (_level, ...args) => lines.push(args.map(String).join(' ')) });
  return { context, lines };
}

const saved = { ...process.env };

afterEach(() => {
  process.env = { ...saved };
  resetWatcherDepsForTests();
});

test('given no ANQ settings, then the timer run says the ANQ source is off and does nothing', async () => {
  delete process.env.ANQ_S3_ENDPOINT;
  resetWatcherDepsForTests();
  const { context, lines } = contextWithLog();
  await anqSnapshotWatcher(timer, context);
  expect(lines).toEqual(['ANQ snapshot watcher: the ANQ source is off']);
});

test('given ANQ settings without the watcher\'s topic, then the run fails with CONFIG_INVALID naming it', async () => {
  Object.assign(process.env, {
    ANQ_S3_ENDPOINT: 'https://10.0.0.4:9000',
    ANQ_CLUSTER: 'anq-west',
    ANQ_S3_BUCKET: 'replica',
    ANQ_S3_ACCESS_KEY_ID: 'AKID',
    ANQ_S3_SECRET_ACCESS_KEY: 'secret',
    ANQ_EXPORT_PATH: '/replica',
    ANQ_REST_ENDPOINT: 'https://10.0.0.4:8000',
    ANQ_REST_TOKEN: 'token',
  });
  delete process.env.ANQ_EVENTS_TOPIC_ENDPOINT;
  resetWatcherDepsForTests();
  const { context } = contextWithLog();
  await expect(anqSnapshotWatcher(timer, context)).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID, message: expect.stringContaining('ANQ_EVENTS_TOPIC_ENDPOINT is required') });
});

test('given ANQ_WATCH_MODE=notify with snapshot reads, then the run fails with CONFIG_INVALID naming ANQ_READ_FROM, before any stream is opened', async () => {
  Object.assign(process.env, {
    ANQ_S3_ENDPOINT: 'https://10.0.0.4:9000',
    ANQ_CLUSTER: 'anq-west',
    ANQ_S3_BUCKET: 'replica',
    ANQ_S3_ACCESS_KEY_ID: 'AKID',
    ANQ_S3_SECRET_ACCESS_KEY: 'secret',
    ANQ_EXPORT_PATH: '/replica',
    ANQ_REST_ENDPOINT: 'https://10.0.0.4:8000',
    ANQ_REST_TOKEN: 'token',
    ANQ_EVENTS_TOPIC_ENDPOINT: 'https://t.westeurope-1.eventgrid.azure.net/api/events',
    AzureWebJobsStorage: 'UseDevelopmentStorage=true',
    ANQ_WATCH_MODE: 'notify',
    ANQ_READ_FROM: 'snapshot',
  });
  resetWatcherDepsForTests();
  const { context } = contextWithLog();
  await expect(anqSnapshotWatcher(timer, context)).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID, message: expect.stringContaining('ANQ_WATCH_MODE=notify needs ANQ_READ_FROM=head') });
});
