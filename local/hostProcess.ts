/**
 * The function host (local/host.ts) in a process of its own, driven over IPC, so that the CPU
 * time of that process is the host's alone: in the stack bench the event source, Azurite, the
 * Cosmos DB server and the uploader then each have a process of their own, and each process's
 * CPU time can be read apart (as in Azure, where storage, Cosmos DB and Event Grid are someone
 * else's machines and only the host's instance-seconds are billed).
 *
 * The parent calls `startHostProcess`; the child is this file run with `node` (compiled). The
 * child sends `{ ready: { url, pid } }` or `{ failed: message }`, then answers each
 * `{ id, command }` with `{ id, ok, result | error }`. It exits when the parent goes away.
 *
 * Requests are counted in the child (Node's `http.client.response.finish` diagnostics channel,
 * bench/requestCounter.ts), when `countRequests` names the ports: the count then sees exactly
 * what the functions send. It costs the host about 1 % of its CPU (0.3 ms per instance in a
 * profile of the stack bench's burst), which the host's figure includes.
 */
import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import { Session } from 'inspector';
import * as path from 'path';

import { createRequestCounter, emptyRequestCounts, RequestCounter, RequestCounts, WatchedPorts } from '../bench/requestCounter';
import { FunctionHost, LogLevel, startHost } from './host';
import { hasExited, stopChildProcess } from './services/childProcess';

export interface HostProcessOptions {
  projectRoot: string;
  /** The functions' settings; set on the child's process.env before the functions load. */
  env: Record<string, string>;
  /** Warnings and errors of the host and the functions go here; information lines are only counted. */
  logFile: string;
  /** Extra arguments for the child's Node (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** Count the functions' requests to these ports (the blob endpoint, the Cosmos DB endpoint and, optionally, the queue endpoint). */
  countRequests?: WatchedPorts;
}

export interface HostLogCounts {
  information: number;
  warning: number;
  error: number;
}

export interface HostProcess {
  url: string;
  pid: number;
  /** The child's `process.cpuUsage()` (microseconds since it started, every thread). */
  cpuUsage(): Promise<NodeJS.CpuUsage>;
  /** Requests counted since the last reset (empty counts when counting is off). */
  requests(): Promise<RequestCounts>;
  resetRequests(): Promise<void>;
  logCounts(): Promise<HostLogCounts>;
  /** Starts V8's sampling profiler in the host (1 ms interval); it costs the host some CPU while it runs. */
  startProfile(): Promise<void>;
  /** Stops the profiler and writes the profile (`.cpuprofile`, as `node --cpu-prof` writes) to `file`. */
  stopProfile(file: string): Promise<void>;
  /** Stops the host (its appTerminate hooks run) and waits for the child to exit. Idempotent. */
  stop(): Promise<void>;
}

type HostCommand = 'cpuUsage' | 'requests' | 'resetRequests' | 'logCounts' | 'startProfile' | 'stopProfile' | 'stop';

type ChildOptions = Omit<HostProcessOptions, 'nodeArgs'>;

/** The compiled child script, also when this module runs from TypeScript sources (ts-jest). */
function childScript(): string {
  const script = path.join(__dirname, `hostProcess${path.extname(__filename)}`);
  return script.endsWith('.ts') ? script.replace(`${path.sep}local${path.sep}`, `${path.sep}dist${path.sep}local${path.sep}`).replace(/\.ts$/, '.js') : script;
}

