/**
 * The ANQ source adapter on a real S3-compatible server (s3rver) and the Qumulo REST stand-in,
 * both started here over a temporary replication target; and the stand-in's answers checked
 * against the shapes of the Qumulo REST API Guide:
 * - docs.qumulo.com/rest-api-guide/snapshots/v3_snapshots.html (GET and POST /v3/snapshots/),
 * - docs.qumulo.com/rest-api-guide/snapshots/v2_snapshots_newer_id_changes-since_older_id.html,
 * - docs.qumulo.com/rest-api-guide/files/files_ref_info_attributes.html.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

import { AnqStandIn, STAND_IN_S3_KEY, startAnqStandIn } from '../../local/services/anqStandIn';
import { coveringSnapshotSources, QumuloRestClient } from '../../shared/anq/qumuloRest';
import { createAnqSourceStore } from '../../shared/anq/sourceRuntime';
import { loadAnqSettings } from '../../shared/config/anqSettings';
import { ErrorCodes } from '../../shared/errors';
import { anqObjectName, anqS3Client, AnqSourceStore, listAnqFiles, RestSnapshotResolver } from '../../shared/storage/anqSourceStore';

const BUCKET = 'replica';
const TOKEN = 'stand-in-token';
let dir: string;
let target: string;
let standIn: AnqStandIn;
let s3: S3Client;
let rest: QumuloRestClient;
let store: AnqSourceStore;

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

function place(rel: string, content: Buffer): void {
  fs.mkdirSync(path.dirname(path.join(target, rel)), { recursive: true });
  fs.writeFileSync(path.join(target, rel), content);
}

async function restGet(p: string, token = TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${standIn.restEndpoint}${p}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'anq-source-'));
  target = path.join(dir, 'target');
  standIn = await startAnqStandIn({ targetDir: target, stateDir: path.join(dir, 'state'), exportPath: '/replica', bucket: BUCKET, restToken: TOKEN });
  s3 = anqS3Client({ endpoint: standIn.s3Endpoint, bucket: BUCKET, region: 'us-east-1', ...STAND_IN_S3_KEY });
  rest = new QumuloRestClient(standIn.restEndpoint, TOKEN);
  store = new AnqSourceStore(s3, new RestSnapshotResolver((o) => rest.listSnapshots(o), (s) => s.source_file_id === standIn.exportFileId, 0));
});

afterAll(async () => {
  s3?.destroy();
  await standIn?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('AnqSourceStore on the S3 stand-in', () => {
  test('given a replicated file, then open gives its version and first bytes, and readRange the rest of that version', async () => {
    const content = randomBytes(300_000);
    place('dicom/a.dcm', content);
    await standIn.takeSnapshot();
    const opened = await store.open(BUCKET, 'dicom/a.dcm', 65_536);
    expect(opened).toBeDefined();
    expect(opened!.props.size).toBe(300_000);
    expect(opened!.props.etag).not.toBe('');
    const head = await collect(opened!.head);
    expect(head.equals(content.subarray(0, 65_536))).toBe(true);
    const rest1 = await collect(await store.readRange(BUCKET, 'dicom/a.dcm', opened!.props.etag, 65_536, undefined));
    expect(Buffer.concat([head, rest1]).equals(content)).toBe(true);
    const middle = await collect(await store.readRange(BUCKET, 'dicom/a.dcm', opened!.props.etag, 1000, 24));
    expect(middle.equals(content.subarray(1000, 1024))).toBe(true);
    expect(await store.getProperties(BUCKET, 'dicom/a.dcm')).toMatchObject({ etag: opened!.props.etag, size: 300_000 });
  });

  test('given the live file rewritten while it is read, then the next range fails SOURCE_CHANGED', async () => {
    place('dicom/live.dcm', Buffer.from('first version of the file'));
    await standIn.takeSnapshot();
    const opened = await store.open(BUCKET, 'dicom/live.dcm', 4);
    opened!.discard();
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'dicom/live.dcm', Body: Buffer.from('second version, longer than the first') }));
    await expect(store.readRange(BUCKET, 'dicom/live.dcm', opened!.props.etag, 4, undefined)).rejects.toMatchObject({ code: ErrorCodes.SOURCE_CHANGED });
  });

  test('given a file read as of a snapshot, then the newest snapshot from the named one is read, and a version opened stays pinned to its snapshot', async () => {
    place('dicom/s.dcm', Buffer.from('as replicated in the first snapshot'));
    const first = await standIn.takeSnapshot('replication');
    const name = anqObjectName('dicom/s.dcm', first.id);
    const opened = await store.open(BUCKET, name, 1024);
    expect((await collect(opened!.head)).toString()).toBe('as replicated in the first snapshot');

    // Replication writes a new version and the next snapshot is taken meanwhile.
    place('dicom/s.dcm', Buffer.from('as replicated in the second snapshot'));
    await standIn.takeSnapshot('replication');
    // The version already opened is read on from its own snapshot, consistent to the end.
    const pinned = await collect(await store.readRange(BUCKET, name, opened!.props.etag, 3, undefined));
    expect(pinned.toString()).toBe('replicated in the first snapshot');
    // A new read of the same event (or a late one for the first snapshot) sees the newest snapshot.
    const again = await store.open(BUCKET, name, 1024);
    expect((await collect(again!.head)).toString()).toBe('as replicated in the second snapshot');
    expect(again!.props.etag).not.toBe(opened!.props.etag);
  });

  test('given the snapshot a version was opened from expiring before the rest is read, then SOURCE_CHANGED (read again from a newer one), not a deletion', async () => {
    place('dicom/exp.dcm', Buffer.from('kept through the snapshots'));
    const first = await standIn.takeSnapshot('replication');
    const name = anqObjectName('dicom/exp.dcm', first.id);
    const opened = await store.open(BUCKET, name, 4);
    opened!.discard();
    await standIn.takeSnapshot('replication');
    await standIn.deleteSnapshot(first.id);
    await expect(store.readRange(BUCKET, name, opened!.props.etag, 4, undefined)).rejects.toMatchObject({ code: ErrorCodes.SOURCE_CHANGED });
    // What the ingestion does next: the current properties, then the read again, from the newer snapshot.
    const now = await store.getProperties(BUCKET, name);
    expect(now?.size).toBe(26);
    expect((await collect(await store.readRange(BUCKET, name, now!.etag, 0, undefined))).toString()).toBe('kept through the snapshots');
  });

  test('given a file deleted by a later snapshot, then it reads as gone, and a range of the live file as SOURCE_NOT_FOUND', async () => {
    place('dicom/gone.dcm', Buffer.from('soon deleted'));
    const snap = await standIn.takeSnapshot();
    const name = anqObjectName('dicom/gone.dcm', snap.id);
    const props = await store.getProperties(BUCKET, name);
    expect(props?.size).toBe(12);
    fs.rmSync(path.join(target, 'dicom/gone.dcm'));
    await standIn.takeSnapshot();
    expect(await store.open(BUCKET, name, 1024)).toBeUndefined();
    expect(await store.getProperties(BUCKET, name)).toBeUndefined();
    expect(await store.open(BUCKET, 'dicom/gone.dcm', 1024)).toBeUndefined();
    await expect(store.readRange(BUCKET, 'dicom/gone.dcm', props!.etag, 0, undefined)).rejects.toMatchObject({ code: ErrorCodes.SOURCE_NOT_FOUND });
  });

  test('given an empty file, then open gives size 0 and no bytes', async () => {
    place('dicom/empty.dcm', Buffer.alloc(0));
    await standIn.takeSnapshot();
    const opened = await store.open(BUCKET, 'dicom/empty.dcm', 1024);
    expect(opened?.props.size).toBe(0);
    expect((await collect(opened!.head)).length).toBe(0);
  });

  test('given a 48 MB file, then reading it in full keeps memory flat (streamed, not buffered)', async () => {
    const size = 48 * 1024 * 1024;
    const big = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) big.writeUInt32LE(i, i);
    place('dicom/big.dcm', big);
    await standIn.takeSnapshot();
    const opened = await store.open(BUCKET, 'dicom/big.dcm', 65_536);
    await collect(opened!.head);
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    let read = 65_536;
    for await (const chunk of await store.readRange(BUCKET, 'dicom/big.dcm', opened!.props.etag, 65_536, undefined)) {
      read += chunk.length;
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(read).toBe(size);
    expect(peak - before).toBeLessThan(24 * 1024 * 1024);
  });
});

describe('listAnqFiles (ListObjectsV2)', () => {
  // One page per listing here: s3rver makes its continuation tokens with DES, which OpenSSL 3
  // (Node >= 17) refuses, so it fails a second page with a 500. The paging loop is tested on a
  // fake client in test/unit/storage/anqSourceStore.test.ts.
  test('given files in the live tree and in snapshots, then a listing gives either, keys relative to the bucket root', async () => {
    for (let i = 0; i < 5; i++) place(`dicom/list/${i}.dcm`, Buffer.from(`file ${i}`));
    const snap = await standIn.takeSnapshot('replication');
    fs.rmSync(path.join(target, 'dicom/list/4.dcm'));
    await standIn.takeSnapshot('replication');
    const collectKeys = async (snapshotName?: string) => {
      const out: string[] = [];
      for await (const f of listAnqFiles(s3, BUCKET, 'dicom/list/', { snapshotName })) {
        expect(f.size).toBe(6);
        expect(f.etag).not.toBe('');
        out.push(f.key);
      }
      return out;
    };
    expect(await collectKeys(snap.name)).toEqual([0, 1, 2, 3, 4].map((i) => `dicom/list/${i}.dcm`));
    expect(await collectKeys()).toEqual([0, 1, 2, 3].map((i) => `dicom/list/${i}.dcm`));
  });
});

describe('createAnqSourceStore from the settings', () => {
  test('given snapshot reads, then the store reads as of the newest snapshot of the export, found through the REST API', async () => {
    const settings = loadAnqSettings({
      ANQ_S3_ENDPOINT: standIn.s3Endpoint,
      ANQ_CLUSTER: 'anq-local',
      ANQ_S3_BUCKET: BUCKET,
      ANQ_S3_ACCESS_KEY_ID: STAND_IN_S3_KEY.accessKeyId,
      ANQ_S3_SECRET_ACCESS_KEY: STAND_IN_S3_KEY.secretAccessKey,
      ANQ_EXPORT_PATH: '/replica',
      ANQ_PREFIX: 'dicom',
      ANQ_REST_ENDPOINT: standIn.restEndpoint,
      ANQ_REST_TOKEN: TOKEN,
    })!;
    expect(await coveringSnapshotSources(rest, settings)).toEqual([standIn.exportFileId]);
    place('dicom/settings.dcm', Buffer.from('through the settings'));
    const snap = await standIn.takeSnapshot('replication');
    const fromSettings = createAnqSourceStore(settings);
    const opened = await fromSettings.open(BUCKET, anqObjectName('dicom/settings.dcm', snap.id), 1024);
    expect((await collect(opened!.head)).toString()).toBe('through the settings');
    await expect(coveringSnapshotSources(rest, { exportPath: '/not-there' })).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID });
  });
});

describe('Qumulo REST stand-in: the documented shapes', () => {
  test('given no bearer token, then 401', async () => {
    expect((await restGet('/v3/snapshots/', 'wrong')).status).toBe(401);
  });

  test('GET /v3/snapshots/ lists entries with id number, name string, timestamp RFC 3339, source_file_id string, policy_id, expiration, in_delete boolean', async () => {
    const { status, body } = await restGet('/v3/snapshots/?filter=exclude_in_delete');
    expect(status).toBe(200);
    const entries = body.entries as Record<string, unknown>[];
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) {
      expect(Object.keys(e).sort()).toEqual(['expiration', 'id', 'in_delete', 'name', 'policy_id', 'source_file_id', 'timestamp']);
      expect(typeof e.id).toBe('number');
      expect(e.name).toMatch(new RegExp(`^${String(e.id)}_`));
      expect(e.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);
      expect(typeof e.source_file_id).toBe('string');
      expect(e.policy_id === null || typeof e.policy_id === 'number').toBe(true);
      expect(e.expiration === null || typeof e.expiration === 'string').toBe(true);
      expect(typeof e.in_delete).toBe('boolean');
    }
  });

  test('POST /v3/snapshots/ with name_suffix creates a snapshot named "<id>_<suffix>"', async () => {
    const res = await fetch(`${standIn.restEndpoint}/v3/snapshots/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name_suffix: 'manual' }),
    });
    const body = (await res.json()) as { id: number; name: string };
    expect(res.status).toBe(200);
    expect(body.name).toBe(`${body.id}_manual`);
  });

  test('GET changes-since answers entries of {op, path} with op CREATE/MODIFY/DELETE, paged by after and limit until paging.next is null', async () => {
    const older = await standIn.takeSnapshot();
    place('dicom/p/1.dcm', Buffer.from('1'));
    place('dicom/p/2.dcm', Buffer.from('2'));
    place('dicom/a.dcm', Buffer.from('a modified'));
    fs.rmSync(path.join(target, 'dicom/empty.dcm'));
    const newer = await standIn.takeSnapshot();

    const seen: { op: string; path: string }[] = [];
    let next: string | null = `/v2/snapshots/${newer.id}/changes-since/${older.id}?limit=2`;
    let pages = 0;
    while (next) {
      const { status, body } = await restGet(next);
      expect(status).toBe(200);
      expect(Object.keys(body).sort()).toEqual(['entries', 'paging']);
      const entries = body.entries as Record<string, unknown>[];
      expect(entries.length).toBeLessThanOrEqual(2);
      for (const e of entries) {
        expect(Object.keys(e).sort()).toEqual(['op', 'path']);
        expect(['CREATE', 'MODIFY', 'DELETE']).toContain(e.op);
        expect(typeof e.path).toBe('string');
        seen.push(e as { op: string; path: string });
      }
      next = (body.paging as { next: string | null }).next;
      pages++;
    }
    expect(pages).toBeGreaterThan(1);
    expect(seen).toEqual(
      expect.arrayContaining([
        { op: 'CREATE', path: '/replica/dicom/p/1.dcm' },
        { op: 'CREATE', path: '/replica/dicom/p/2.dcm' },
        { op: 'CREATE', path: '/replica/dicom/p/' },
        { op: 'MODIFY', path: '/replica/dicom/a.dcm' },
        { op: 'DELETE', path: '/replica/dicom/empty.dcm' },
        { op: 'MODIFY', path: '/replica/dicom/' },
      ]),
    );
    expect(seen).toHaveLength(6);
    // The client reads the same pages through the `after` key of paging.next.
    const viaClient: unknown[] = [];
    let after: string | undefined;
    do {
      const page = await rest.changesSince(newer.id, older.id, after, { limit: 4 });
      viaClient.push(...page.entries);
      after = page.after;
    } while (after !== undefined);
    expect(viaClient).toEqual(seen);
  });

  test('GET changes-since for a snapshot that does not exist answers 404, which the client reports as NOT_FOUND', async () => {
    expect((await restGet('/v2/snapshots/999/changes-since/1')).status).toBe(404);
    await expect(rest.changesSince(999, 1, undefined)).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND });
  });

  test('GET /v1/files/{ref}/info/attributes answers the documented fields and types, as of a snapshot or the head', async () => {
    const snaps = await rest.listSnapshots();
    const latest = snaps.at(-1)!;
    const { status, body } = await restGet(`/v1/files/${encodeURIComponent('/replica/dicom/p/1.dcm')}/info/attributes?snapshot=${latest.id}`);
    expect(status).toBe(200);
    const strings = ['path', 'name', 'type', 'file_number', 'id', 'mode', 'owner', 'group', 'blocks', 'datablocks', 'metablocks', 'size', 'access_time', 'modification_time', 'change_time', 'creation_time', 'symlink_target_type', 'data_revision'];
    for (const k of strings) expect(typeof body[k]).toBe('string');
    for (const k of ['num_links', 'child_count']) expect(typeof body[k]).toBe('number');
    expect(body).toMatchObject({ path: '/replica/dicom/p/1.dcm', name: '1.dcm', type: 'FS_FILE_TYPE_FILE', size: '1' });
    expect(body.modification_time).toMatch(/^\d{4}-\d\d-\d\dT/);
    const dirAttrs = await rest.attributes('/replica/dicom/p/');
    expect(dirAttrs).toMatchObject({ type: 'FS_FILE_TYPE_DIRECTORY', path: '/replica/dicom/p/' });
    // The same file by its id.
    expect((await restGet(`/v1/files/${String(body.id)}/info/attributes?snapshot=${latest.id}`)).body.path).toBe('/replica/dicom/p/1.dcm');
    // A file deleted before the snapshot is not in it.
    expect((await restGet(`/v1/files/${encodeURIComponent('/replica/dicom/empty.dcm')}/info/attributes?snapshot=${latest.id}`)).status).toBe(404);
    expect(await rest.attributes('/replica/dicom/empty.dcm', latest.id)).toBeUndefined();
  });
});
