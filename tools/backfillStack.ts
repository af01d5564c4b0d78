/**
 * For the backfill's integration test: seeds `count` generated files into Azurite with no stack
 * running, starts the local stack on them in this process, prints one JSON line (the functions'
 * settings, the host URL, the telemetry file), and stops the stack on SIGTERM or when stdin ends.
 * The test runs the backfill against it from other processes: a stack in the test's own worker
 * would share that worker's environment with the shared test stack. A line `rotate <keyId> <key>`
 * on stdin changes the functions' de-identification key (the re-index test).
 *
 * With a third argument `function` (the backfill function's test), the stack's timers fire every
 * LOCAL_TIMER_INTERVAL_MS (default here 1,000 ms), the archive topic is the host's own Event Grid
 * webhook, slices last BACKFILL_MAX_RUN_MS (default here 1,000 ms), and the JSON line carries an
 * `operatorToken` of the development issuer with Operations.Manage and Operations.Read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { startStack } from '../local/stack';
import { resetRuntime } from '../shared/runtime';
import { seedArchive } from './backfillArchive';

async function main(): Promise<void> {
  const [dir, countArg, mode] = process.argv.slice(2);
  const backfillFunction = mode === 'function';
  if (backfillFunction) {
    process.env.LOCAL_TIMER_INTERVAL_MS ||= '1000';
    process.env.BACKFILL_MAX_RUN_MS ||= '1000';
  }
  if (!dir || !countArg) throw new Error('usage: backfillStack <dir> <count>');
  const projectRoot = path.resolve(__dirname, '..', '..');
  await seedArchive({ location: path.join(dir, 'azurite'), container: 'anq-replica', count: Number(countArg), seed: 18 });
  const telemetryFile = path.join(dir, 'telemetry.jsonl');
  const problems = path.join(dir, 'host-problems.log');
  const stack = await startStack({
    projectRoot, ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 }, persistence: { location: path.join(dir, 'azurite') }, localSettings: false,
    dataDir: path.join(dir, 'data'), deidKey: 'backfill-test-deid-key-0123456789abcdef', deidKeyId: 'bf',
    env: { TELEMETRY_CAPTURE_FILE: telemetryFile, SOURCE_CONTAINERS: 'anq-replica' },
    logSink: (level, fn, message) => { if (level === 'warning' || level === 'error') fs.appendFileSync(problems, `${fn}: ${message}\n`); },
  });
  let operatorToken: string | undefined;
  if (backfillFunction) {
    // Read by the backfill function at each tick: the host's own webhook as the archive topic.
    process.env.ANQ_EVENTS_TOPIC_ENDPOINT = `${stack.hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`;
    process.env.ANQ_EVENTS_TOPIC_KEY = 'local-topic-key';
    operatorToken = await stack.devIssuer.sign({ subject: 'local-backfill-operator', roles: ['Operations.Manage', 'Operations.Read'] });
    stack.host.startTimers();
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void stack.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  // `rotate <keyId> <key>` on stdin: the functions' key changes, as a restart with new settings
  // would change it (the catalog server keeps its data in memory, so the process stays).
  let input = '';
  process.stdin.on('data', (d: Buffer) => {
    input += d.toString();
    for (let nl = input.indexOf('\n'); nl >= 0; nl = input.indexOf('\n')) {
      const [command, keyId, key] = input.slice(0, nl).trim().split(/\s+/);
      input = input.slice(nl + 1);
      if (command === 'rotate' && keyId && key) {
        process.env.DEID_KEY_ID = keyId;
        process.env.DEID_KEY = key;
        resetRuntime();
        process.stdout.write(`rotated ${keyId}\n`);
      }
    }
  });
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ env: stack.env, hostUrl: stack.hostUrl, telemetryFile, problems, cosmosDatabase: stack.settings.cosmosDatabase, indexContainer: stack.settings.indexContainer, cosmosEndpoint: stack.cosmosEndpoint, ...(operatorToken ? { operatorToken } : {}) })}\n`);
}

main().catch((e: unknown) => { process.stderr.write(`${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
