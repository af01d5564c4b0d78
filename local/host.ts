/**
 * A local Azure Functions host: loads the function registrations exactly as the Node.js worker
 * does (package.json `main` glob, `@azure/functions-core` registrations) and serves them the
 * way the Functions host does: HTTP triggers under the route prefix, Event Grid triggers on
 * `/runtime/webhooks/eventgrid?functionName=<name>`.
 *
 * Not emulated: function keys (admin and function levels are accepted from loopback only),
 * retry policies, non-HTTP/Event Grid triggers (listed, never invoked), HTTP streaming mode.
 */
import type * as AzureFunctions from '@azure/functions';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { Readable } from 'stream';
import { format, types } from 'util';

import { parseEventGridDelivery } from './eventGridBody';
import { CoreBinding, CoreFunctionMetadata, CoreHandler, CoreHookCallback, installFunctionsCore, nativeModule, nativeRequire } from './functionsCore';
import { closeServer, listen } from './net';
import { compareRoutes, CompiledRoute, compileRoute, matchRoute } from './routes';

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
}

/** The Functions host's default FUNCTIONS_REQUEST_BODY_SIZE_LIMIT. */
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024;
export const DEFAULT_MAX_EVENT_GRID_BODY_BYTES = 1024 * 1024;

export interface FunctionHost {
  port: number;
  /** `http://<host>:<port>` */
  url: string;
  functions: RegisteredFunction[];
  /** Runs appTerminate hooks and closes the server. Idempotent. */
  stop(): Promise<void>;
}

interface LoadedFunction {
  info: RegisteredFunction;
  metadata: CoreFunctionMetadata;
  triggerKey: string;
  trigger: CoreBinding;
  handler: CoreHandler;
  compiled?: CompiledRoute;
}

type Hooks = Record<string, Set<CoreHookCallback>>;

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

