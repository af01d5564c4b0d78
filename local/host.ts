/**
 * A local Azure Functions host: loads the function registrations exactly as the Node.js worker
 * does (package.json `main` glob, `@azure/functions-core` registrations), serves them the way
 * the Functions host does (HTTP triggers under the route prefix, Event Grid triggers on
 * `/runtime/webhooks/eventgrid?functionName=<name>`), and invokes them through the programming
 * model that @azure/functions registers, as the worker does (local/invocation.ts): the library
 * converts the Event Grid payloads, requests and responses, the host only carries them.
 *
 * From host.json it honours `extensions.http.routePrefix`, `extensions.http.maxConcurrentRequests`
 * (HTTP invocations past it wait), `extensions.http.maxOutstandingRequests` (HTTP requests past it,
 * running or waiting, are answered 429) and `functionTimeout` (an invocation past it fails; see
 * local/invocation.ts). It fires the appStart, preInvocation, postInvocation and appTerminate
 * hooks (appTerminate on stop(), as the worker does on shutdown).
 *
 * Like the Function App's platform CORS, it answers the preflights of allowed origins and adds
 * the CORS headers to their answers (local/cors.ts, CORS_ALLOWED_ORIGINS).
 *
 * Timer triggers fire on their NCRONTAB schedule once startTimers() is called (or `timers: true`):
 * six fields, seconds first, each `*`, a number, a range, a step (`*\/5`, `0-30/10`) or a list
 * (local/timerSchedule.ts); LOCAL_TIMER_INTERVAL_MS (or `timerIntervalMs`) fires every timer
 * at a fixed interval instead. As on Azure, a timer's run never overlaps its previous one (a
 * tick that comes while it runs is skipped) and `runOnStartup` fires it once at start.
 *
 * Storage queue triggers poll their queues as the queue extension does (local/queueTriggers.ts).
 *
 * Not emulated: function keys (admin and function levels are accepted from loopback only),
 * retry policies, log hooks, triggers other than HTTP, Event Grid, timer and queue (listed, never
 * invoked), the timer's schedule monitor (past-due runs after a restart), month and day names
 * and TimeSpan schedules (such a timer is listed and never fired, with a warning). In HTTP
 * streaming mode a request goes to the library's own listener in this process, not over HTTP as
 * from the Functions host's process (local/httpStream.ts).
 */
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';

import { applyCors, parseAllowedOrigins } from './cors';
import { parseEventGridDelivery } from './eventGridBody';
import {
  CoreFunctionMetadata,
  CoreHandler,
  installFunctionsCore,
  nativeModule,
  nativeRequire,
  ProgrammingModel,
  registeredProgrammingModel,
  RpcInvocationRequest,
  RpcTypedData,
} from './functionsCore';
import { handToWorker, streamTriggerMetadata } from './httpStream';
import { describeError, Hooks, InvocationEnvironment, invokeFunction, runHooks } from './invocation';
import { closeServer, listen } from './net';
import { DEFAULT_QUEUE_SETTINGS, type QueueFunction, type QueueHostSettings, queueSettingsOf, startQueueListeners } from './queueTriggers';
import { compareRoutes, CompiledRoute, compileRoute, matchRoute, splitPath } from './routes';
import { toRpcHttpRequest, writeRpcHttpResponse } from './rpcHttp';
import { nextOccurrence, parseTimerSchedule, TimerSchedule } from './timerSchedule';

export type LogLevel = 'trace' | 'debug' | 'information' | 'warning' | 'error' | 'critical' | 'none';

/** Receives every line the host and the functions log. functionName is '' for the host itself. */
export type LogSink = (level: LogLevel, functionName: string, message: string) => void;

export const stdoutLogSink: LogSink = (level, functionName, message) => {
  const who = functionName ? `Functions.${functionName}` : 'host';
  process.stdout.write(`${new Date().toISOString()} [${level}] ${who}: ${message}\n`);
};

export interface RegisteredFunction {
  name: string;
  /** Binding type of the trigger, e.g. `httpTrigger`, `eventGridTrigger`. */
  trigger: string;
  /** HTTP triggers: the route template (the function name when none was given). */
  route?: string;
  /** HTTP triggers: upper-case methods; empty means every method. */
  methods?: string[];
  /** HTTP triggers: anonymous, function or admin. */
  authLevel?: string;
  /** Timer triggers: the NCRONTAB schedule. */
  schedule?: string;
  /** Storage queue triggers: the queue. */
  queueName?: string;
}

