/**
 * What Event Grid does in Azure for the landing container, locally.
 *
 * Azurite's blob service runs on an internal port; this module is a reverse proxy on the public
 * blob port that passes every request and response through unchanged (streamed, never
 * buffered) and, when Azurite commits a write to or a delete from a watched container, emits
 * `Microsoft.Storage.BlobCreated` / `BlobDeleted`. Events are delivered to the function host's
 * Event Grid webhook in batches, as an Event Grid subscription's `maxEventsPerBatch` and
 * `preferredBatchSizeInKilobytes` ask (one event a POST by default, as in Azure), with bounded
 * concurrency, exponential backoff on non-2xx or connection errors (a batch is sent again whole),
 * and a dead-letter file after the last attempt: the same at-least-once contract the functions
 * get in Azure. Events pending at stop() are dropped (the reconciliation
 * scan re-emits what is in the container on the next start).
 */
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { setMaxListeners } from 'events';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';

import { BlobStorageEvent, BlobWrite, buildBlobEvent, classifyBlobExchange, Sequencer } from './blobEvents';
import { AZURITE_ACCOUNT, AZURITE_KEY } from './emulators';
import { closeServer, delay, listen } from './net';

/**
 * Not part of the storage API: `GET <blob port>/_local/events` answers the stats as JSON and
 * `GET /_local/events/idle?timeoutMs=` answers once nothing is pending (504 on timeout).
 * Azurite would read `_local` as an account name, so nothing real is shadowed.
 */
export const CONTROL_PATH = '/_local/events';

/** A delivery that took longer than `deliveryTimeoutMs`. */
class DeliveryTimeout extends Error {
  constructor() {
    super('the delivery timed out');
    this.name = 'DeliveryTimeout';
  }
}

export type EventSourceLog = (level: 'debug' | 'information' | 'warning' | 'error', message: string) => void;

export interface EventSourceOptions {
  /** Azurite's blob service, internal: `http://127.0.0.1:<port>`. */
  upstreamUrl: string;
  /** Public blob port of the proxy; default 10000, 0 picks a free port. */
  port?: number;
  host?: string;
  account?: string;
  /** Containers whose blobs raise events (the landing containers). */
  sourceContainers: string[];
  /** The host's webhook base, e.g. `http://127.0.0.1:7071`; may be given later with setWebhookBaseUrl. */
  webhookBaseUrl?: string;
  functionName?: string;
  /** Deliveries in flight at once; default 16. */
  concurrency?: number;
  /**
   * Events per delivery at most (an Event Grid subscription's `maxEventsPerBatch`, 1-5000);
   * default 1. As Event Grid does, a delivery never waits for a batch to fill: it takes what
   * is queued when a delivery slot frees up.
   */
  maxEventsPerBatch?: number;
  /**
   * A batch takes no further event once its body would pass this size (the subscription's
   * `preferredBatchSizeInKilobytes`, 1-1024); an event larger than that goes alone. Default 64.
   */
  preferredBatchSizeInKilobytes?: number;
  /** Attempts per event before dead-lettering; default 30. */
  maxAttempts?: number;
  initialBackoffMs?: number;
  /** Upper bound of the wait between attempts; default 4000 ms. */
  maxBackoffMs?: number;
  /** How long one delivery may take before it counts as failed (Event Grid: 30 s). */
  deliveryTimeoutMs?: number;
  /** JSON-lines file that receives dead-lettered events; default: none (counted only). */
  deadLetterFile?: string;
  /**
   * The blob endpoint (with the account) that event URLs name; default this proxy's own. Set it
   * when the functions reach storage through something in front of this proxy (a fault proxy).
   */
  eventBlobEndpoint?: string;
  log?: EventSourceLog;
}

export interface EventSourceStats {
  emitted: number;
  delivered: number;
  /** Failed attempts that were followed by another attempt, counted per event (a batch's retry counts each of its events). */
  retried: number;
  deadLettered: number;
  /** Emitted, neither delivered nor dead-lettered yet. */
  pending: number;
}

