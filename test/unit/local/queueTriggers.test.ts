import { DEFAULT_QUEUE_SETTINGS, queueInvocationRequest, queueSettingsOf } from '../../../local/queueTriggers';

describe('queue trigger settings (host.json extensions.queues)', () => {
  it('given none, then the Functions host defaults', () => {
    expect(queueSettingsOf(undefined)).toEqual(DEFAULT_QUEUE_SETTINGS);
    expect(DEFAULT_QUEUE_SETTINGS).toMatchObject({ batchSize: 16, newBatchThreshold: 8, maxDequeueCount: 5, visibilityTimeoutMs: 0, maxPollingIntervalMs: 60_000, messageEncoding: 'base64' });
  });

  it('given values, then they are read; newBatchThreshold defaults to half the batch', () => {
    expect(queueSettingsOf({ batchSize: 4, maxPollingInterval: '00:00:02', visibilityTimeout: '00:00:30', maxDequeueCount: 3, messageEncoding: 'none' })).toEqual({
      batchSize: 4, newBatchThreshold: 2, maxDequeueCount: 3, visibilityTimeoutMs: 30_000, maxPollingIntervalMs: 2000, messageEncoding: 'none',
    });
  });

  it.each([
    [{ batchSize: 64 }, /batchSize/],
    [{ maxDequeueCount: 0 }, /maxDequeueCount/],
    [{ maxPollingInterval: '2s' }, /hh:mm:ss/],
    [{ messageEncoding: 'utf8' }, /messageEncoding/],
  ])('given %j, then an error naming it', (raw, message) => {
    expect(() => queueSettingsOf(raw)).toThrow(message);
  });
});

describe('queue invocation request', () => {
  const fn = { name: 'f', queueName: 'q', connection: 'AzureWebJobsStorage', triggerKey: 'queueTrigger0' };
  const meta = { messageId: 'm1', popReceipt: 'p1', dequeueCount: 3, insertedOn: new Date('2026-01-01T00:00:00Z') };

  it('given a JSON message, then the trigger gets it as JSON and the metadata names the dequeue count', () => {
    const r = queueInvocationRequest(fn, '{"a":1}', meta);
    expect(r.inputData).toEqual([{ name: 'queueTrigger0', data: { json: '{"a":1}' } }]);
    expect(r.triggerMetadata?.DequeueCount).toEqual({ json: '3' });
    expect(r.triggerMetadata?.Id).toEqual({ json: '"m1"' });
    expect(r.triggerMetadata?.InsertionTime).toEqual({ json: '"2026-01-01T00:00:00.000Z"' });
  });

  it('given plain text, then a string', () => {
    expect(queueInvocationRequest(fn, 'hello', meta).inputData).toEqual([{ name: 'queueTrigger0', data: { string: 'hello' } }]);
    expect(queueInvocationRequest(fn, '42', meta).inputData).toEqual([{ name: 'queueTrigger0', data: { string: '42' } }]);
  });
});
