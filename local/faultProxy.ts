/**
 * A fault-injecting HTTP proxy for reliability tests: it sits between the functions and a local
 * service (Azurite's blob endpoint, the Cosmos DB emulator server), forwards every request and
 * response streamed (bodies are piped, never buffered) and, by a plan, answers some requests
 * itself with 429 or 503 in the service's own error format, delays others, or refuses every
 * connection while it is "down" (it stops listening, so clients see ECONNREFUSED as they would
 * from a stopped service).
 *
 * Decisions are drawn from a seeded generator, so a plan with a seed makes the same sequence of
 * decisions on every run (which request gets which decision still follows arrival order).
 */
import * as http from 'http';
import * as net from 'net';

import { mulberry32 } from '../bench/generate';
import { closeServer, delay, listen } from './net';

/** The error format of injected answers: Azure Storage's XML error or Cosmos DB's JSON error. */
export type FaultFlavor = 'blob' | 'cosmos';

export type FaultAction =
  /** Answered by the proxy: 429 carries Retry-After (and x-ms-retry-after-ms for Cosmos). */
  | { kind: 'status'; status: 429 | 503; retryAfterMs?: number }
  /** Forwarded after a wait drawn uniformly from [minMs, maxMs]. */
  | { kind: 'latency'; minMs: number; maxMs: number }
  /**
   * Forwarded, and the service's answer thrown away: the client's connection is dropped once the
   * service has answered, so the request took effect but the client cannot know (a lost response).
   */
  | { kind: 'dropResponse' };

export interface FaultRule {
  action: FaultAction;
  /** Share of matching requests that get the action (0 to 1); default 1. */
  probability?: number;
  /** Only every Nth matching request (counted per rule), before `probability` is applied. */
  everyNth?: number;
  /** Only requests whose method is one of these (upper case). */
  methods?: string[];
  /** Only requests whose path (with query) matches this regular expression source. */
  pathPattern?: string;
  /**
   * Not requests that carry this header (lower case), e.g. `x-ms-documentdb-isquery`: Cosmos DB
   * queries are POSTs to the same path as document creates.
   */
  unlessHeader?: string;
  /** Only while the time since the plan was set is within [fromMs, toMs). */
  window?: { fromMs: number; toMs?: number };
}

/** Plain data (it crosses process boundaries as JSON). The first rule that fires decides a request. */
export interface FaultPlan {
  seed: number;
  rules: FaultRule[];
}

export interface FaultProxyStats {
  /** Requests passed on to the target. */
  forwarded: number;
  /** Answers made by the proxy, by status. */
  throttled: number;
  unavailable: number;
  /** Requests delayed, and the total delay added. */
  delayed: number;
  delayMs: number;
  /** Requests forwarded whose answer was thrown away (dropResponse). */
  responsesDropped: number;
  /** Requests whose target did not answer (connection refused or reset upstream). */
  upstreamFailed: number;
  /** Connections refused while down is counted per down period, not per attempt. */
  downPeriods: number;
}

export interface FaultProxyOptions {
  /** `http://127.0.0.1:<port>` of the service behind the proxy. */
  target: string;
  flavor: FaultFlavor;
  /** Default 0: a free port. */
  port?: number;
  host?: string;
  /** Default: no faults (a plain pass-through proxy). */
  plan?: FaultPlan;
}

export interface FaultProxy {
  port: number;
  /** `http://<host>:<port>` */
  url: string;
  /** Replaces the plan; its time windows start now and its generator restarts from its seed. */
  setPlan(plan: FaultPlan | undefined): void;
  /**
   * Down: stops listening (new connections are refused) and drops open connections. Up: listens
   * again on the same port. Resolves once the change holds.
   */
  setDown(down: boolean): Promise<void>;
  stats(): FaultProxyStats;
  /** Closes the proxy and its connections. Idempotent. */
  stop(): Promise<void>;
}

