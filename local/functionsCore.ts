/**
 * A stand-in for the `@azure/functions-core` module that the Functions Node.js worker provides.
 *
 * @azure/functions loads that module once, with `require` inside try/catch; whatever resolves
 * then receives every `app.http(...)` / `app.eventGrid(...)` call as `registerFunction`, every
 * `app.hook.*` call as `registerHook`, and the library's own programming model through
 * `setProgrammingModel`. Making the name resolve to this object before any function file loads
 * lets the local host collect exactly the registrations that Azure would, and invoke them
 * through the library's invocation model as the worker does. The shim is process-wide (one
 * module cache, one programming model, as in the worker), so registrations go to whichever
 * host is loading at the time.
 *
 * The types below are the part of the worker contract (`types-core` of
 * azure-functions-nodejs-library) that the local host uses; the package itself ships no typings
 * for it.
 */
import Module from 'module';

export interface CoreBinding {
  type: string;
  direction: 'in' | 'out' | 'inout';
  [option: string]: unknown;
}

export interface CoreFunctionMetadata {
  name: string;
  bindings: Record<string, CoreBinding>;
  retryOptions?: unknown;
}

export type CoreHandler = (...args: unknown[]) => unknown;
export type CoreHookCallback = (context: Record<string, unknown>) => unknown;

export type RpcLogLevel = 'trace' | 'debug' | 'information' | 'warning' | 'error' | 'critical' | 'none';
export type RpcLogCategory = 'user' | 'system' | 'customMetric';

/** A value crossing the worker boundary: one of the fields is set. */
export interface RpcTypedData {
  string?: string | null;
  json?: string | null;
  bytes?: Uint8Array | null;
  http?: RpcHttpData | null;
  int?: number | null;
  double?: number | null;
}

export interface RpcNullable<T> {
  value?: T | null;
}

export interface RpcHttpCookie {
  name?: string | null;
  value?: string | null;
  domain?: RpcNullable<string> | null;
  path?: RpcNullable<string> | null;
  expires?: RpcNullable<{ seconds?: number | null; nanos?: number | null }> | null;
  secure?: RpcNullable<boolean> | null;
  httpOnly?: RpcNullable<boolean> | null;
  sameSite?: 'none' | 'lax' | 'strict' | 'explicitNone' | null;
  maxAge?: RpcNullable<number> | null;
}

/** An HTTP request as the host sends it, or a response as the library returns it. */
export interface RpcHttpData {
  method?: string | null;
  url?: string | null;
  headers?: Record<string, string> | null;
  body?: RpcTypedData | null;
  params?: Record<string, string> | null;
  statusCode?: string | null;
  cookies?: RpcHttpCookie[] | null;
}

export interface RpcParameterBinding {
  name?: string | null;
  data?: RpcTypedData | null;
}

export interface RpcInvocationRequest {
  invocationId?: string | null;
  functionId?: string | null;
  inputData?: RpcParameterBinding[] | null;
  triggerMetadata?: Record<string, RpcTypedData> | null;
}

export interface RpcInvocationResponse {
  invocationId?: string | null;
  outputData?: RpcParameterBinding[] | null;
  returnValue?: RpcTypedData | null;
}

export type InvocationState = 'preInvocationHooks' | 'postInvocationHooks' | 'invocation';

/** What the worker hands the programming model for one invocation. */
export interface CoreInvocationContext {
  invocationId: string;
  request: RpcInvocationRequest;
  metadata: CoreFunctionMetadata;
  state?: InvocationState;
  log(level: RpcLogLevel, category: RpcLogCategory, message: string): void;
}

/** The library's side of one invocation: the conversions in and out, and the call itself. */
export interface InvocationModel {
  getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
  invokeFunction(context: unknown, inputs: unknown[], callback: CoreHandler): Promise<unknown>;
  getResponse(context: unknown, result: unknown): Promise<RpcInvocationResponse>;
}

export interface ProgrammingModel {
  name: string;
  version: string;
  getInvocationModel(context: CoreInvocationContext): InvocationModel | Promise<InvocationModel>;
  getCapabilities?(capabilities: Record<string, string>): Record<string, string> | Promise<Record<string, string>>;
}

