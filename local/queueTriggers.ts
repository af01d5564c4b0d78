/**
 * Storage queue triggers, run the way the Functions host's queue extension runs them:
 *
 * - each queue is polled; an empty poll backs off (doubling from 100 ms) up to
 *   `extensions.queues.maxPollingInterval` (host.json; default one minute), and a message
 *   resets it;
 * - up to `batchSize` messages (default 16) are fetched at once, and more are fetched when the
 *   messages in flight drop to `newBatchThreshold` (default batchSize / 2);
 * - a fetched message stays invisible while its function runs: fetched with a lease
 *   (LOCAL_QUEUE_LEASE_SECONDS, default 10 minutes) that is renewed at half its length;
 * - success deletes the message; a failure makes it visible again after
 *   `visibilityTimeout` (default 0); a message handed out `maxDequeueCount` times (default 5)
 *   that fails again, or one that comes with a higher count (its worker crashed), goes to
 *   `<queue>-poison` and is deleted from the queue;
 * - messages are base64 (the default `messageEncoding`) or plain text (`none`); a JSON message
 *   reaches the function as an object, any other as a string, as the host hands them over.
 *
 * A worker that dies with messages in flight leaves them invisible until their lease ends:
 * then they are delivered again with a higher dequeue count, as in Azure.
 */
import { QueueServiceClient } from '@azure/storage-queue';

import type { RpcInvocationRequest, RpcTypedData } from './functionsCore';

export interface QueueHostSettings {
  batchSize: number;
  newBatchThreshold: number;
  maxDequeueCount: number;
  /** Delay before a failed message is visible again. */
  visibilityTimeoutMs: number;
  maxPollingIntervalMs: number;
  messageEncoding: 'base64' | 'none';
}

export const DEFAULT_QUEUE_SETTINGS: QueueHostSettings = {
  batchSize: 16,
  newBatchThreshold: 8,
  maxDequeueCount: 5,
  visibilityTimeoutMs: 0,
  maxPollingIntervalMs: 60_000,
  messageEncoding: 'base64',
};

/** `hh:mm:ss` (seconds may have a fraction) in ms; zero allowed. */
function duration(raw: string): number {
  const m = /^(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(raw.trim());
  if (!m || Number(m[2]) > 59 || Number(m[3]) >= 60) throw new Error(`function host: host.json extensions.queues duration "${raw}" is not hh:mm:ss`);
  return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000;
}

/** Reads host.json `extensions.queues`; throws naming the bad value. */
export function queueSettingsOf(raw: Record<string, unknown> | undefined): QueueHostSettings {
  const q = raw ?? {};
  const int = (name: string, fallback: number, min: number, max: number) => {
    const v = q[name];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`function host: host.json extensions.queues.${name} must be a whole number ${min}-${max}`);
    return v;
  };
  const time = (name: string, fallback: number) => {
    const v = q[name];
    if (v === undefined) return fallback;
    if (typeof v !== 'string') throw new Error(`function host: host.json extensions.queues.${name} must be "hh:mm:ss"`);
    return duration(v);
  };
  const batchSize = int('batchSize', DEFAULT_QUEUE_SETTINGS.batchSize, 1, 32);
  const encoding = q.messageEncoding ?? 'base64';
  if (encoding !== 'base64' && encoding !== 'none') throw new Error('function host: host.json extensions.queues.messageEncoding must be "base64" or "none"');
  return {
    batchSize,
    newBatchThreshold: int('newBatchThreshold', Math.floor(batchSize / 2), 0, 1000),
    maxDequeueCount: int('maxDequeueCount', DEFAULT_QUEUE_SETTINGS.maxDequeueCount, 1, 1000),
    visibilityTimeoutMs: time('visibilityTimeout', 0),
    maxPollingIntervalMs: time('maxPollingInterval', DEFAULT_QUEUE_SETTINGS.maxPollingIntervalMs),
    messageEncoding: encoding,
  };
}

export interface QueueFunction {
  name: string;
  queueName: string;
  /** The app setting that holds the storage connection (default AzureWebJobsStorage). */
  connection: string;
  triggerKey: string;
}

export type QueueInvoke = (fn: QueueFunction, request: Omit<RpcInvocationRequest, 'invocationId' | 'functionId'>) => Promise<void>;
export type QueueLog = (level: 'information' | 'warning' | 'error', functionName: string, message: string) => void;

export interface QueueListeners {
  /** Stops fetching and waits for the messages in flight. */
  stop(): Promise<void>;
}

const MIN_POLL_MS = 100;

function queueServiceOf(connection: string): QueueServiceClient {
  const conn = process.env[connection]?.trim();
  if (!conn) throw new Error(`function host: the queue trigger's connection setting ${connection} is not set`);
  return QueueServiceClient.fromConnectionString(conn);
}

function leaseSeconds(): number {
  const raw = process.env.LOCAL_QUEUE_LEASE_SECONDS?.trim();
  if (!raw) return 600;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 7 * 24 * 3600) throw new Error(`function host: LOCAL_QUEUE_LEASE_SECONDS must be a whole number of seconds, got "${raw}"`);
  return n;
}