/** Starts the host in a child process; throws with the child's reason when it cannot start. */
export async function startHostProcess(options: HostProcessOptions): Promise<HostProcess> {
  const { nodeArgs, ...childOptions } = options;
  const child: ChildProcess = fork(childScript(), [JSON.stringify(childOptions satisfies ChildOptions)], {
    execArgv: nodeArgs ?? [],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-2000)));
  const ready = await new Promise<{ url: string; pid: number }>((resolve, reject) => {
    child.once('message', (message: { ready?: { url: string; pid: number }; failed?: string }) => {
      if (message.ready) resolve(message.ready);
      else reject(new Error(`function host process failed to start: ${message.failed ?? 'unknown'}`));
    });
    child.once('exit', (code, signal) => reject(new Error(`function host process exited (${signal ?? code}) before it was ready: ${stderr.trim()}`)));
    child.once('error', reject);
  });

  let nextId = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.on('message', (message: { id?: number; ok?: boolean; result?: unknown; error?: string }) => {
    if (message.id === undefined) return;
    const w = waiting.get(message.id);
    waiting.delete(message.id);
    if (message.ok) w?.resolve(message.result);
    else w?.reject(new Error(message.error ?? 'function host process: command failed'));
  });
  child.once('exit', () => {
    for (const w of waiting.values()) w.reject(new Error(`function host process exited: ${stderr.trim()}`));
    waiting.clear();
  });
  const ask = <T>(command: HostCommand, file?: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ id, command, file });
    });

  let stopping: Promise<void> | undefined;
  return {
    url: ready.url,
    pid: ready.pid,
    cpuUsage: () => ask<NodeJS.CpuUsage>('cpuUsage'),
    requests: () => ask<RequestCounts>('requests'),
    resetRequests: () => ask<void>('resetRequests'),
    logCounts: () => ask<HostLogCounts>('logCounts'),
    startProfile: () => ask<void>('startProfile'),
    stopProfile: (file) => ask<void>('stopProfile', file),
    stop() {
      stopping ??= (async () => {
        if (!hasExited(child)) {
          // The child exits by itself after 'stop' (a CPU profile, when asked for, is written
          // then); SIGTERM and SIGKILL follow only when it does not, within 15 s.
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, 15_000)));
          await Promise.race([ask<void>('stop').then(() => exited, () => undefined), timeout]);
          clearTimeout(timer);
        }
        await stopChildProcess(child, { graceMs: 2000 });
      })();
      return stopping;
    },
  };
}

async function childMain(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as ChildOptions;
  const log = fs.createWriteStream(options.logFile, { flags: 'a' });
  const counts: HostLogCounts = { information: 0, warning: 0, error: 0 };
  const logSink = (level: LogLevel, functionName: string, message: string) => {
    if (level === 'warning') counts.warning += 1;
    else if (level === 'error' || level === 'critical') counts.error += 1;
    else {
      counts.information += 1;
      return;
    }
    log.write(`${new Date().toISOString()} [${level}] ${functionName || 'host'}: ${message}\n`);
  };
  let counter: RequestCounter | undefined;
  let host: FunctionHost;
  try {
    if (options.countRequests) {
      counter = createRequestCounter();
      counter.watch(options.countRequests);
    }
    host = await startHost({ projectRoot: options.projectRoot, port: 0, env: options.env, logSink });
  } catch (err) {
    // Exits once the message is out: exiting at once could drop it.
    process.send?.({ failed: (err as Error).message }, undefined, {}, () => process.exit(1));
    return;
  }
  const stop = async () => {
    await host.stop();
    counter?.dispose();
    await new Promise((r) => log.end(r));
  };
  let session: Session | undefined;
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => (session as Session).post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
  const run = async (command: HostCommand, file: string | undefined): Promise<unknown> => {
    switch (command) {
      case 'startProfile':
        session = new Session();
        session.connect();
        await post('Profiler.enable');
        await post('Profiler.setSamplingInterval', { interval: 1000 });
        return post('Profiler.start');
      case 'stopProfile': {
        if (!session || !file) throw new Error('no profile running, or no file to write it to');
        const { profile } = (await post('Profiler.stop')) as { profile: unknown };
        session.disconnect();
        session = undefined;
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, JSON.stringify(profile));
        return undefined;
      }
      case 'cpuUsage':
        return process.cpuUsage();
      case 'requests':
        return counter?.snapshot() ?? emptyRequestCounts();
      case 'resetRequests':
        return counter?.reset();
      case 'logCounts':
        return { ...counts };
      case 'stop':
        return stop();
    }
  };
  process.on('message', (message: { id: number; command: HostCommand; file?: string }) => {
    run(message.command, message.file).then(
      (result) => {
        process.send?.({ id: message.id, ok: true, result }, undefined, {}, () => {
          if (message.command === 'stop') process.exit(0);
        });
      },
      (err: unknown) => process.send?.({ id: message.id, ok: false, error: (err as Error).message ?? String(err) }),
    );
  });
  // The parent going away (crash, kill -9) must not leave the host running.
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
  process.send?.({ ready: { url: host.url, pid: process.pid } });
}

if (require.main === module) void childMain();
