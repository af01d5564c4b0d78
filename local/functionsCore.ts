/**
 * A stand-in for the `@azure/functions-core` module that the Functions Node.js worker provides.
 *
 * @azure/functions loads that module once, with `require` inside try/catch; whatever resolves
 * then receives every `app.http(...)` / `app.eventGrid(...)` call as `registerFunction`. Making
 * the name resolve to this object before any function file loads lets the local host collect
 * exactly the registrations that Azure would. The shim is process-wide (one module cache), so
 * registrations go to whichever host is loading at the time.
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
  programmingModel?: unknown;
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
  setProgrammingModel(model: unknown): void {
    state().programmingModel = model;
  },
  getProgrammingModel(): unknown {
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