export interface HostOptions {
  /** Folder with package.json; its `main` glob names the function files. */
  projectRoot: string;
  /** Default 7071; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Set on process.env before any function file loads (the functions read their settings there). */
  env?: Record<string, string>;
  logSink?: LogSink;
  /**
   * Largest request body read for an HTTP function; a larger one is answered 413 and not read.
   * Default: the FUNCTIONS_REQUEST_BODY_SIZE_LIMIT setting (bytes), as in the Functions host, else 100 MB.
   */
  maxRequestBodyBytes?: number;
  /**
   * Largest Event Grid delivery read on the webhook (never more than maxRequestBodyBytes).
   * Default: the LOCAL_EVENTGRID_MAX_BODY_BYTES setting, else 1 MiB: Event Grid events are
   * at most 1 MB each and a batch of the Event Grid schema at most 1 MB.
   */
  maxEventGridBodyBytes?: number;
  /** Wins over host.json's `functionTimeout` (tests); Infinity for none. */
  functionTimeoutMs?: number;
  /** Win over host.json's `extensions.http` values (tests); Infinity for none. */
  maxConcurrentRequests?: number;
  maxOutstandingRequests?: number;
  /** Fire timer triggers from the start (default false: call startTimers() when the settings they read are in place). */
  timers?: boolean;
  /** Fire every timer at this fixed interval instead of its schedule. Default: the LOCAL_TIMER_INTERVAL_MS setting, else the schedule. */
  timerIntervalMs?: number;
  /** Poll the storage queues of queue triggers (default true; local/queueTriggers.ts). */
  queues?: boolean;
}

/** The Functions host's default FUNCTIONS_REQUEST_BODY_SIZE_LIMIT. */
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024;
export const DEFAULT_MAX_EVENT_GRID_BODY_BYTES = 1024 * 1024;

export interface FunctionHost {
  port: number;
  /** `http://<host>:<port>` */
  url: string;
  functions: RegisteredFunction[];
  /** The app's hooks by name (appStart, appTerminate, preInvocation, postInvocation), one entry per registration. */
  hooks: string[];
  /** Starts firing the timer triggers on their schedules. Idempotent. */
  startTimers(): void;
  /**
   * Runs a timer function now, as its schedule would (waits for a run in progress first).
   * Rejects with what the invocation threw; throws when no timer function has that name.
   */
  fireTimer(name: string): Promise<void>;
  /** Closes the server and stops the timers, then runs the appTerminate hooks, as the worker does on shutdown. Idempotent. */
  stop(): Promise<void>;
}

interface LoadedFunction {
  info: RegisteredFunction;
  metadata: CoreFunctionMetadata;
  /** The trigger's binding name: the name of its input in the invocation request. */
  triggerKey: string;
  handler: CoreHandler;
  compiled?: CompiledRoute;
}

