/**
 * `node dist/tools/measureBackfill.js [files=100000] [--kill-at N] [--rate 0] [--concurrency 32] [--batch-size 1]`:
 * the backfill's rate through the local stack. Starts the stack (Azurite in memory), seeds
 * `files` generated small files straight into Azurite behind the event source (no event
 * announces them), runs the backfill to the end, and prints files, seconds, files per second and the ingestion outcomes. The local
 * webhook answers once the function is done, so emission and ingestion finish together.
 *
 * `--kill-at N` adds the resume check: the first backfill runs in a process of its own and is
 * killed (SIGKILL) once it has emitted N files; a second one resumes from its checkpoint. The
 * rate then covers both. Either way the run ends with the catalog's counts: every file must have
 * one index record, cataloged, and one research instance (`eachCatalogedOnce`; exit 1
 * otherwise). Events in flight at the kill are emitted again; one whose first ingestion was still
 * running is ingested twice at once, to the same record, copy and event id
 * (`secondDeliveriesCataloged`).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';

import { azuriteConnectionString } from '../local/emulators';
import { startStack } from '../local/stack';
import type { BackfillCheckpoint } from '../shared/backfill/backfill';
import { backfillMain } from './backfill';
import { seedInto } from './backfillArchive';

async function main(): Promise<void> {
  const [countArg, ...given] = process.argv.slice(2);
  const k = given.indexOf('--kill-at');
  const killAt = k >= 0 ? Number(given[k + 1]) : undefined;
  if (killAt !== undefined && !(Number.isInteger(killAt) && killAt > 0)) throw new Error('--kill-at takes a number of files');
  const rest = k >= 0 ? [...given.slice(0, k), ...given.slice(k + 2)] : given;
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
      // The resume check: a first backfill in a process of its own, killed (SIGKILL, no clean-up) once it has emitted `killAt` files.
      const killedAt = killAt === undefined ? undefined : await killedBackfill(projectRoot, args, env, path.join(dir, 'checkpoint.json'), killAt);
      const code = await backfillMain(args, env);
      const seconds = (Date.now() - t) / 1000;
      const db = new CosmosClient({ endpoint: stack.cosmosEndpoint, key: /AccountKey=([^;]+)/.exec(stack.env.CosmosDb ?? '')?.[1] ?? '', connectionPolicy: { enableEndpointDiscovery: false } }).database(stack.settings.cosmosDatabase);
      const count1 = async (container: string, query: string) => (await db.container(container).items.query<number>(query).fetchAll()).resources[0] ?? 0;
      const catalog = {
        indexRecords: await count1(stack.settings.indexContainer, 'SELECT VALUE COUNT(1) FROM c'),
        indexCataloged: await count1(stack.settings.indexContainer, "SELECT VALUE COUNT(1) FROM c WHERE c.status = 'cataloged'"),
        researchInstances: await count1(stack.settings.researchCatalogContainer, "SELECT VALUE COUNT(1) FROM c WHERE c.type = 'instance'"),
      };
      const outcomes: Record<string, number> = {};
      for (const line of fs.readFileSync(telemetry, 'utf8').split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line) as { kind: string; status?: string };
        if (r.kind === 'ingestion') outcomes[r.status ?? '?'] = (outcomes[r.status ?? '?'] ?? 0) + 1;
      }
      // Each file cataloged once: one index record, cataloged, and one research instance per file.
      // An event the killed run had in flight is emitted again on resume; when its first
      // ingestion is still running, both finish as 'cataloged' on the same record, copy and
      // event id (at least once, same result): counted apart as second deliveries.
      const resumeCheck = catalog.indexRecords === count && catalog.indexCataloged === count && catalog.researchInstances === count && (outcomes.cataloged ?? 0) >= count;
      console.log(JSON.stringify({ files: count, bytes, seedSeconds, backfillSeconds: seconds, filesPerSecond: Math.round((count / seconds) * 10) / 10, exit: code, ...(killedAt !== undefined ? { killedAfterEmitting: killedAt } : {}), outcomes, catalog, eachCatalogedOnce: resumeCheck, secondDeliveriesCataloged: (outcomes.cataloged ?? 0) - count, cpus: os.cpus().length, args: args.map((a) => (a.startsWith(dir) ? path.basename(a) : a)) }));
      if (!resumeCheck || code !== 0) process.exitCode = 1;
    } finally {
      await stack.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the backfill CLI in a child process and SIGKILLs it once its checkpoint counts `killAt` files emitted; resolves with that count. */
async function killedBackfill(projectRoot: string, args: string[], env: NodeJS.ProcessEnv, checkpoint: string, killAt: number): Promise<number> {
  const child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'tools', 'backfill.js'), ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  for (;;) {
    let emitted = 0;
    try {
      emitted = (JSON.parse(fs.readFileSync(checkpoint, 'utf8')) as BackfillCheckpoint).counts.emitted;
    } catch {
      // Not written yet, or caught mid-rename.
    }
    if (emitted >= killAt) {
      child.kill('SIGKILL');
      await exited;
      process.stderr.write(`\nkilled the backfill after ${emitted} files emitted; resuming\n`);
      return emitted;
    }
    if (child.exitCode !== null) throw new Error(`the first backfill ended (${child.exitCode}) before ${killAt} files were emitted`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

main().then(() => process.exit(process.exitCode ?? 0), (e: unknown) => { console.error(e); process.exit(1); });
