/**
 * Files into the local ANQ replication target, then a snapshot, as replication does on the
 * cluster: copies every file of a folder (recursively) under `<target>/<prefix>` and asks the
 * Qumulo REST stand-in for a snapshot (`POST /v3/snapshots/`, as the REST API Guide's
 * snapshots/v3_snapshots.html describes it). The watcher then finds the files in the snapshot's
 * tree diff and publishes their events.
 *
 * `node dist/local/anqIngest.js <folder> [--prefix <relative path>]` with ANQ_LOCAL_TARGET (the
 * replication target folder), ANQ_REST_ENDPOINT and ANQ_REST_TOKEN set as `npm start` sets them.
 */
import * as fs from 'fs';
import * as path from 'path';

import { listFolder } from './upload';

export interface PlacedFiles {
  files: number;
  bytes: number;
  snapshot: { id: number; name: string };
}

/** Copies a folder's files into the replication target (temporary name, then rename, so no half-written file is snapshotted) and takes a snapshot. */
export async function placeAndSnapshot(options: {
  folder: string;
  targetDir: string;
  prefix: string;
  restEndpoint: string;
  restToken: string;
  nameSuffix?: string;
  /** Files left out, by relative path (e.g. a folder's manifest). */
  exclude?: (relative: string) => boolean;
}): Promise<PlacedFiles> {
  const prefix = options.prefix && !options.prefix.endsWith('/') ? `${options.prefix}/` : options.prefix;
  if (prefix.split('/').some((s) => s === '..' || s === '.')) throw new Error('the prefix must not have dot segments');
  let bytes = 0;
  const files = listFolder(path.resolve(options.folder), options.exclude);
  for (const f of files) {
    const to = path.join(options.targetDir, ...`${prefix}${f.relative}`.split('/'));
    fs.mkdirSync(path.dirname(to), { recursive: true });
    const partial = `${to}.partial-${process.pid}`;
    fs.copyFileSync(f.file, partial);
    fs.renameSync(partial, to);
    bytes += f.size;
  }
  const res = await fetch(`${options.restEndpoint.replace(/\/+$/, '')}/v3/snapshots/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${options.restToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name_suffix: options.nameSuffix ?? 'ingest' }),
  });
  if (!res.ok) throw new Error(`the REST stand-in refused the snapshot (${res.status}): is the local stack running (npm start)?`);
  const snapshot = (await res.json()) as { id: number; name: string };
  return { files: files.length, bytes, snapshot: { id: snapshot.id, name: snapshot.name } };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let folder: string | undefined;
  let prefix = process.env.ANQ_PREFIX ?? '';
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--prefix') prefix = args[++i] ?? '';
    else if (!a.startsWith('--')) folder = a;
  }
  const targetDir = process.env.ANQ_LOCAL_TARGET;
  const restEndpoint = process.env.ANQ_REST_ENDPOINT;
  const restToken = process.env.ANQ_REST_TOKEN;
  if (!folder || !fs.existsSync(folder) || !fs.statSync(folder).isDirectory() || !targetDir || !restEndpoint || !restToken) {
    console.error('usage: node dist/local/anqIngest.js <folder> [--prefix <relative path>] (ANQ_LOCAL_TARGET, ANQ_REST_ENDPOINT and ANQ_REST_TOKEN set)');
    process.exit(2);
  }
  const r = await placeAndSnapshot({ folder, targetDir, prefix, restEndpoint, restToken });
  console.log(`placed ${r.files} file(s) (${(r.bytes / 1048576).toFixed(1)} MB) in the replication target; snapshot ${r.snapshot.id} (${r.snapshot.name})`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