export interface BlobEventSource {
  port: number;
  /** Public blob endpoint with the account: `http://<host>:<port>/devstoreaccount1`. */
  blobEndpoint: string;
  stats(): EventSourceStats;
  /** Resolves when nothing is pending (also right away when nothing was emitted). */
  idle(): Promise<void>;
  setWebhookBaseUrl(url: string): void;
  /** Queues a BlobCreated/BlobDeleted for a write seen elsewhere (used by the reconciliation scan). */
  emit(write: BlobWrite): void;
  /** Closes the proxy and drops what is pending. Idempotent. */
  stop(): Promise<void>;
}

/** `value` held to [min, max] when it is a whole number; `otherwise` when it is not (NaN from a bad setting included). */
function wholeIn(value: number | undefined, min: number, max: number, otherwise: number): number {
  return Number.isInteger(value) ? Math.min(max, Math.max(min, value as number)) : otherwise;
}

/** Starts the proxy. Throws when the port is in use. */
export async function startEventSource(options: EventSourceOptions): Promise<BlobEventSource> {
  const account = options.account ?? AZURITE_ACCOUNT;
  const hostName = options.host ?? '127.0.0.1';
  const upstream = new URL(options.upstreamUrl);
  const functionName = options.functionName ?? 'ingestReplicatedFile';
  const concurrency = Math.max(1, options.concurrency ?? 16);
  const maxEventsPerBatch = wholeIn(options.maxEventsPerBatch, 1, 5000, 1);
  const preferredBatchBytes = wholeIn(options.preferredBatchSizeInKilobytes, 1, 1024, 64) * 1024;
  const maxAttempts = Math.max(1, options.maxAttempts ?? 30);
  const initialBackoffMs = options.initialBackoffMs ?? 200;
  const maxBackoffMs = options.maxBackoffMs ?? 4000;
  const deliveryTimeoutMs = options.deliveryTimeoutMs ?? 30000;
  const log: EventSourceLog = options.log ?? (() => undefined);
  const sequencer = new Sequencer();
  // Kept-alive connections to Azurite, each given up before Azurite's own keep-alive time runs out
  // (Node's agent honours the server's `Keep-Alive: timeout` hint, less a second, only when its
  // own timeout is set): without it, a request could land on a connection Azurite was closing,
  // and a burst of uploads saw "socket hang up".
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 60_000 });
  // Deliveries reuse their connections to the host, with node:http (cheaper per request than
  // fetch), and give each up before the host's keep-alive time runs out, as above.
  const webhookAgent = new http.Agent({ keepAlive: true, maxSockets: concurrency, timeout: 60_000 });
  /** Deliveries in flight, ended at stop. */
  const inFlight = new Set<http.ClientRequest>();
  /**
   * POSTs one delivery; resolves with the status once the answer is read to its end, rejects
   * with DeliveryTimeout after `timeoutMs`. One timer a delivery, cleared when it ends: a
   * timeout signal combined with the stop signal (AbortSignal.any) took about 45 µs of CPU a
   * delivery here (a timer 0.4-2 µs), and kept its timer and a listener on the stop signal for
   * the whole timeout.
   */
  const post = (url: URL, headers: Record<string, string>, body: string, timeoutMs: number) =>
    new Promise<number>((resolve, reject) => {
      const request = http.request(url, { method: 'POST', agent: webhookAgent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => settled(() => resolve(res.statusCode ?? 0)));
        res.on('error', (err) => fail(err));
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        request.destroy(new DeliveryTimeout());
      }, timeoutMs);
      const settled = (then: () => void) => {
        clearTimeout(timer);
        inFlight.delete(request);
        then();
      };
      // Whichever of the request and its answer reports the destroyed socket first, a timeout is told as one.
      const fail = (err: Error) => settled(() => reject(timedOut ? new DeliveryTimeout() : err));
      inFlight.add(request);
      request.on('error', fail);
      request.end(body);
    });
  /** The webhook's URL for the base it was given: parsed once, checked to be http. */
  let webhookTarget: { base: string; url: URL } | undefined;
  const webhookUrl = (base: string): URL => {
    if (webhookTarget?.base !== base) {
      const url = new URL(`${base.replace(/\/+$/, '')}/runtime/webhooks/eventgrid?functionName=${encodeURIComponent(functionName)}`);
      if (url.protocol !== 'http:') throw new Error(`the local event source delivers over http only, not to ${url.protocol}`);
      webhookTarget = { base, url };
    }
    return webhookTarget.url;
  };
  const stopController = new AbortController();
  // Every waiting delivery listens for stop; 16+ of them are expected, not a leak.
  setMaxListeners(0, stopController.signal);
  const counters = { emitted: 0, delivered: 0, retried: 0, deadLettered: 0, dropped: 0 };
  const queue: BlobWrite[] = [];
  let active = 0;
  let idleWaiters: (() => void)[] = [];
  let webhookBase = options.webhookBaseUrl;
  let webhookReady: () => void = () => undefined;
  let webhookSet = new Promise<void>((resolve) => (webhookReady = resolve));
  if (webhookBase) webhookReady();

  const pending = () => counters.emitted - counters.delivered - counters.deadLettered - counters.dropped;
  const settle = () => {
    if (pending() > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    waiters.forEach((w) => w());
  };

  let properties: BlobServiceClient | undefined;
  const blobProperties = () =>
    (properties ??= new BlobServiceClient(`${upstream.origin}/${account}`, new StorageSharedKeyCredential(account, AZURITE_KEY)));

  let blobEndpoint = '';

  const complete = async (write: BlobWrite): Promise<BlobWrite> => {
    if (write.api === 'DeleteBlob' || (write.contentLength !== undefined && write.contentType !== undefined)) return write;
    try {
      const props = await blobProperties().getContainerClient(write.container).getBlobClient(write.blobName).getProperties();
      return {
        ...write,
        contentLength: write.contentLength ?? props.contentLength ?? 0,
        contentType: write.contentType ?? props.contentType ?? 'application/octet-stream',
        blobType: props.blobType ?? write.blobType,
      };
    } catch {
      // Gone or replaced since: the event still says what happened; the function reads the blob itself.
      return { ...write, contentLength: write.contentLength ?? 0, contentType: write.contentType ?? 'application/octet-stream' };
    }
  };

  const deadLetter = (event: BlobStorageEvent, attempts: number, outcome: string, status: number | undefined, publishTime: string) => {
    counters.deadLettered += 1;
    log('warning', `event ${event.id} dead-lettered after ${attempts} attempt(s): ${outcome}`);
    if (!options.deadLetterFile) return;
    const record = {
      ...event,
      deadLetterReason: 'MaxDeliveryAttemptsExceeded',
      deliveryAttempts: attempts,
      lastDeliveryOutcome: outcome,
      lastHttpStatusCode: status ?? 0,
      publishTime,
      lastDeliveryAttemptTime: new Date().toISOString(),
    };
    try {
      fs.mkdirSync(path.dirname(options.deadLetterFile), { recursive: true });
      fs.appendFileSync(options.deadLetterFile, `${JSON.stringify(record)}\n`);
    } catch (err) {
      log('error', `cannot write the dead-letter file: ${(err as Error).message}`);
    }
  };

  /**
   * Sends one batch (the events, and each one's JSON) until the host takes it, or dead-letters
   * each of its events after the last attempt; counts each event as delivered, dead-lettered or
   * dropped at stop.
   */
  const deliverBatch = async (events: BlobStorageEvent[], json: string[]): Promise<void> => {
    const publishTime = new Date().toISOString();
    const body = `[${json.join(',')}]`;
    const first = events[0] as BlobStorageEvent;
    let outcome = 'not attempted';
    let status: number | undefined;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (stopController.signal.aborted) {
        counters.dropped += events.length;
        return;
      }
      if (!webhookBase) {
        await Promise.race([webhookSet, new Promise((resolve) => stopController.signal.addEventListener('abort', resolve, { once: true }))]);
        if (stopController.signal.aborted) {
          counters.dropped += events.length;
          return;
        }
      }
      try {
        status = await post(
          webhookUrl(webhookBase as string),
          {
            'content-type': 'application/json',
            'aeg-event-type': 'Notification',
            'aeg-delivery-count': String(attempt - 1),
            'aeg-data-version': first.dataVersion,
            'aeg-metadata-version': first.metadataVersion,
            'aeg-subscription-name': 'LOCAL-BLOB-EVENTS',
          },
          body,
          deliveryTimeoutMs,
        );
        if (status >= 200 && status < 300) {
          counters.delivered += events.length;
          return;
        }
        outcome = `HTTP ${status}`;
      } catch (err) {
        status = undefined;
        outcome = err instanceof DeliveryTimeout ? 'timed out' : `connection failed (${(err as Error).message})`;
      }
      if (attempt === maxAttempts || stopController.signal.aborted) break;
      counters.retried += events.length;
      const wait = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (attempt - 1)) * (0.8 + Math.random() * 0.4);
      log('debug', `${events.length === 1 ? `event ${first.id}` : `a batch of ${events.length} events from ${first.id}`}: attempt ${attempt} failed (${outcome}); next in ${Math.round(wait)} ms`);
      await delay(wait, stopController.signal);
    }
    if (stopController.signal.aborted) {
      counters.dropped += events.length;
      return;
    }
    for (const event of events) deadLetter(event, maxAttempts, outcome, status, publishTime);
  };

  /**
   * Delivers the writes taken off the queue: their events in batches of at most the preferred
   * size (an event larger than it alone), one batch after the other.
   */
  const deliver = async (writes: BlobWrite[]): Promise<void> => {
    let accounted = 0;
    try {
      const completed = await Promise.all(writes.map(complete));
      const events = completed.map((write) => buildBlobEvent(write, { blobEndpoint: options.eventBlobEndpoint ?? blobEndpoint, sequencer: sequencer.next() }));
      let batch: BlobStorageEvent[] = [];
      let json: string[] = [];
      let bytes = 1;
      for (const event of events) {
        const text = JSON.stringify(event);
        const size = Buffer.byteLength(text) + 1;
        if (batch.length > 0 && bytes + size > preferredBatchBytes) {
          await deliverBatch(batch, json);
          accounted += batch.length;
          batch = [];
          json = [];
          bytes = 1;
        }
        batch.push(event);
        json.push(text);
        bytes += size;
      }
      await deliverBatch(batch, json);
      accounted += batch.length;
    } catch (err) {
      counters.dropped += writes.length - accounted;
      log('error', `event delivery crashed: ${(err as Error).message}`);
    }
  };

  const pump = () => {
    while (active < concurrency && queue.length > 0) {
      const writes = queue.splice(0, maxEventsPerBatch);
      active += 1;
      void deliver(writes).finally(() => {
        active -= 1;
        settle();
        pump();
      });
    }
  };

  const emit = (write: BlobWrite) => {
    if (stopController.signal.aborted) return;
    counters.emitted += 1;
    queue.push(write);
    pump();
  };

  const server = http.createServer((req, res) => {
    if (req.url?.startsWith(CONTROL_PATH)) {
      serveControl(req, res);
      return;
    }
    const proxied = http.request(
      {
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (up) => {
        const status = up.statusCode ?? 502;
        // Decided on the response headers, before the client sees the answer: once an upload
        // resolves for the client, its event is already counted (stats stay consistent).
        const write = classifyBlobExchange(
          { method: req.method ?? 'GET', url: req.url ?? '/', requestHeaders: req.headers, status, responseHeaders: up.headers },
          account,
          options.sourceContainers,
        );
        if (write) emit(write);
        res.writeHead(status, up.statusMessage, up.rawHeaders);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    proxied.on('error', (err) => {
      if (!res.headersSent) {
        // 503, as the storage service answers when it cannot serve: the SDK's retry policy retries it.
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end(`blob proxy: Azurite did not answer (${err.message})`);
      } else {
        res.destroy();
      }
    });
    res.on('close', () => {
      if (!res.writableFinished) proxied.destroy();
    });
    req.pipe(proxied);
  });
  const idle = () => (pending() <= 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve)));
  const stats = (): EventSourceStats => ({
    emitted: counters.emitted,
    delivered: counters.delivered,
    retried: counters.retried,
    deadLettered: counters.deadLettered,
    pending: pending(),
  });

  // Test processes other than the one running the stack can only reach it over HTTP.
  const serveControl = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://local');
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats()));
    };
    if (url.pathname === `${CONTROL_PATH}/idle`) {
      const timeoutMs = Number(url.searchParams.get('timeoutMs') ?? 60000);
      const timer = setTimeout(() => {
        res.writeHead(504, { 'content-type': 'application/json' });
        res.end(JSON.stringify(stats()));
      }, timeoutMs);
      void idle().then(() => {
        clearTimeout(timer);
        if (!res.headersSent) answer();
      });
      return;
    }
    answer();
  };

  // Large uploads stream for as long as they need.
  server.requestTimeout = 0;
  const port = await listen(server, options.port ?? 10000, hostName, 'blob proxy (event source)');
  blobEndpoint = `http://${hostName}:${port}/${account}`;

  let stopping: Promise<void> | undefined;
  return {
    port,
    blobEndpoint,
    stats,
    idle,
    setWebhookBaseUrl(url: string) {
      webhookBase = url;
      webhookReady();
    },
    emit,
    stop() {
      stopping ??= (async () => {
        stopController.abort();
        for (const request of inFlight) request.destroy(new Error('the event source stopped'));
        counters.dropped += queue.length;
        queue.length = 0;
        await closeServer(server);
        agent.destroy();
        webhookAgent.destroy();
        if (counters.dropped > 0) log('warning', `${counters.dropped} undelivered event(s) dropped at stop`);
        // Let in-flight deliveries notice the abort, then release every idle() waiter.
        await delay(0);
        const waiters = idleWaiters;
        idleWaiters = [];
        waiters.forEach((w) => w());
        webhookSet = Promise.resolve();
      })();
      return stopping;
    },
  };
}

export interface ReconcileOptions {
  container: string;
  /** Only blobs whose names start with this. */
  prefix?: string;
  abortSignal?: AbortSignal;
}

/**
 * Emits a BlobCreated (api PutBlob) for every blob already in the container, as if each had just
 * been written: how a fresh index catches up with a landing container that was filled earlier.
 * Returns the number of events emitted. Safe to repeat: ingestion is idempotent per blob version.
 */
export async function emitExistingBlobs(source: BlobEventSource, options: ReconcileOptions): Promise<number> {
  const service = new BlobServiceClient(source.blobEndpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  const container = service.getContainerClient(options.container);
  let count = 0;
  for await (const blob of container.listBlobsFlat({ prefix: options.prefix, abortSignal: options.abortSignal })) {
    source.emit({
      eventType: 'Microsoft.Storage.BlobCreated',
      api: 'PutBlob',
      container: options.container,
      blobName: blob.name,
      clientRequestId: 'reconciliation-scan',
      requestId: '',
      eTag: blob.properties.etag,
      contentLength: blob.properties.contentLength ?? 0,
      contentType: blob.properties.contentType ?? 'application/octet-stream',
      blobType: blob.properties.blobType ?? 'BlockBlob',
    });
    count += 1;
  }
  return count;
}