/** A number in [0, 1) from the bench's seeded generator: the same plan draws the same faults. */
export function seededRandom(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

interface ArmedPlan {
  rules: (FaultRule & { path?: RegExp; seen: number })[];
  random: () => number;
  since: number;
}

function arm(plan: FaultPlan | undefined): ArmedPlan | undefined {
  if (!plan) return undefined;
  return {
    rules: plan.rules.map((r) => ({ ...r, path: r.pathPattern ? new RegExp(r.pathPattern) : undefined, seen: 0 })),
    random: seededRandom(plan.seed),
    since: Date.now(),
  };
}

/** The action for one request, or undefined to forward it untouched. */
function decide(plan: ArmedPlan | undefined, req: http.IncomingMessage): FaultAction | undefined {
  if (!plan) return undefined;
  const elapsed = Date.now() - plan.since;
  for (const rule of plan.rules) {
    if (rule.methods && !rule.methods.includes(req.method ?? 'GET')) continue;
    if (rule.path && !rule.path.test(req.url ?? '/')) continue;
    if (rule.unlessHeader && req.headers[rule.unlessHeader] !== undefined) continue;
    if (rule.window && (elapsed < rule.window.fromMs || (rule.window.toMs !== undefined && elapsed >= rule.window.toMs))) continue;
    rule.seen += 1;
    if (rule.everyNth && rule.seen % rule.everyNth !== 0) continue;
    // Drawn even at probability 1, so that adding a rule does not shift the others' sequence.
    const draw = plan.random();
    if (draw < (rule.probability ?? 1)) return rule.action;
  }
  return undefined;
}

function errorAnswer(flavor: FaultFlavor, status: 429 | 503, retryAfterMs: number): { headers: Record<string, string>; body: string } {
  const retryAfter = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
  if (flavor === 'cosmos') {
    const code = status === 429 ? 'TooManyRequests' : 'ServiceUnavailable';
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-ms-activity-id': '00000000-0000-0000-0000-000000000000' };
    if (status === 429) {
      headers['x-ms-retry-after-ms'] = String(retryAfterMs);
      // 3200: request rate too large (RU/s exceeded), the usual kind of 429.
      headers['x-ms-substatus'] = '3200';
    } else {
      headers['retry-after'] = retryAfter;
    }
    return { headers, body: JSON.stringify({ code, message: `fault proxy: ${code}` }) };
  }
  const code = 'ServerBusy';
  const message = status === 429 ? 'The server is busy.' : 'The server is currently unable to receive requests. Please retry your request.';
  return {
    headers: { 'content-type': 'application/xml', 'x-ms-error-code': code, 'retry-after': retryAfter, 'x-ms-version': '2025-11-05' },
    body: `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>fault proxy: ${message}</Message></Error>`,
  };
}

/** Starts the proxy. Throws when the port is in use. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const hostName = options.host ?? '127.0.0.1';
  const target = new URL(options.target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  const counters: FaultProxyStats = { forwarded: 0, throttled: 0, unavailable: 0, delayed: 0, delayMs: 0, responsesDropped: 0, upstreamFailed: 0, downPeriods: 0 };
  let plan = arm(options.plan);
  const stopController = new AbortController();
  const sockets = new Set<net.Socket>();

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, dropResponse = false) => {
    counters.forwarded += 1;
    const headers = { ...req.headers, host: `${target.hostname}:${target.port}` };
    const upstream = http.request(
      { protocol: target.protocol, hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
      (up) => {
        if (dropResponse) {
          counters.responsesDropped += 1;
          up.resume();
          up.once('end', () => res.destroy());
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.statusMessage, up.rawHeaders);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => {
      counters.upstreamFailed += 1;
      // What a client of the stopped service would see: the connection goes away.
      res.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  const server = http.createServer((req, res) => {
    const action = decide(plan, req);
    if (!action) return forward(req, res);
    if (action.kind === 'dropResponse') return forward(req, res, true);
    if (action.kind === 'latency') {
      const wait = action.minMs + Math.floor((plan?.random() ?? 0) * (action.maxMs - action.minMs + 1));
      counters.delayed += 1;
      counters.delayMs += wait;
      // The request body stays paused (unread) until it is piped on.
      void delay(wait, stopController.signal).then(() => {
        if (!req.destroyed) forward(req, res);
      });
      return;
    }
    if (action.status === 429) counters.throttled += 1;
    else counters.unavailable += 1;
    const answer = errorAnswer(options.flavor, action.status, action.retryAfterMs ?? 100);
    // The body is read and dropped, as a service does before it answers.
    req.resume();
    res.writeHead(action.status, { ...answer.headers, 'content-length': String(Buffer.byteLength(answer.body)) });
    res.end(answer.body);
  });
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.requestTimeout = 0;
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;

  const port = await listen(server, options.port ?? 0, hostName, `fault proxy for ${options.target}`);
  let down = false;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  return {
    port,
    url: `http://${hostName}:${port}`,
    setPlan(next) {
      plan = arm(next);
    },
    async setDown(next) {
      if (stopped || next === down) return;
      down = next;
      if (down) {
        counters.downPeriods += 1;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await closed;
      } else {
        await listen(server, port, hostName, `fault proxy for ${options.target}`);
      }
    },
    stats: () => ({ ...counters }),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        stopController.abort();
        if (!down) await closeServer(server);
        for (const socket of sockets) socket.destroy();
        agent.destroy();
      })();
      return stopping;
    },
  };
}
