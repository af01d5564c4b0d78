/**
 * One invocation, as the Functions Node.js worker runs it: the programming model that
 * @azure/functions registered gives an invocation model per call, which turns the host's request
 * into the function's arguments (`getArguments`), calls the handler (`invokeFunction`) between the
 * preInvocation and postInvocation hooks, and turns the result into the response the host reads
 * (`getResponse`). The conversions (Event Grid payloads, HttpRequest, HttpResponseInit, trigger
 * metadata, the InvocationContext) are the library's own; this file only sequences them.
 *
 * Unlike the worker, a function that outlives `functionTimeout` cannot be stopped here: the
 * invocation fails (as the host fails it) and the handler runs on in the background, logged when
 * it ends. In Azure the host restarts the worker process instead.
 */
import { randomUUID } from 'crypto';
import { types } from 'util';

import type {
  CoreFunctionMetadata,
  CoreHandler,
  CoreHookCallback,
  CoreInvocationContext,
  ProgrammingModel,
  RpcInvocationRequest,
  RpcInvocationResponse,
  RpcLogLevel,
} from './functionsCore';

export type InvocationLog = (level: RpcLogLevel, functionName: string, message: string) => void;

/** Hooks by name (appStart, appTerminate, preInvocation, postInvocation), in registration order. */
export type Hooks = Record<string, Set<CoreHookCallback>>;

/** A registered function: what registerFunction received. */
export interface InvocationTarget {
  metadata: CoreFunctionMetadata;
  handler: CoreHandler;
}

export interface InvocationEnvironment {
  programmingModel: ProgrammingModel;
  hooks: Hooks;
  /** Shared by every hook of the app (`appHookData`). */
  appHookData: Record<string, unknown>;
  log: InvocationLog;
  /** host.json functionTimeout in ms; Infinity for none. */
  timeoutMs: number;
}

/** The invocation ran past functionTimeout; the host failed it. */
export class FunctionTimeoutError extends Error {
  override readonly name = 'FunctionTimeoutError';
}

export function describeError(err: unknown): string {
  // Not instanceof: function code may run in another realm (the host under a test runner).
  if (types.isNativeError(err)) return `${err.name}: ${err.message}`;
  return `non-Error thrown: ${typeof err}`;
}

export async function runHooks(hooks: Hooks, name: string, context: Record<string, unknown>): Promise<void> {
  for (const callback of hooks[name] ?? []) await callback(context);
}

/** Milliseconds written as host.json writes a duration (`hh:mm:ss`). */
export function formatTimeout(ms: number): string {
  const s = Math.round(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

/**
 * Invokes one function. Resolves with the library's response (`returnValue` carries an HTTP
 * function's response); rejects with what the handler or a hook threw, with what the library
 * threw while converting, or with FunctionTimeoutError. Logs the Executing/Executed lines.
 */
export async function invokeFunction(
  fn: InvocationTarget,
  request: Omit<RpcInvocationRequest, 'invocationId' | 'functionId'>,
  env: InvocationEnvironment,
  /** Given by the caller when it must know it first (HTTP streaming mode forwards the request under it). */
  invocationId: string = randomUUID(),
): Promise<RpcInvocationResponse> {
  const name = fn.metadata.name;
  const started = Date.now();
  const coreContext: CoreInvocationContext = {
    invocationId,
    request: { ...request, invocationId, functionId: name },
    metadata: fn.metadata,
    log: (level, _category, message) => env.log(level, name, message),
  };
  env.log('information', name, `Executing 'Functions.${name}' (Id=${invocationId})`);

  const pipeline = runPipeline(fn, coreContext, env);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    if (!Number.isFinite(env.timeoutMs)) return;
    timer = setTimeout(() => {
      env.log('error', name, `Timeout value of ${formatTimeout(env.timeoutMs)} exceeded by function 'Functions.${name}' (Id: '${invocationId}'). Initiating cancellation.`);
      reject(new FunctionTimeoutError(`the invocation exceeded functionTimeout (${formatTimeout(env.timeoutMs)})`));
      pipeline.then(
        () => env.log('warning', name, `'Functions.${name}' (Id=${invocationId}) finished after its timeout (${Date.now() - started}ms); its result was dropped`),
        () => env.log('warning', name, `'Functions.${name}' (Id=${invocationId}) failed after its timeout (${Date.now() - started}ms)`),
      );
    }, env.timeoutMs);
  });
  try {
    const response = await Promise.race([pipeline, timeout]);
    env.log('information', name, `Executed 'Functions.${name}' (Succeeded, Id=${invocationId}, Duration=${Date.now() - started}ms)`);
    return response;
  } catch (err) {
    env.log('error', name, `Executed 'Functions.${name}' (Failed, Id=${invocationId}, Duration=${Date.now() - started}ms): ${describeError(err)}`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** The worker's InvocationHandler sequence. */
async function runPipeline(fn: InvocationTarget, coreContext: CoreInvocationContext, env: InvocationEnvironment): Promise<RpcInvocationResponse> {
  const model = await env.programmingModel.getInvocationModel(coreContext);
  const { context, inputs } = await model.getArguments();
  const hookData: Record<string, unknown> = {};

  const pre = { invocationContext: context, inputs, functionCallback: fn.handler, hookData, appHookData: env.appHookData };
  coreContext.state = 'preInvocationHooks';
  try {
    await runHooks(env.hooks, 'preInvocation', pre);
  } finally {
    coreContext.state = undefined;
  }

  const post: Record<string, unknown> = { invocationContext: context, inputs: pre.inputs, result: null, error: null, hookData, appHookData: env.appHookData };
  coreContext.state = 'invocation';
  try {
    post.result = await model.invokeFunction(context, pre.inputs, pre.functionCallback);
  } catch (err) {
    post.error = err;
  } finally {
    coreContext.state = undefined;
  }

  coreContext.state = 'postInvocationHooks';
  try {
    await runHooks(env.hooks, 'postInvocation', post);
  } finally {
    coreContext.state = undefined;
  }
  if (post.error !== null && post.error !== undefined) throw post.error;
  return model.getResponse(context, post.result);
}
