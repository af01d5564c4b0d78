/**
 * The local host's queue triggers (local/queueTriggers.ts) against Azurite's queue service: a
 * message that keeps failing is delivered maxDequeueCount times, then moved to `-poison`; one
 * that succeeds is delivered once and deleted; a JSON message reaches the function as JSON.
 */
import { randomBytes } from 'node:crypto';

import { QueueServiceClient } from '@azure/storage-queue';

import type { RpcInvocationRequest } from '../../local/functionsCore';
import { DEFAULT_QUEUE_SETTINGS, type QueueFunction, startQueueListeners } from '../../local/queueTriggers';
import { testStack } from './stackEnv';

const CONNECTION = 'QUEUE_TRIGGER_TEST_STORAGE';

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('local queue triggers against Azurite', () => {
  const service = () => QueueServiceClient.fromConnectionString(testStack().env.AzureWebJobsStorage as string);
  beforeAll(() => {
    process.env[CONNECTION] = testStack().env.AzureWebJobsStorage;
  });

  it('given a function that always fails, then five deliveries with rising dequeue counts, then the poison queue', async () => {
    const queueName = `qt-fail-${randomBytes(4).toString('hex')}`;
    const queue = service().getQueueClient(queueName);
    await queue.createIfNotExists();
    await queue.sendMessage(Buffer.from(JSON.stringify({ n: 1 })).toString('base64'));
    const counts: number[] = [];
    const fn: QueueFunction = { name: 'failing', queueName, connection: CONNECTION, triggerKey: 't' };
    const listeners = startQueueListeners([fn], { ...DEFAULT_QUEUE_SETTINGS, maxPollingIntervalMs: 200 }, async (_f, request: Omit<RpcInvocationRequest, 'invocationId' | 'functionId'>) => {
      counts.push(Number(request.triggerMetadata?.DequeueCount?.json));
      throw new Error('always fails');
    }, () => undefined);
    try {
      const poison = service().getQueueClient(`${queueName}-poison`);
      await until('the poison message', async () => (await poison.exists()) && (await poison.peekMessages()).peekedMessageItems.length === 1);
      expect(counts).toEqual([1, 2, 3, 4, 5]);
      const [moved] = (await poison.peekMessages()).peekedMessageItems;
      expect(JSON.parse(Buffer.from(moved?.messageText ?? '', 'base64').toString())).toEqual({ n: 1 });
      expect((await queue.peekMessages()).peekedMessageItems).toHaveLength(0);
    } finally {
      await listeners.stop();
    }
  });

  it('given a function that succeeds, then one delivery, as JSON, and the message is deleted', async () => {
    const queueName = `qt-ok-${randomBytes(4).toString('hex')}`;
    const queue = service().getQueueClient(queueName);
    await queue.createIfNotExists();
    await queue.sendMessage(Buffer.from(JSON.stringify({ ok: true })).toString('base64'));
    const seen: unknown[] = [];
    const fn: QueueFunction = { name: 'ok', queueName, connection: CONNECTION, triggerKey: 't' };
    const listeners = startQueueListeners([fn], { ...DEFAULT_QUEUE_SETTINGS, maxPollingIntervalMs: 200 }, async (_f, request) => {
      seen.push(request.inputData?.[0]?.data);
    }, () => undefined);
    try {
      await until('the delivery', async () => seen.length === 1);
      await until('the deletion', async () => (await queue.getProperties()).approximateMessagesCount === 0);
      await new Promise((r) => setTimeout(r, 500));
      expect(seen).toEqual([{ json: '{"ok":true}' }]);
    } finally {
      await listeners.stop();
    }
  });
});