/** Expands a `main` value the way the worker does: a file, or a glob with `*`, `?` and `**`. */
export function expandMainGlob(projectRoot: string, pattern: string): string[] {
  const segments = pattern.replace(/\\/g, '/').replace(/^\.\//, '').split('/').filter(Boolean);
  const toRegex = (seg: string) =>
    new RegExp(`^${seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
  const out: string[] = [];
  const walk = (dir: string, i: number): void => {
    const seg = segments[i];
    if (seg === undefined) {
      if (fs.statSync(dir, { throwIfNoEntry: false })?.isFile()) out.push(dir);
      return;
    }
    if (seg === '**') {
      walk(dir, i + 1);
      for (const entry of safeReaddir(dir)) if (entry.isDirectory()) walk(path.join(dir, entry.name), i);
      return;
    }
    if (!/[*?]/.test(seg)) {
      walk(path.join(dir, seg), i + 1);
      return;
    }
    const re = toRegex(seg);
    for (const entry of safeReaddir(dir)) if (re.test(entry.name)) walk(path.join(dir, entry.name), i + 1);
  };
  walk(projectRoot, 0);
  return [...new Set(out)].sort();
}

function safeReaddir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** The Flex Consumption plan's default functionTimeout, used when host.json sets none. */
export const DEFAULT_FUNCTION_TIMEOUT_MS = 30 * 60 * 1000;

/** What the host reads from host.json. Unbounded values are Infinity. */
export interface HostJsonSettings {
  routePrefix: string;
  functionTimeoutMs: number;
  maxConcurrentRequests: number;
  maxOutstandingRequests: number;
  /** `extensions.queues` (local/queueTriggers.ts). */
  queues: QueueHostSettings;
}

/**
 * A host.json duration (`hh:mm:ss`, `d.hh:mm:ss`, seconds may have a fraction) in ms; `-1` is
 * no limit (Premium and Dedicated plans). Throws on anything else.
 */
export function parseFunctionTimeout(raw: string): number {
  if (raw.trim() === '-1') return Infinity;
  const m = /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(raw.trim());
  if (!m) throw new Error(`function host: host.json functionTimeout must be "hh:mm:ss" or "-1", got "${raw}"`);
  const [, days, hours, minutes, seconds] = m;
  const ms = (((Number(days ?? 0) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
  if (Number(minutes) > 59 || Number(seconds) >= 60 || ms <= 0) throw new Error(`function host: host.json functionTimeout "${raw}" is not a positive duration`);
  return ms;
}

/** -1 (or absent) is unbounded, as in the Functions host. */
function requestLimit(name: string, value: unknown): number {
  if (value === undefined || value === -1) return Infinity;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new Error(`function host: host.json extensions.http.${name} must be a positive whole number or -1, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Throws naming the setting when host.json is not JSON or a value it sets is malformed. */
export function readHostJson(projectRoot: string): HostJsonSettings {
  const file = path.join(projectRoot, 'host.json');
  let hostJson: {
    functionTimeout?: unknown;
    extensions?: { http?: { routePrefix?: unknown; maxConcurrentRequests?: unknown; maxOutstandingRequests?: unknown }; queues?: Record<string, unknown> };
  } = {};
  if (fs.existsSync(file)) {
    try {
      hostJson = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof hostJson;
    } catch (err) {
      throw new Error(`function host: host.json is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  const httpSettings = hostJson.extensions?.http ?? {};
  const prefix = httpSettings.routePrefix;
  const timeout = hostJson.functionTimeout;
  if (timeout !== undefined && typeof timeout !== 'string') throw new Error('function host: host.json functionTimeout must be a string such as "00:10:00"');
  return {
    routePrefix: typeof prefix === 'string' ? prefix.replace(/^\/+|\/+$/g, '') : 'api',
    functionTimeoutMs: timeout === undefined ? DEFAULT_FUNCTION_TIMEOUT_MS : parseFunctionTimeout(timeout),
    maxConcurrentRequests: requestLimit('maxConcurrentRequests', httpSettings.maxConcurrentRequests),
    maxOutstandingRequests: requestLimit('maxOutstandingRequests', httpSettings.maxOutstandingRequests),
    queues: hostJson.extensions?.queues ? queueSettingsOf(hostJson.extensions.queues) : DEFAULT_QUEUE_SETTINGS,
  };
}

/**
 * The Functions host's HTTP throttle: at most maxConcurrent HTTP invocations run at once, the
 * others wait their turn; past maxOutstanding running and waiting together, a request is refused.
 */
class HttpThrottle {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly maxConcurrent: number,
    private readonly maxOutstanding: number,
  ) {}

  /** A promise of the release function, or undefined when the request must be refused (429). */
  enter(): Promise<() => void> | undefined {
    if (this.running + this.waiting.length >= this.maxOutstanding) return undefined;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.running -= 1;
      this.waiting.shift()?.();
    };
    if (this.running < this.maxConcurrent) {
      this.running += 1;
      return Promise.resolve(release);
    }
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.running += 1;
        resolve(release);
      }),
    );
  }
}

/** A byte count from a setting; throws naming the setting when it is not a positive whole number. */
function byteSetting(name: string, explicit: number | undefined, fallback: number): number {
  const raw = explicit !== undefined ? String(explicit) : process.env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1) {
    throw new Error(`function host: ${name} must be a positive whole number of bytes, got "${raw}"`);
  }
  return n;
}

/**
 * Reads a request body of at most `limit` bytes. Past the limit (announced by content-length,
 * or reached while streaming) it stops reading at once and resolves 'too-large': the sender is
 * then held back by TCP flow control until the 413 closes the connection.
 */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.pause();
      resolve('too-large');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        chunks.length = 0;
        resolve('too-large');
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Answers 413 and closes the connection, so that the rest of the body is never read. */
function rejectTooLarge(req: http.IncomingMessage, res: http.ServerResponse, limit: number, what: string): void {
  const text = JSON.stringify({ error: `the ${what} exceeds ${limit} bytes` });
  res.shouldKeepAlive = false;
  res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), connection: 'close' });
  // The answer is flushed first; then the socket goes, with whatever the client still sends.
  res.end(text, () => setTimeout(() => req.socket.destroy(), 100).unref());
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Loads the functions and starts serving. Throws when no file matches the `main` glob, when a
 * function file throws while loading, when a route template is invalid, or when the port is busy.
 */
export async function startHost(options: HostOptions): Promise<FunctionHost> {
  const projectRoot = path.resolve(options.projectRoot);
  const sink = options.logSink ?? stdoutLogSink;
  const hostName = options.host ?? '127.0.0.1';
  for (const [k, v] of Object.entries(options.env ?? {})) process.env[k] = v;
  const maxRequestBodyBytes = byteSetting('FUNCTIONS_REQUEST_BODY_SIZE_LIMIT', options.maxRequestBodyBytes, DEFAULT_MAX_REQUEST_BODY_BYTES);
  const maxEventGridBodyBytes = Math.min(
    maxRequestBodyBytes,
    byteSetting('LOCAL_EVENTGRID_MAX_BODY_BYTES', options.maxEventGridBodyBytes, DEFAULT_MAX_EVENT_GRID_BODY_BYTES),
  );

  const pkgPath = path.join(projectRoot, 'package.json');
  if (!fs.existsSync(pkgPath)) throw new Error(`function host: no package.json in ${projectRoot}`);
  const main = (JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as { main?: string }).main;
  if (!main) throw new Error(`function host: package.json in ${projectRoot} has no "main" naming the function files`);
  const files = expandMainGlob(projectRoot, main);
  if (files.length === 0) {
    throw new Error(`function host: no file matches the "main" glob "${main}" under ${projectRoot} (run npm run build first)`);
  }

  const hostJson = readHostJson(projectRoot);
  // The Function App's platform CORS (local/cors.ts); read once, as the platform reads its configuration.
  const corsOrigins = parseAllowedOrigins(process.env.CORS_ALLOWED_ORIGINS);
  const functionTimeoutMs = options.functionTimeoutMs ?? hostJson.functionTimeoutMs;
  const throttle = new HttpThrottle(
    options.maxConcurrentRequests ?? hostJson.maxConcurrentRequests,
    options.maxOutstandingRequests ?? hostJson.maxOutstandingRequests,
  );

  const loaded: LoadedFunction[] = [];
  const hooks: Hooks = {};
  const appHookData: Record<string, unknown> = {};
  // The worker's appLevelOnlyHookData: shared by appStart and appTerminate only.
  const appLevelHookData: Record<string, unknown> = {};
  const log = (level: string, functionName: string, message: string) => sink(level as LogLevel, functionName, message);

  installFunctionsCore({
    registerFunction(metadata, handler) {
      const entry = Object.entries(metadata.bindings).find(([, b]) => /trigger$/i.test(b.type));
      if (!entry) throw new Error(`function "${metadata.name}" has no trigger binding`);
      const [triggerKey, trigger] = entry;
      if (loaded.some((f) => f.info.name.toLowerCase() === metadata.name.toLowerCase())) {
        throw new Error(`a function named "${metadata.name}" is already registered`);
      }
      const info: RegisteredFunction = { name: metadata.name, trigger: trigger.type };
      let compiled: CompiledRoute | undefined;
      if (trigger.type.toLowerCase() === 'httptrigger') {
        info.route = typeof trigger.route === 'string' && trigger.route !== '' ? trigger.route : metadata.name;
        info.methods = Array.isArray(trigger.methods) ? trigger.methods.map((m) => String(m).toUpperCase()) : [];
        info.authLevel = typeof trigger.authLevel === 'string' ? trigger.authLevel.toLowerCase() : 'function';
        compiled = compileRoute(info.route);
      }
      if (trigger.type.toLowerCase() === 'timertrigger') info.schedule = String(trigger.schedule ?? '');
      if (trigger.type.toLowerCase() === 'queuetrigger') info.queueName = String(trigger.queueName ?? '');
      loaded.push({ info, metadata, triggerKey, handler, compiled });
    },
    registerHook(hookName, callback) {
      (hooks[hookName] ??= new Set()).add(callback);
      return { dispose: () => hooks[hookName]?.delete(callback) };
    },
    log(level, _category, message) {
      log(level, '', message);
    },
  });

  const cache = (nativeModule() as unknown as { _cache: Record<string, unknown> })._cache;
  // Each host gets the library fresh, as each worker process does: its setup (HTTP streaming) is
  // locked at a host's start and would otherwise hold for every later host in this process (tests).
  const library = `${path.sep}node_modules${path.sep}@azure${path.sep}functions${path.sep}`;
  for (const key of Object.keys(cache)) if (key.includes(library)) delete cache[key];
  for (const file of files) {
    // A second host in the same process (tests) must see the registrations again.
    delete cache[file];
    try {
      nativeRequire(file)(file);
    } catch (err) {
      throw new Error(`function host: loading ${path.relative(projectRoot, file)} failed: ${describeError(err)}`, { cause: err });
    }
  }

  // Set by @azure/functions at its first app.* call (process-wide, as in the worker).
  const programmingModel: ProgrammingModel | undefined = registeredProgrammingModel();
  if (loaded.length > 0 && !programmingModel) throw new Error('function host: functions were registered but no programming model was set');
  // The library's listener for streaming mode, closed when this host stops: in a worker process
  // it lives as long as the process, but a process that starts hosts one after another (tests)
  // would otherwise be kept alive by every one of them.
  const workerListeners: http.Server[] = [];
  // Set when the app enables HTTP streaming (the library then reports its listener as HttpUri):
  // requests go to that listener's own handler (handToWorker).
  let workerListener: http.Server | undefined;
  if (programmingModel?.getCapabilities) {
    const getCapabilities = programmingModel.getCapabilities.bind(programmingModel);
    const capabilities = await capturingServers(workerListeners, async () => getCapabilities({}));
    if (capabilities.HttpUri) {
      if (workerListeners.length !== 1) throw new Error(`function host: the library reported an HTTP listener but created ${workerListeners.length}`);
      workerListener = workerListeners[0];
    }
  }

  const routePrefix = hostJson.routePrefix;
  const httpFunctions = loaded.filter((f) => f.compiled).sort((a, b) => compareRoutes(a.compiled as CompiledRoute, b.compiled as CompiledRoute));

  await runHooks(hooks, 'appStart', { hookData: appLevelHookData, appHookData, functionAppDirectory: projectRoot });

  const environment = (): InvocationEnvironment => {
    if (!programmingModel) throw new Error('function host: no programming model to invoke functions with');
    return { programmingModel, hooks, appHookData, log, timeoutMs: functionTimeoutMs };
  };

  const handleHttp = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL, below: string): Promise<void> => {
    const method = (req.method ?? 'GET').toUpperCase();
    let routeMatched = false;
    const parts = splitPath(below);
    for (const fn of httpFunctions) {
      const params = matchRoute(fn.compiled as CompiledRoute, parts);
      if (!params) continue;
      routeMatched = true;
      if (fn.info.methods && fn.info.methods.length > 0 && !fn.info.methods.includes(method)) continue;
      if (fn.info.authLevel !== 'anonymous' && !isLoopback(req.socket.remoteAddress)) {
        sendJson(res, 401, { error: 'this function needs a key in Azure; the local host accepts it from loopback only' });
        return;
      }
      const admitted = throttle.enter();
      if (!admitted) {
        log('warning', '', `HTTP request refused (429): more than maxOutstandingRequests running or waiting`);
        sendJson(res, 429, { error: 'too many requests: the host is at its maxOutstandingRequests' });
        return;
      }
      const release = await admitted;
      try {
        const body = await readBody(req, maxRequestBodyBytes);
        if (body === 'too-large') {
          rejectTooLarge(req, res, maxRequestBodyBytes, 'request body');
          return;
        }
        const request = toRpcHttpRequest(method, url, req.headers, params, body);
        if (workerListener) {
          const invocationId = randomUUID();
          const handed = handToWorker(workerListener, invocationId, req, url, body, res);
          const invocation = { inputData: [{ name: fn.triggerKey, data: request }], triggerMetadata: streamTriggerMetadata(req.headers, params) };
          try {
            await invokeFunction(fn, invocation, environment(), invocationId);
            // A handler that returned nothing: the library sends no answer (204, as without streaming).
            if (!handed.answered()) {
              res.writeHead(204);
              res.end();
            }
          } catch {
            if (!res.headersSent) sendJson(res, 500, {});
            else res.destroy();
          }
          await handed.done;
          return;
        }
        let returnValue: RpcTypedData | null | undefined;
        try {
          const response = await invokeFunction(fn, { inputData: [{ name: fn.triggerKey, data: request }] }, environment());
          returnValue = response.returnValue;
        } catch {
          if (!res.headersSent) sendJson(res, 500, {});
          return;
        }
        try {
          writeRpcHttpResponse(res, returnValue);
        } catch (err) {
          log('error', fn.info.name, `invalid HTTP response: ${describeError(err)}`);
          sendJson(res, 500, {});
        }
      } finally {
        release();
      }
      return;
    }
    sendJson(res, 404, { error: routeMatched ? `no function accepts ${method} on this route` : 'no function has this route' });
  };

  const handleEventGrid = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> => {
    const name = url.searchParams.get('functionName') ?? '';
    const fn = loaded.find((f) => f.info.name.toLowerCase() === name.toLowerCase() && f.info.trigger.toLowerCase() === 'eventgridtrigger');
    if (!fn) {
      sendJson(res, 404, { error: `no Event Grid function named "${name}"` });
      return;
    }
    if (!isLoopback(req.socket.remoteAddress)) {
      sendJson(res, 401, { error: 'the Event Grid webhook needs the system key in Azure; the local host accepts it from loopback only' });
      return;
    }
    if (req.method === 'OPTIONS') {
      // CloudEvents abuse protection handshake (the CloudEvents schema's subscription validation).
      const origin = req.headers['webhook-request-origin'];
      res.writeHead(200, { 'WebHook-Allowed-Origin': typeof origin === 'string' ? origin : '*', 'WebHook-Allowed-Rate': '*' });
      res.end();
      return;
    }
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'the Event Grid webhook accepts POST' });
      return;
    }
    const raw = await readBody(req, maxEventGridBodyBytes);
    if (raw === 'too-large') {
      rejectTooLarge(req, res, maxEventGridBodyBytes, 'Event Grid delivery');
      return;
    }
    const body = raw.toString('utf8');
    const delivery = parseEventGridDelivery(body, {
      contentType: req.headers['content-type'],
      eventType: typeof req.headers['aeg-event-type'] === 'string' ? req.headers['aeg-event-type'] : undefined,
    });
    if (delivery.kind === 'invalid') {
      sendJson(res, 400, { error: delivery.reason });
      return;
    }
    if (delivery.kind === 'validation') {
      log('information', '', `answered the Event Grid subscription validation for ${fn.info.name}`);
      sendJson(res, 200, { validationResponse: delivery.validationCode });
      return;
    }
    // One invocation per event, all of a delivery's at once, as the host's Event Grid extension
    // runs a batch; one that fails fails the delivery, and Event Grid sends the whole batch again.
    const outcomes = await Promise.allSettled(delivery.events.map((event) => invokeFunction(fn, eventInvocationRequest(fn, event), environment())));
    const failed = outcomes.filter((o) => o.status === 'rejected').length;
    if (failed > 0) {
      sendJson(res, 500, { error: `${failed} of ${delivery.events.length} invocations failed` });
      return;
    }
    res.writeHead(200, { 'content-length': 0 });
    res.end();
  };

  const timers = startTimerScheduler(
    loaded.filter((f) => f.info.trigger.toLowerCase() === 'timertrigger'),
    (fn, request) => invokeFunction(fn, request, environment()).then(() => undefined),
    log,
    options.timerIntervalMs ?? positiveIntSetting('LOCAL_TIMER_INTERVAL_MS'),
  );

  const queueFunctions: QueueFunction[] = loaded
    .filter((f) => f.info.trigger.toLowerCase() === 'queuetrigger')
    .map((f) => {
      const binding = f.metadata.bindings[f.triggerKey];
      const connection = typeof binding?.connection === 'string' && binding.connection !== '' ? binding.connection : 'AzureWebJobsStorage';
      return { name: f.info.name, queueName: f.info.queueName ?? '', connection, triggerKey: f.triggerKey };
    });
  const queues = options.queues === false || queueFunctions.length === 0
    ? undefined
    : startQueueListeners(
      queueFunctions,
      hostJson.queues,
      async (qf, request) => {
        const fn = loaded.find((f) => f.info.name === qf.name) as LoadedFunction;
        await invokeFunction(fn, request, environment());
      },
      log,
    );

  const listFunctions = () => loaded.map((f) => ({ ...f.info }));

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? `${hostName}`}`);
    const pathname = url.pathname;
    if (applyCors(corsOrigins, req, res)) return;
    const work = (async () => {
      if (/^\/runtime\/webhooks\/eventgrid\/?$/i.test(pathname)) return handleEventGrid(req, res, url);
      const prefix = routePrefix === '' ? '/' : `/${routePrefix}/`;
      if (pathname.toLowerCase().startsWith(prefix.toLowerCase()) || pathname.toLowerCase() === `/${routePrefix}`.toLowerCase()) {
        return handleHttp(req, res, url, pathname.slice(prefix.length - 1));
      }
      if (/^\/admin\/functions\/?$/i.test(pathname) && isLoopback(req.socket.remoteAddress)) {
        return sendJson(res, 200, listFunctions());
      }
      if (pathname === '/') return sendJson(res, 200, { status: 'running', functions: listFunctions() });
      return sendJson(res, 404, { error: 'not found' });
    })();
    work.catch((err: unknown) => {
      log('error', '', `request failed: ${describeError(err)}`);
      if (!res.headersSent) sendJson(res, 500, {});
      else res.destroy();
    });
  });
  const port = await listen(server, options.port ?? 7071, hostName, 'function host');
  const url = `http://${hostName}:${port}`;
  log('information', '', `function host listening on ${url} with ${loaded.length} function(s): ${loaded.map((f) => f.info.name).join(', ')}`);
  if (options.timers) timers.start();

  let stopping: Promise<void> | undefined;
  return {
    port,
    url,
    functions: listFunctions(),
    hooks: Object.entries(hooks).flatMap(([name, callbacks]) => [...callbacks].map(() => name)),
    startTimers: () => timers.start(),
    fireTimer: (name) => timers.fire(name),
    stop() {
      stopping ??= (async () => {
        await timers.stop();
        await queues?.stop();
        await closeServer(server);
        await Promise.all(workerListeners.map((listener) => closeServer(listener)));
        await runHooks(hooks, 'appTerminate', { hookData: appLevelHookData, appHookData });
      })();
      return stopping;
    },
  };
}

/** Runs `work`, keeping every HTTP server created meanwhile (the library makes its streaming listener inside it). */
export async function capturingServers<T>(into: http.Server[], work: () => Promise<T>): Promise<T> {
  // The module object itself (the library's `require('http')`), not this file's import of it.
  const shared = nativeRequire(__filename)('http') as { createServer: typeof http.createServer };
  const original = shared.createServer;
  shared.createServer = ((...args: Parameters<typeof http.createServer>) => {
    const created = original(...args);
    into.push(created);
    return created;
  }) as typeof http.createServer;
  try {
    return await work();
  } finally {
    shared.createServer = original;
  }
}

/**
 * An Event Grid invocation request as the host's Event Grid extension sends it: the event as
 * JSON on the trigger binding, and the trigger metadata the binding data holds (the library
 * camel-cases the keys, so `sys.MethodName` reaches the function as `sys.methodName`).
 */
function eventInvocationRequest(fn: LoadedFunction, event: Record<string, unknown>): Omit<RpcInvocationRequest, 'invocationId' | 'functionId'> {
  const metadata: Record<string, unknown> = {
    id: event.id,
    subject: event.subject,
    eventType: event.eventType ?? event.type,
    topic: event.topic ?? event.source,
    eventTime: event.eventTime ?? event.time,
    data: event.data,
    sys: { MethodName: fn.info.name, UtcNow: new Date().toISOString(), RandGuid: randomUUID() },
  };
  const triggerMetadata: Record<string, RpcTypedData> = {};
  for (const [k, v] of Object.entries(metadata)) if (v !== undefined) triggerMetadata[k] = { json: JSON.stringify(v) };
  return { inputData: [{ name: fn.triggerKey, data: { json: JSON.stringify(event) } }], triggerMetadata };
}

function positiveIntSetting(name: string): number | undefined {
  const raw = process.env[name]?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`function host: ${name} must be a positive whole number of milliseconds, got "${raw}"`);
  return n;
}

/**
 * The timer input as the host's timer extension sends it (TimerInfo: the schedule status and
 * whether the run is past due); the library camel-cases it into the handler's `Timer`.
 */
function timerInvocationRequest(fn: LoadedFunction, last: Date | undefined, next: Date | undefined): Omit<RpcInvocationRequest, 'invocationId' | 'functionId'> {
  const info = {
    Schedule: { AdjustForDST: true },
    ScheduleStatus: { Last: (last ?? new Date(0)).toISOString(), Next: (next ?? new Date(0)).toISOString(), LastUpdated: new Date().toISOString() },
    IsPastDue: false,
  };
  return { inputData: [{ name: fn.triggerKey, data: { json: JSON.stringify(info) } }], triggerMetadata: {} };
}

interface TimerScheduler {
  start(): void;
  fire(name: string): Promise<void>;
  /** Stops scheduling and waits for the runs in progress. */
  stop(): Promise<void>;
}

function startTimerScheduler(
  functions: LoadedFunction[],
  invoke: (fn: LoadedFunction, request: Omit<RpcInvocationRequest, 'invocationId' | 'functionId'>) => Promise<void>,
  log: (level: string, functionName: string, message: string) => void,
  intervalMs: number | undefined,
): TimerScheduler {
  interface TimerState {
    fn: LoadedFunction;
    schedule?: TimerSchedule;
    running?: Promise<void>;
    last?: Date;
    handle?: NodeJS.Timeout;
  }
  const states: TimerState[] = functions.map((fn) => {
    if (intervalMs !== undefined) return { fn };
    try {
      return { fn, schedule: parseTimerSchedule(fn.info.schedule ?? '') };
    } catch (err) {
      log('warning', fn.info.name, `timer "${fn.info.schedule ?? ''}" is not fired locally: ${(err as Error).message}`);
      return { fn };
    }
  });
  let started = false;
  let stopped = false;

  const nextAfter = (s: TimerState, now: Date): Date | undefined =>
    intervalMs !== undefined ? new Date(now.getTime() + intervalMs) : s.schedule && nextOccurrence(s.schedule, now);

  const run = (s: TimerState): Promise<void> => {
    const now = new Date();
    const request = timerInvocationRequest(s.fn, s.last, nextAfter(s, now));
    s.last = now;
    // The invocation logs its own failure (Executed ... Failed); the next tick tries again.
    s.running = invoke(s.fn, request).finally(() => (s.running = undefined));
    return s.running;
  };

  const schedule = (s: TimerState) => {
    if (stopped) return;
    const next = nextAfter(s, new Date());
    if (!next) return;
    s.handle = setTimeout(() => {
      // A tick while the previous run goes on is skipped, as the timer extension's singleton lock does.
      if (!s.running) run(s).catch(() => undefined);
      schedule(s);
    }, Math.max(0, next.getTime() - Date.now()));
    s.handle.unref();
  };

  return {
    start() {
      if (started || stopped) return;
      started = true;
      for (const s of states) {
        if (!s.schedule && intervalMs === undefined) continue;
        const runOnStartup = s.fn.metadata.bindings[s.fn.triggerKey]?.runOnStartup === true;
        if (runOnStartup) run(s).catch(() => undefined);
        schedule(s);
        log('information', s.fn.info.name, intervalMs !== undefined ? `timer fires every ${intervalMs} ms (LOCAL_TIMER_INTERVAL_MS)` : `timer fires on "${s.fn.info.schedule}"`);
      }
    },
    async fire(name) {
      const s = states.find((t) => t.fn.info.name.toLowerCase() === name.toLowerCase());
      if (!s) throw new Error(`no timer function named "${name}"`);
      while (s.running) await s.running.catch(() => undefined);
      await run(s);
    },
    async stop() {
      stopped = true;
      for (const s of states) clearTimeout(s.handle);
      await Promise.all(states.map((s) => s.running?.catch(() => undefined)));
    },
  };
}
