/**
 * `node dist/tools/measureBackfill.js [files=100000] [--rate 0] [--concurrency 32] [--batch-size 1]`:
 * the backfill's rate through the local stack. Starts the stack (Azurite in memory), seeds
 * `files` generated small files straight into Azurite behind the event source (no event
 * announces them), runs the backfill to the end, and prints files, seconds, files per second and the ingestion outcomes. The local
 * webhook answers once the function is done, so emission and ingestion finish together.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { azuriteConnectionString } from '../local/emulators';
import { startStack } from '../local/stack';
import { backfillMain } from './backfill';
import { seedInto } from './backfillArchive';

async function main(): Promise<void> {
  const [countArg, ...rest] = process.argv.slice(2);
  const count = Number(countArg ?? 100_000);
  if (!Number.isInteger(count) || count < 1) throw new Error('the first argument is the number of files');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vna-backfill-measure-'));
  const projectRoot = path.resolve(__dirname, '..', '..');
  try {
    const telemetry = path.join(dir, 'telemetry.jsonl');
    // Azurite in memory: on disk, it rewrites its whole blob database (a JSON file) every few
    // seconds, which past ~40,000 blobs takes all of its CPU and stalls the upload.
    const stack = await startStack({
      projectRoot, ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 }, persistence: { inMemory: true }, localSettings: false,
      dataDir: path.join(dir, 'data'), deidKey: 'backfill-measure-deid-key-0123456789abcdef', deidKeyId: 'measure',
      env: { TELEMETRY_CAPTURE_FILE: telemetry, SOURCE_CONTAINERS: 'anq-replica' }, logSink: () => undefined,
    });
    try {
      let t = Date.now();
      // Straight into Azurite, behind the event source: an archive no event announced.
      const raw = BlobServiceClient.fromConnectionString(azuriteConnectionString(stack.azuriteBlobPort, stack.queuePort));
      const bytes = await seedInto(raw, { container: 'anq-replica', count, seed: 1800, concurrency: 32, onProgress: (d) => { if (d % 10_000 === 0) process.stderr.write(`seeded ${d} at ${new Date().toISOString()}\n`); } });
      const seedSeconds = (Date.now() - t) / 1000;
      const env = { ...process.env, ...stack.env, ANQ_EVENTS_TOPIC_ENDPOINT: `${stack.hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`, ANQ_EVENTS_TOPIC_KEY: 'local-topic-key', TELEMETRY_CAPTURE_FILE: path.join(dir, 'backfill-telemetry.jsonl') };
      const args = ['--rate', '0', '--concurrency', '32', '--batch-size', '1', '--checkpoint', path.join(dir, 'checkpoint.json'), ...rest];
      t = Date.now();
      const code = await backfillMain(args, env);
      const seconds = (Date.now() - t) / 1000;
      const outcomes: Record<string, number> = {};
      for (const line of fs.readFileSync(telemetry, 'utf8').split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line) as { kind: string; status?: string };
        if (r.kind === 'ingestion') outcomes[r.status ?? '?'] = (outcomes[r.status ?? '?'] ?? 0) + 1;
      }
      console.log(JSON.stringify({ files: count, bytes, seedSeconds, backfillSeconds: seconds, filesPerSecond: Math.round((count / seconds) * 10) / 10, exit: code, outcomes, cpus: os.cpus().length, args }));
    } finally {
      await stack.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
