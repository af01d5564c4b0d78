/**
 * `npm run ingest -- <folder> [--prefix <p>]`: copies every file of a folder (recursively) into
 * the ANQ replication target of a running local stack (`npm start`) and takes a snapshot, as
 * replication does on the cluster; the snapshot watcher then publishes a FileReplicated event
 * for each on its next tick. The stack says where its stand-ins are in .local-data/anq.json.
 *
 * `npm run ingest -- <folder> --blob [--prefix <p>] [--concurrency <n>]`: uploads them into the
 * landing container instead; blob names keep the relative path, and the event source delivers
 * a BlobCreated for each, as Event Grid would.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as path from 'path';

import { placeAndSnapshot } from './anqIngest';
import { azuriteConnectionString } from './emulators';
import { applyLocalSettings, DEFAULT_PORTS } from './stack';
import { listFolder, uploadFiles } from './upload';

function usage(message?: string): never {
  if (message) console.error(message);
  console.error('usage: npm run ingest -- <folder> [--prefix <path prefix>]                        (into the ANQ replication target, then a snapshot)');
  console.error('       npm run ingest -- <folder> --blob [--prefix <blob name prefix>] [--concurrency <n>]   (into the landing container)');
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let folder: string | undefined;
  let prefix = '';
  let concurrency = 8;
  let blob = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--blob') blob = true;
    else if (a === '--prefix') prefix = args[++i] ?? usage('--prefix needs a value');
    else if (a === '--concurrency') concurrency = Number(args[++i]);
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else folder = a;
  }
  if (!folder) usage();
  if (!Number.isInteger(concurrency) || concurrency < 1) usage('--concurrency must be a positive whole number');
  const root = path.resolve(folder);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) usage(`not a folder: ${folder}`);
  if (prefix && !prefix.endsWith('/')) prefix += '/';
  if (!blob) return ingestIntoAnq(root, prefix);

  applyLocalSettings(path.resolve(__dirname, '..', '..', 'local.settings.json'));
  const connection =
    process.env.SourceStorage ??
    azuriteConnectionString(Number(process.env.LOCAL_BLOB_PORT ?? DEFAULT_PORTS.blob), Number(process.env.LOCAL_QUEUE_PORT ?? DEFAULT_PORTS.queue));
  const containerName = (process.env.SOURCE_CONTAINERS ?? 'anq-replica').split(',')[0]?.trim() || 'anq-replica';
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(containerName);
  try {
    if (!(await container.exists())) usage(`container ${containerName} does not exist: is the local stack running (npm start)?`);
  } catch (err) {
    usage(`cannot reach the blob service (${(err as Error).message}): is the local stack running (npm start)?`);
  }

  const files = listFolder(root);
  const started = Date.now();
  const tty = process.stdout.isTTY === true;
  const result = await uploadFiles(container, files, {
    prefix,
    concurrency,
    onProgress: (p) => {
      const line = `uploaded ${p.done}/${p.total}${p.failed ? `, failed ${p.failed}` : ''} (${(p.bytes / 1048576).toFixed(1)} MB)`;
      if (tty) process.stdout.write(`\r\x1b[2K${line}`);
      else if (p.done + p.failed === p.total || (p.done + p.failed) % 50 === 0) console.log(line);
    },
  });
  if (tty) process.stdout.write('\n');
  for (const f of result.failures) console.error(`failed: ${f.relative}: ${f.message}`);
  console.log(`${result.done} file(s) into ${containerName} in ${((Date.now() - started) / 1000).toFixed(1)} s; the local event source delivers them to the ingestion`);
  if (result.failed > 0) process.exit(1);
}

/** The ANQ side of the running stack, as `npm start` wrote it (local/start.ts). */
interface LocalAnqInfo {
  targetDir: string;
  prefix: string;
  restEndpoint: string;
  restToken: string;
}

async function ingestIntoAnq(root: string, prefix: string): Promise<void> {
  const infoFile = path.resolve(__dirname, '..', '..', '.local-data', 'anq.json');
  if (!fs.existsSync(infoFile)) usage(`no ${path.relative(process.cwd(), infoFile)}: is the local stack running (npm start)? (--blob uploads into the landing container)`);
  const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as LocalAnqInfo;
  const started = Date.now();
  let placed;
  try {
    placed = await placeAndSnapshot({
      folder: root,
      targetDir: path.join(info.targetDir, ...info.prefix.split('/').filter(Boolean)),
      prefix,
      restEndpoint: info.restEndpoint,
      restToken: info.restToken,
    });
  } catch (err) {
    usage(`${(err as Error).message} (the REST stand-in at ${info.restEndpoint})`);
  }
  console.log(
    `${placed.files} file(s) (${(placed.bytes / 1048576).toFixed(1)} MB) into the ANQ replication target in ${((Date.now() - started) / 1000).toFixed(1)} s; snapshot ${placed.snapshot.id} (${placed.snapshot.name}): the snapshot watcher publishes their events on its next tick`,
  );
}

main().catch((err: unknown) => {
  console.error(`ingest failed: ${(err as Error).message}`);
  process.exit(1);
});
