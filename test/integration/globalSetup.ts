/**
 * Starts the whole local stack once for the integration project, on free ports, in memory, with
 * a fixed test key, and tells the test workers where it is: process.env (inherited by workers)
 * and a JSON file read by stackEnv.ts. A service that cannot start fails the run with its reason.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { LocalStack, startStack } from '../../local/stack';
import type { TestStackInfo } from './stackEnv';

/** Test-only key (32+ bytes); research identifiers made with it mean nothing elsewhere. */
export const TEST_DEID_KEY = 'integration-test-deid-key-0123456789abcdef';

const projectRoot = path.resolve(__dirname, '..', '..');

export default async function globalSetup(): Promise<void> {
  const functionsDir = path.join(projectRoot, 'dist', 'functions');
  const built = fs.existsSync(functionsDir) && fs.readdirSync(functionsDir).some((f) => f.endsWith('.js'));
  if (!built) {
    throw new Error(`integration tests need the built functions in ${path.relative(projectRoot, functionsDir)}: run "npm run build" first (npm test does)`);
  }

  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-test-stack-'));
  const logFile = path.join(runDir, 'host.log');
  fs.writeFileSync(logFile, '');
  let stack: LocalStack;
  try {
    stack = await startStack({
      projectRoot,
      ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 },
      persistence: { inMemory: true },
      // Azurite's space reclaim held every blob request for 24-53 s at the run's ten-minute mark
      // (local/services/azuriteGcInterval.ts); the data lives for the run, so it waits past the run.
      spaceReclaimIntervalMs: 6 * 60 * 60 * 1000,
      // A developer's local.settings.json may point at real resources; tests never read it.
      localSettings: false,
      dataDir: runDir,
      deidKey: TEST_DEID_KEY,
      deidKeyId: 'test',
      // Telemetry is written to a file so that tests can scan what the code emits for PHI.
      env: { TELEMETRY_CAPTURE_FILE: path.join(runDir, 'telemetry.jsonl') },
      eventSource: { maxBackoffMs: 1000 },
      // Both sources, as npm start runs them: the ANQ stand-ins over a replication target, the
      // snapshot watcher's timer every second (pipeline.test.ts runs its assertions on both).
      anq: { targetDir: path.join(runDir, 'anq'), stateDir: path.join(runDir, 'anq-state'), prefix: 'dicom/', watchSchedule: '*/1 * * * * *' },
      logSink: (level, functionName, message) => {
        fs.appendFileSync(logFile, `${new Date().toISOString()} [${level}] ${functionName || 'host'}: ${message}\n`);
      },
    });
  } catch (err) {
    throw new Error(`the local stack for integration tests did not start: ${(err as Error).message}`, { cause: err });
  }

  // The stack's host read the watcher's one-second schedule when it loaded the functions; the
  // workers must not inherit it, or a host they start registers that instead of the default.
  delete process.env.ANQ_WATCH_SCHEDULE;

  const info: TestStackInfo = {
    blobEndpoint: stack.blobEndpoint,
    blobPort: stack.blobPort,
    queuePort: stack.queuePort,
    cosmosEndpoint: stack.cosmosEndpoint,
    cosmosPort: stack.cosmosPort,
    hostUrl: stack.hostUrl,
    hostPort: stack.hostPort,
    logFile,
    deadLetterFile: stack.deadLetterFile,
    eventsUrl: `http://127.0.0.1:${stack.blobPort}/_local/events`,
    env: stack.env,
    tokens: stack.devIssuer.tokens,
    dataDir: runDir,
    anq: stack.anq && {
      cluster: stack.anq.cluster,
      bucket: stack.anq.bucket,
      exportPath: stack.anq.exportPath,
      prefix: stack.anq.prefix,
      targetDir: stack.anq.targetDir,
      s3Endpoint: stack.anq.standIn.s3Endpoint,
      restEndpoint: stack.anq.standIn.restEndpoint,
      restToken: stack.anq.restToken,
      checkpoint: stack.anq.checkpoint,
    },
  };
  const stackFile = path.join(runDir, 'stack.json');
  fs.writeFileSync(stackFile, JSON.stringify(info, null, 2));
  Object.assign(process.env, {
    TEST_STACK_FILE: stackFile,
    TEST_STACK_BLOB_URL: info.blobEndpoint,
    TEST_STACK_HOST_URL: info.hostUrl,
    TEST_STACK_COSMOS_ENDPOINT: info.cosmosEndpoint,
    TEST_STACK_LOG_FILE: info.logFile,
    TEST_STACK_DEADLETTER_FILE: info.deadLetterFile,
    TEST_STACK_EVENTS_URL: info.eventsUrl,
    TEST_STACK_DIR: runDir,
  });
  (globalThis as Record<string, unknown>).__LOCAL_TEST_STACK__ = stack;
}
