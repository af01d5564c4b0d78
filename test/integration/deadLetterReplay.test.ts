/**
 * Dead-letter replay on the fault stack: the same files ingested once cleanly, and once with
 * every Cosmos DB request answered 503 until their events are dead-lettered; `npm run replay
 * -- --apply` then re-submits them, and the catalog must equal the clean run's. A second
 * replay (--force) changes nothing: re-submission is idempotent.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { findReusablePort } from '../../local/net';
import { compareWithClean, type PipelineSnapshot, PROJECT_ROOT, selectFixtures, snapshot, type StackController, startFaultStackProcess, uploadAll } from './faults/harness';

const FILES = selectFixtures(16);
const EVENT_SOURCE = { maxAttempts: 2, maxBackoffMs: 100, deliveryTimeoutMs: 20_000 };

let blobProxyPort: number;

async function run(stack: StackController): Promise<string[]> {
  const upload = await uploadAll(stack.info.storageConnectionString, stack.settings.sourceContainers[0]!, FILES, { concurrency: 8, giveUpAfterMs: 60_000 });
  await stack.idle(90_000);
  return upload.uploaded;
}

function replay(stack: StackController, ...args: string[]) {
  const env = {
    ...process.env,
    ...stack.info.env,
    // The test's own view of the services (no faults), as an operator's machine would reach them.
    SourceStorage: stack.info.env.SourceStorage ?? '',
    CosmosDb: stack.info.cosmosConnectionString,
    ANQ_EVENTS_TOPIC_ENDPOINT: `${stack.info.hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`,
    ANQ_EVENTS_TOPIC_KEY: 'local-topic-key',
  };
  return spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'tools', 'replay.js'), '--file', stack.info.deadLetterFile, ...args], { env, encoding: 'utf8', timeout: 300_000 });
}

let clean: PipelineSnapshot;
let cleanUploaded: string[];

beforeAll(async () => {
  blobProxyPort = await findReusablePort();
  const stack = await startFaultStackProcess({ blobProxyPort, eventSource: EVENT_SOURCE });
  try {
    cleanUploaded = await run(stack);
    clean = await snapshot(stack);
    expect(fs.existsSync(stack.info.deadLetterFile) ? fs.readFileSync(stack.info.deadLetterFile, 'utf8') : '').toBe('');
  } finally {
    await stack.stop();
  }
}, 300_000);

test('given events dead-lettered while Cosmos DB answered 503, when they are listed and replayed, then the catalog equals a clean run; a second replay changes nothing', async () => {
  const stack = await startFaultStackProcess({ blobProxyPort, eventSource: EVENT_SOURCE });
  try {
    await stack.plan('cosmos', { seed: 7, rules: [{ action: { kind: 'status', status: 503 } }] });
    const uploaded = await run(stack);
    expect(uploaded.sort()).toEqual([...cleanUploaded].sort());
    await stack.plan('cosmos', null);
    const stats = await stack.stats();
    expect(stats.events.deadLettered).toBe(FILES.size);

    const listed = replay(stack, '--list');
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`^${FILES.size} dead-lettered event\\(s\\)`, 'm'));
    const rows = listed.stdout.split('\n').slice(2).filter(Boolean).map((l) => l.split('\t'));
    expect(rows).toHaveLength(FILES.size);
    for (const r of rows) {
      expect(r[1]).toBe('Microsoft.Storage.BlobCreated');
      expect(r[2]).toBe('MaxDeliveryAttemptsExceeded');
      // The function's answer to the last attempt: the transient failure it rethrew.
      expect(r[3]).toMatch(/^5\d\d$/);
      expect(r[4]).toMatch(/^[0-9a-f]{12}$/);
      expect(r[7]).toBe('no');
    }
    // No PHI in the listing: no blob names or URLs.
    for (const name of FILES.keys()) expect(listed.stdout).not.toContain(name);

    const applied = replay(stack, '--apply');
    expect({ status: applied.status, out: applied.status === 0 ? '' : applied.stdout + applied.stderr }).toEqual({ status: 0, out: '' });
    expect(applied.stdout).toContain(`replay: ${FILES.size} re-submitted, 0 skipped`);
    await stack.idle(90_000);
    const after = await snapshot(stack);
    const comparison = compareWithClean(uploaded, new Set(), clean, after);
    expect({ lost: comparison.lost, diverged: comparison.diverged, catalog: comparison.catalogDiff }).toEqual({ lost: [], diverged: [], catalog: [] });

    // The ledger skips what was replayed; --force re-submits, and ingestion leaves the catalog as it was.
    const again = replay(stack, '--apply');
    expect(again.stdout).toContain(`replay: 0 re-submitted, ${FILES.size} skipped`);
    const forced = replay(stack, '--apply', '--force');
    expect(forced.stdout).toContain(`replay: ${FILES.size} re-submitted`);
    await stack.idle(90_000);
    const afterForce = compareWithClean(uploaded, new Set(), clean, await snapshot(stack));
    expect({ lost: afterForce.lost, diverged: afterForce.diverged, catalog: afterForce.catalogDiff }).toEqual({ lost: [], diverged: [], catalog: [] });
    const relisted = replay(stack, '--list');
    expect(relisted.stdout.split('\n').slice(2).filter(Boolean).every((l) => l.endsWith('\tyes'))).toBe(true);
  } finally {
    await stack.stop();
  }
}, 600_000);