function readRoutePrefix(projectRoot: string): string {
  try {
    const hostJson = JSON.parse(fs.readFileSync(path.join(projectRoot, 'host.json'), 'utf8')) as {
      extensions?: { http?: { routePrefix?: string } };
    };
    const prefix = hostJson.extensions?.http?.routePrefix;
    if (typeof prefix === 'string') return prefix.replace(/^\/+|\/+$/g, '');
  } catch {
    // No or unreadable host.json: the host's default applies.
  }
  return 'api';
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

function describeError(err: unknown): string {
  // Not instanceof: function code may run in another realm (the host under a test runner).
  if (types.isNativeError(err)) return `${err.name}: ${err.message}`;
  return `non-Error thrown: ${typeof err}`;
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

  const loaded: LoadedFunction[] = [];
  const hooks: Hooks = {};
  const appHookData: Record<string, unknown> = {};
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
      loaded.push({ info, metadata, triggerKey, trigger, handler, compiled });
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
  for (const file of files) {
    // A second host in the same process (tests) must see the registrations again.
    delete cache[file];
    try {
      nativeRequire(file)(file);
    } catch (err) {
      throw new Error(`function host: loading ${path.relative(projectRoot, file)} failed: ${describeError(err)}`, { cause: err });
    }
  }

  const fx = nativeRequire(path.join(projectRoot, 'package.json'));
  let azf: typeof AzureFunctions;
  try {
    azf = fx('@azure/functions') as typeof AzureFunctions;
  } catch {
    azf = nativeRequire(__filename)('@azure/functions') as typeof AzureFunctions;
  }

  const routePrefix = readRoutePrefix(projectRoot);
  const httpFunctions = loaded.filter((f) => f.compiled).sort((a, b) => compareRoutes(a.compiled as CompiledRoute, b.compiled as CompiledRoute));

  await runHooks(hooks, 'appStart', { hookData: {}, appHookData });

  const invoke = async (fn: LoadedFunction, inputs: unknown[], triggerMetadata: Record<string, unknown> | undefined): Promise<unknown> => {
    const invocationId = randomUUID();
    const started = Date.now();
    const context = new azf.InvocationContext({
      invocationId,
      functionName: fn.info.name,
      triggerMetadata,
      logHandler: (level, ...args) => log(level, fn.info.name, format(...args)),
      options: bindingsToOptions(fn.metadata) as AzureFunctions.InvocationContextInit['options'],
    });
    log('information', fn.info.name, `Executing 'Functions.${fn.info.name}' (Id=${invocationId})`);
    const hookData: Record<string, unknown> = {};
    const pre = { invocationContext: context, inputs, functionCallback: fn.handler, hookData, appHookData };
    let result: unknown;
    let error: unknown;
    try {
      await runHooks(hooks, 'preInvocation', pre);
      result = await pre.functionCallback(...pre.inputs, context);
    } catch (err) {
      error = err;
    }
    const post: Record<string, unknown> = { invocationContext: context, inputs: pre.inputs, result, error, hookData, appHookData };
    await runHooks(hooks, 'postInvocation', post);
    const ms = Date.now() - started;
    if (post.error !== undefined) {
      log('error', fn.info.name, `Executed 'Functions.${fn.info.name}' (Failed, Id=${invocationId}, Duration=${ms}ms): ${describeError(post.error)}`);
      throw post.error;
    }
    log('information', fn.info.name, `Executed 'Functions.${fn.info.name}' (Succeeded, Id=${invocationId}, Duration=${ms}ms)`);
    return post.result;
  };

  const handleHttp = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL, below: string): Promise<void> => {
    const method = (req.method ?? 'GET').toUpperCase();
    let routeMatched = false;
    for (const fn of httpFunctions) {
      const params = matchRoute(fn.compiled as CompiledRoute, below);
      if (!params) continue;
      routeMatched = true;
      if (fn.info.methods && fn.info.methods.length > 0 && !fn.info.methods.includes(method)) continue;
      if (fn.info.authLevel !== 'anonymous' && !isLoopback(req.socket.remoteAddress)) {
        sendJson(res, 401, { error: 'this function needs a key in Azure; the local host accepts it from loopback only' });
        return;
      }
      const body = await readBody(req, maxRequestBodyBytes);
      if (body === 'too-large') {
        rejectTooLarge(req, res, maxRequestBodyBytes, 'request body');
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      const request = new azf.HttpRequest({
        method,
        url: url.toString(),
        headers,
        params,
        body: body.length > 0 ? { bytes: body } : undefined,
      });
      let result: unknown;
      try {
        result = await invoke(fn, [request], undefined);
      } catch {
        if (!res.headersSent) sendJson(res, 500, {});
        return;
      }
      await writeHttpResult(azf, res, result, fn.info.name, log);
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
    let failed = 0;
    // One invocation per event, one after the other, as the host's Event Grid extension does.
    for (const event of delivery.events) {
      try {
        await invoke(fn, [event], eventTriggerMetadata(fn.info.name, event));
      } catch {
        failed += 1;
      }
    }
    if (failed > 0) {
      sendJson(res, 500, { error: `${failed} of ${delivery.events.length} invocations failed` });
      return;
    }
    res.writeHead(200, { 'content-length': 0 });
    res.end();
  };

  const listFunctions = () => loaded.map((f) => ({ ...f.info }));

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? `${hostName}`}`);
    const pathname = url.pathname;
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

  let stopping: Promise<void> | undefined;
  return {
    port,
    url,
    functions: listFunctions(),
    stop() {
      stopping ??= (async () => {
        await closeServer(server);
        await runHooks(hooks, 'appTerminate', { hookData: {}, appHookData });
      })();
      return stopping;
    },
  };
}

async function runHooks(hooks: Hooks, name: string, context: Record<string, unknown>): Promise<void> {
  for (const cb of hooks[name] ?? []) await cb(context);
}

/** The `options` of an InvocationContext, shaped as the library builds them from the metadata. */
function bindingsToOptions(metadata: CoreFunctionMetadata): Record<string, unknown> {
  let trigger: Record<string, unknown> | undefined;
  let ret: Record<string, unknown> | undefined;
  const extraInputs: Record<string, unknown>[] = [];
  const extraOutputs: Record<string, unknown>[] = [];
  for (const [name, binding] of Object.entries(metadata.bindings)) {
    const b = { ...binding, name };
    if (/trigger$/i.test(binding.type)) trigger = b;
    else if (name === '$return') ret = b;
    else if (binding.direction === 'in') extraInputs.push(b);
    else extraOutputs.push(b);
  }
  return { trigger, return: ret, extraInputs, extraOutputs };
}

function eventTriggerMetadata(functionName: string, event: Record<string, unknown>): Record<string, unknown> {
  return {
    id: event.id,
    subject: event.subject,
    eventType: event.eventType ?? event.type,
    topic: event.topic ?? event.source,
    eventTime: event.eventTime ?? event.time,
    data: event.data,
    sys: { methodName: functionName, utcNow: new Date().toISOString(), randGuid: randomUUID() },
  };
}

async function writeHttpResult(
  azf: typeof AzureFunctions,
  res: http.ServerResponse,
  result: unknown,
  functionName: string,
  log: (level: string, functionName: string, message: string) => void,
): Promise<void> {
  if (result === undefined || result === null) {
    res.writeHead(204);
    res.end();
    return;
  }
  let response: AzureFunctions.HttpResponse;
  try {
    if (typeof result !== 'object') throw new Error('the HTTP response must be an object (HttpResponse or HttpResponseInit)');
    response = result instanceof azf.HttpResponse ? result : new azf.HttpResponse(result as AzureFunctions.HttpResponseInit);
  } catch (err) {
    log('error', functionName, `invalid HTTP response: ${describeError(err)}`);
    sendJson(res, 500, {});
    return;
  }
  const headers: [string, string][] = [];
  for (const [k, v] of response.headers.entries()) if (k !== 'set-cookie') headers.push([k, v]);
  const cookies = [...response.headers.getSetCookie(), ...response.cookies.map(serializeCookie)];
  res.statusCode = response.status;
  for (const [k, v] of headers) res.setHeader(k, v);
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (!response.body) {
    res.end();
    return;
  }
  await new Promise<void>((resolve) => {
    const stream = Readable.fromWeb(response.body as Parameters<typeof Readable.fromWeb>[0]);
    stream.on('error', (err) => {
      log('error', functionName, `response body failed: ${describeError(err)}`);
      res.destroy();
      resolve();
    });
    res.on('close', resolve);
    stream.pipe(res);
  });
}

function serializeCookie(c: AzureFunctions.Cookie): string {
  const parts = [`${c.name}=${c.value}`];
  if (c.domain) parts.push(`Domain=${c.domain}`);
  if (c.path) parts.push(`Path=${c.path}`);
  if (c.expires !== undefined) parts.push(`Expires=${new Date(c.expires).toUTCString()}`);
  if (c.maxAge !== undefined) parts.push(`Max-Age=${c.maxAge}`);
  if (c.secure) parts.push('Secure');
  if (c.httpOnly) parts.push('HttpOnly');
  if (c.sameSite) parts.push(`SameSite=${c.sameSite}`);
  return parts.join('; ');
}