/** The invocation request of one message, as the queue extension sends it. */
export function queueInvocationRequest(
  fn: QueueFunction,
  text: string,
  m: { messageId: string; popReceipt: string; dequeueCount: number; insertedOn?: Date; expiresOn?: Date; nextVisibleOn?: Date },
): Omit<RpcInvocationRequest, 'invocationId' | 'functionId'> {
  let data: RpcTypedData = { string: text };
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null) data = { json: text };
  } catch {
    // Not JSON: a string.
  }
  const metadata: Record<string, unknown> = {
    QueueTrigger: text,
    Id: m.messageId,
    PopReceipt: m.popReceipt,
    DequeueCount: m.dequeueCount,
    InsertionTime: m.insertedOn?.toISOString(),
    ExpirationTime: m.expiresOn?.toISOString(),
    NextVisibleTime: m.nextVisibleOn?.toISOString(),
  };
  const triggerMetadata: Record<string, RpcTypedData> = {};
  for (const [k, v] of Object.entries(metadata)) if (v !== undefined) triggerMetadata[k] = { json: JSON.stringify(v) };
  return { inputData: [{ name: fn.triggerKey, data }], triggerMetadata };
}

/** Starts one listener per queue function. */
export function startQueueListeners(functions: QueueFunction[], settings: QueueHostSettings, invoke: QueueInvoke, log: QueueLog): QueueListeners {
  let stopped = false;
  const loops: Promise<void>[] = [];
  const lease = leaseSeconds();
  const wakers = new Set<() => void>();
  const sleep = (ms: number) => new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      wakers.delete(done);
      resolve();
    }
    wakers.add(done);
  });

  for (const fn of functions) {
    let service: QueueServiceClient;
    try {
      service = queueServiceOf(fn.connection);
    } catch (err) {
      // As the Functions host does: the function is not run, the others are.
      log('error', fn.name, `${(err as Error).message}; the function is disabled`);
      continue;
    }
    const queue = service.getQueueClient(fn.queueName);
    const poison = service.getQueueClient(`${fn.queueName}-poison`);
    const inFlight = new Set<Promise<void>>();
    const decode = (text: string) => (settings.messageEncoding === 'base64' ? Buffer.from(text, 'base64').toString('utf8') : text);

    const toPoison = async (messageText: string, messageId: string, popReceipt: string) => {
      await poison.createIfNotExists();
      await poison.sendMessage(messageText);
      await queue.deleteMessage(messageId, popReceipt);
      log('warning', fn.name, `message ${messageId} moved to ${fn.queueName}-poison after ${settings.maxDequeueCount} deliveries`);
    };

    const handle = async (m: { messageId: string; popReceipt: string; dequeueCount: number; messageText: string; insertedOn?: Date; expiresOn?: Date; nextVisibleOn?: Date }) => {
      let popReceipt = m.popReceipt;
      if (m.dequeueCount > settings.maxDequeueCount) {
        await toPoison(m.messageText, m.messageId, popReceipt);
        return;
      }
      // The lease is renewed at half its length while the function runs.
      let renewing: Promise<unknown> = Promise.resolve();
      const renew = setInterval(() => {
        renewing = queue.updateMessage(m.messageId, popReceipt, undefined, lease).then(
          (r) => (popReceipt = r.popReceipt ?? popReceipt),
          () => undefined,
        );
      }, (lease * 1000) / 2);
      let failed = false;
      try {
        await invoke(fn, queueInvocationRequest(fn, decode(m.messageText), { ...m, popReceipt }));
      } catch {
        failed = true;
      } finally {
        clearInterval(renew);
        await renewing;
      }
      if (!failed) {
        await queue.deleteMessage(m.messageId, popReceipt);
        return;
      }
      if (m.dequeueCount >= settings.maxDequeueCount) await toPoison(m.messageText, m.messageId, popReceipt);
      else await queue.updateMessage(m.messageId, popReceipt, undefined, Math.round(settings.visibilityTimeoutMs / 1000));
    };

    const loop = async () => {
      let idleMs = MIN_POLL_MS;
      let created = false;
      while (!stopped) {
        try {
          if (!created) {
            await queue.createIfNotExists();
            created = true;
          }
          const room = settings.batchSize - inFlight.size;
          if (inFlight.size > settings.newBatchThreshold || room <= 0) {
            await Promise.race(inFlight);
            continue;
          }
          const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: Math.min(32, room), visibilityTimeout: lease });
          if (receivedMessageItems.length === 0) {
            await sleep(idleMs);
            idleMs = Math.min(settings.maxPollingIntervalMs, idleMs * 2);
            continue;
          }
          idleMs = MIN_POLL_MS;
          for (const m of receivedMessageItems) {
            const p: Promise<void> = handle(m)
              .catch((err: unknown) => log('error', fn.name, `queue message ${m.messageId}: ${(err as Error).message}`))
              .finally(() => inFlight.delete(p));
            inFlight.add(p);
          }
        } catch (err) {
          if (stopped) break;
          log('warning', fn.name, `polling ${fn.queueName} failed: ${(err as Error).message}`);
          await sleep(Math.min(settings.maxPollingIntervalMs, 1000));
        }
      }
      await Promise.all(inFlight);
    };
    log('information', fn.name, `queue trigger listening on ${fn.queueName}`);
    loops.push(loop());
  }

  return {
    async stop() {
      stopped = true;
      for (const wake of [...wakers]) wake();
      await Promise.all(loops);
    },
  };
}