/** What one host receives while its function files load. */
export interface CoreRegistrar {
  registerFunction(metadata: CoreFunctionMetadata, handler: CoreHandler): void;
  registerHook(hookName: string, callback: CoreHookCallback): { dispose(): void };
  log(level: string, category: string, message: string): void;
}

const MODULE_NAME = '@azure/functions-core';
// Not a path on disk: only a key in the module cache that the resolver hook points at.
const CACHE_KEY = '\0local-functions-core';
const STATE_KEY = Symbol.for('vna.local.functionsCore.state');
const INSTALLED_KEY = Symbol.for('vna.local.functionsCore.installed');

interface ShimState {
  registrar?: CoreRegistrar;
  programmingModel?: ProgrammingModel;
}

class Disposable {
  #callback?: () => void;
  constructor(callback: () => void) {
    this.#callback = callback;
  }
  static from(...items: { dispose(): void }[]): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  dispose(): void {
    this.#callback?.();
    this.#callback = undefined;
  }
}

/**
 * Kept on Node's Module class rather than globalThis: under a test runner, code loaded by the
 * runner (its own realm) and code loaded natively share that class but not their globals.
 */
function state(): ShimState {
  const holder = nativeModule() as unknown as Record<symbol, ShimState | undefined>;
  holder[STATE_KEY] ??= {};
  return holder[STATE_KEY];
}

function activeRegistrar(): CoreRegistrar {
  const r = state().registrar;
  if (!r) throw new Error('no local function host is loading functions');
  return r;
}

const shim = {
  setProgrammingModel(model: ProgrammingModel): void {
    state().programmingModel = model;
  },
  getProgrammingModel(): ProgrammingModel | undefined {
    return state().programmingModel;
  },
  registerFunction(metadata: CoreFunctionMetadata, handler: CoreHandler): void {
    activeRegistrar().registerFunction(metadata, handler);
  },
  registerHook(hookName: string, callback: CoreHookCallback): { dispose(): void } {
    return activeRegistrar().registerHook(hookName, callback);
  },
  log(level: string, category: string, message: string): void {
    const r = state().registrar;
    if (r) r.log(level, category, message);
    else process.stdout.write(`[${level}] ${message}\n`);
  },
  Disposable,
};

interface ModuleInternals {
  _resolveFilename(request: string, parent: unknown, ...rest: unknown[]): string;
  _cache: Record<string, { exports: unknown } | undefined>;
  _load: unknown;
}

/**
 * Node's own Module class. Under Jest, `require('module')` is a subclass whose statics are
 * copies and whose createRequire loads through Jest's registry; hooks must go on the real one,
 * and function files must load through Node's loader so that the hook sees their requires.
 */
export function nativeModule(): typeof Module {
  const parent: unknown = Object.getPrototypeOf(Module);
  if (typeof parent === 'function' && '_load' in parent && '_resolveFilename' in parent) return parent as unknown as typeof Module;
  return Module;
}

/** A require that bypasses any test runner's module registry. */
export function nativeRequire(fromFile: string): NodeJS.Require {
  return nativeModule().createRequire(fromFile);
}

/**
 * The programming model that @azure/functions set when its first `app.*` call ran in this
 * process; undefined while no function file has registered anything.
 */
export function registeredProgrammingModel(): ProgrammingModel | undefined {
  return state().programmingModel;
}

/** Installs the resolver hook once per process; later calls only switch the registrar. */
export function installFunctionsCore(registrar: CoreRegistrar): void {
  state().registrar = registrar;
  const RealModule = nativeModule();
  const internals = RealModule as unknown as ModuleInternals & { [INSTALLED_KEY]?: true };
  if (internals[INSTALLED_KEY]) return;
  const cached = new RealModule(CACHE_KEY);
  cached.filename = CACHE_KEY;
  cached.loaded = true;
  cached.exports = shim;
  internals._cache[CACHE_KEY] = cached;
  const resolve = internals._resolveFilename;
  internals._resolveFilename = function (request: string, parent: unknown, ...rest: unknown[]): string {
    if (request === MODULE_NAME) return CACHE_KEY;
    return resolve.call(this, request, parent, ...rest);
  };
  internals[INSTALLED_KEY] = true;
}
