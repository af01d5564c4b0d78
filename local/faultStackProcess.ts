/**
 * Runs the fault stack (local/faultStack.ts) in a process of its own, driven over IPC by a test.
 * A process of its own because the function host loads the functions in its process, and their
 * runtime (settings, SDK clients) is built once per process: a second stack in the test's process
 * would reuse the first one's. Exits when the parent goes away.
 *
 * Usage: fork('faultStackProcess.js', [JSON of FaultStackProcessOptions]). The child sends
 * `{ ready: FaultStackInfo }` or `{ failed: message }`, then answers each
 * `{ id, command, args }` with `{ id, ok, result | error }`.
 */
import * as fs from 'fs';

import type { EventSourceStats } from './eventSource';
import type { FaultPlan, FaultProxyStats } from './faultProxy';
import { FaultStack, FaultStackInfo, FaultStackOptions, FaultTarget, startFaultStack } from './faultStack';

export interface FaultStackProcessOptions extends Omit<FaultStackOptions, 'logSink'> {
  /** Every line the host, the functions and the event source log. */
  logFile: string;
}

export type FaultStackCommand =
  | { command: 'stats' }
  | { command: 'idle'; timeoutMs: number }
  | { command: 'plan'; target: FaultTarget; plan: FaultPlan | null }
  | { command: 'proxyDown'; target: FaultTarget; down: boolean }
  | { command: 'stopAzurite' | 'startAzurite' | 'stopCosmos' | 'startCosmos' | 'reconcile' | 'stop' };

export interface FaultStackStats {
  events: EventSourceStats;
  proxies: Record<FaultTarget, FaultProxyStats>;
}

async function run(stack: FaultStack, request: FaultStackCommand): Promise<unknown> {
  const stats = (): FaultStackStats => ({ events: stack.events.stats(), proxies: stack.proxyStats() });
  switch (request.command) {
    case 'stats':
      return stats();
    case 'idle': {
      let timer: NodeJS.Timeout | undefined;
      const idle = await Promise.race([
        stack.events.idle().then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), request.timeoutMs))),
      ]);
      clearTimeout(timer);
      return { idle, ...stats() };
    }
    case 'plan':
      stack.setPlan(request.target, request.plan ?? undefined);
      return undefined;
    case 'proxyDown':
      await stack.proxies[request.target].setDown(request.down);
      return undefined;
    case 'stopAzurite':
      return stack.stopAzurite();
    case 'startAzurite':
      return stack.startAzurite();
    case 'stopCosmos':
      return stack.stopCosmos();
    case 'startCosmos':
      return stack.startCosmos();
    case 'reconcile':
      return stack.reconcile();
    case 'stop':
      return stack.stop();
  }
}

async function main(): Promise<void> {
  const send = (message: unknown) => process.send?.(message);
  const options = JSON.parse(process.argv[2] ?? '{}') as FaultStackProcessOptions;
  const logSink: FaultStackOptions['logSink'] = (level, functionName, message) => {
    fs.appendFileSync(options.logFile, `${new Date().toISOString()} [${level}] ${functionName || 'host'}: ${message}\n`);
  };
  let stack: FaultStack;
  try {
    stack = await startFaultStack({ ...options, logSink });
  } catch (err) {
    // Exits once the message is out: exiting at once could drop it.
    process.send?.({ failed: (err as Error).message }, undefined, {}, () => process.exit(1));
    return;
  }
  const ready: FaultStackInfo = {
    blobEndpoint: stack.blobEndpoint,
    storageConnectionString: stack.storageConnectionString,
    cosmosConnectionString: stack.cosmosConnectionString,
    hostUrl: stack.hostUrl,
    deadLetterFile: stack.deadLetterFile,
    env: stack.env,
  };
  send({ ready });
  process.on('message', (message: { id: number } & FaultStackCommand) => {
    run(stack, message).then(
      (result) => {
        send({ id: message.id, ok: true, result });
        if (message.command === 'stop') process.disconnect();
      },
      (err: unknown) => send({ id: message.id, ok: false, error: (err as Error).message ?? String(err) }),
    );
  });
  const shutdown = () => void stack.stop().finally(() => process.exit(0));
  process.on('disconnect', shutdown);
  process.on('SIGTERM', shutdown);
}

void main();
