/**
 * The Qumulo REST stand-in's change-notification stream, checked against the documented shapes:
 * - docs.qumulo.com/rest-api-guide/files/files_ref_notify.html (`GET /v1/files/{ref}/notify`,
 *   `filter` as a CSV of the listed notification types, `recursive`);
 * - docs.qumulo.com/azure-native-administrator-guide/watching-file-attribute-directory-changes/rest.html
 *   (server-sent events; a comment line once registered and as keep-alive; each `data:` a JSON
 *   list of `{ type, path, spine, stream_name }`, `path` relative to the watched directory,
 *   `spine` file ids from the oldest ancestor to the file, `stream_name` null for the default stream);
 * - docs.qumulo.com/administrator-guide/watching-file-attribute-directory-changes/how-file-system-change-notifications-work.html
 *   ("In case a client can't keep up ..., the cluster stops queuing events and produces an error").
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

import { QumuloNotifyClient } from '../../shared/anq/qumuloRest';
import { ErrorCodes } from '../../shared/errors';
import { AnqTarget, STAND_IN_TOKEN, startAnqTarget, waitUntil } from './anqHarness';

let t: AnqTarget;

beforeAll(async () => {
  t = await startAnqTarget('anq-notify-stand-in', { notify: { pollMs: 30, maxBufferedBytes: 64 * 1024 } });
});

afterAll(async () => {
  await t?.close();
});

/** An open stream read raw: the text so far, and the parsed `data:` lists. */
function openRaw(query: string, ref = '/replica/dicom/'): Promise<{ res: http.IncomingMessage; text: () => string; lists: () => Record<string, unknown>[][]; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${t.standIn.restEndpoint}/v1/files/${encodeURIComponent(ref)}/notify?${query}`, { headers: { authorization: `Bearer ${STAND_IN_TOKEN}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      resolve({
        res,
        text: () => text,
        lists: () => text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>[]),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

describe('GET /v1/files/{ref}/notify on the stand-in', () => {
  test('given a recursive watch, then text/event-stream, a comment once registered, and lists of {type, path, spine, stream_name} for a file added, renamed and removed', async () => {
    fs.mkdirSync(path.join(t.target, 'dicom'), { recursive: true });
    await t.standIn.settled();
    const s = await openRaw('recursive=true');
    expect(s.res.statusCode).toBe(200);
    expect(s.res.headers['content-type']).toBe('text/event-stream');
    await waitUntil('registered', () => s.text().startsWith(':'));

    t.place('dicom/a/one.dcm', Buffer.from('one'));
    await t.standIn.settled();
    fs.renameSync(path.join(t.target, 'dicom/a/one.dcm'), path.join(t.target, 'dicom/a/two.dcm'));
    await t.standIn.settled();
    fs.rmSync(path.join(t.target, 'dicom/a/two.dcm'));
    await t.standIn.settled();
    await waitUntil('three lists', () => s.lists().length >= 3);
    const all = s.lists().flat();
    for (const n of all) {
      expect(Object.keys(n).sort()).toEqual(['path', 'spine', 'stream_name', 'type']);
      expect(typeof n.type).toBe('string');
      expect(typeof n.path).toBe('string');
      expect(Array.isArray(n.spine) && (n.spine as unknown[]).every((id) => typeof id === 'string')).toBe(true);
      expect(n.stream_name).toBeNull();
    }
    const seen = all.map((n) => `${n.type as string} ${n.path as string}`);
    expect(seen).toEqual([
      'child_dir_added a',
      'child_file_added a/one.dcm',
      'child_data_written a/one.dcm',
      'child_file_moved_from a/one.dcm',
      'child_file_moved_to a/two.dcm',
      'child_file_removed a/two.dcm',
    ]);
    // The spine ends with the file's own id and starts at the export's root.
    const added = all[1]!;
    expect((added.spine as string[]).length).toBe(4);
    expect((added.spine as string[])[0]).toBe(t.standIn.exportFileId);
    s.close();
  });

  test('given a filter and no recursion, then only those types, for entries right under the directory', async () => {
    const s = await openRaw('filter=child_file_added&recursive=false');
    await waitUntil('registered', () => s.text().startsWith(':'));
    t.place('dicom/top.dcm', Buffer.from('top'));
    t.place('dicom/deep/below.dcm', Buffer.from('below'));
    await t.standIn.settled();
    t.place('dicom/last.dcm', Buffer.from('last'));
    await t.standIn.settled();
    await waitUntil('two lists', () => s.lists().length >= 2);
    expect(s.lists().flat().map((n) => `${n.type as string} ${n.path as string}`)).toEqual(['child_file_added top.dcm', 'child_file_added last.dcm']);
    s.close();
  });

  test('given an unknown notification type, then 400 naming it; a file rather than a directory, 400; a missing directory, 404', async () => {
    const get = async (ref: string, q: string) => {
      const r = await fetch(`${t.standIn.restEndpoint}/v1/files/${encodeURIComponent(ref)}/notify?${q}`, { headers: { authorization: `Bearer ${STAND_IN_TOKEN}` } });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const bad = await get('/replica/dicom/', 'filter=child_file_added,child_file_exploded');
    expect(bad).toMatchObject({ status: 400, body: { error_class: 'http_bad_request_error' } });
    expect(bad.body.description).toContain('child_file_exploded');
    expect((await get('/replica/dicom/top.dcm', 'recursive=true')).status).toBe(400);
    expect(await get('/replica/none/', 'recursive=true')).toMatchObject({ status: 404, body: { error_class: 'fs_no_such_entry_error' } });
  });

  test('given a client that stops reading while changes pour in, then the stand-in drops it with an error event after what was queued, and the client reports SERVICE_UNAVAILABLE', async () => {
    const client = new QumuloNotifyClient(t.standIn.restEndpoint, STAND_IN_TOKEN);
    const stream = client.notifications('/replica/dicom/', {})[Symbol.asyncIterator]();
    expect((await stream.next()).value).toEqual({ kind: 'registered' });
    const dropped = t.standIn.notifyStreams().dropped;
    // Long paths make each notification large; the client reads nothing meanwhile.
    const deep = Array.from({ length: 8 }, (_, i) => `${String(i)}${'d'.repeat(180)}`).join('/');
    for (let round = 0; round < 40 && t.standIn.notifyStreams().dropped === dropped; round++) {
      for (let i = 0; i < 100; i++) t.place(`dicom/flood/${deep}/${round}-${i}.dcm`, Buffer.from('x'));
      await t.standIn.settled();
    }
    expect(t.standIn.notifyStreams().dropped).toBe(dropped + 1);
    // Reading again: what was queued comes first, then the error ends the stream.
    let lists = 0;
    let error: unknown;
    try {
      for (let r = await stream.next(); !r.done; r = await stream.next()) lists++;
    } catch (e) {
      error = e;
    }
    expect(lists).toBeGreaterThan(0);
    expect(error).toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect((error as Error).message).toContain('fs_notify_queue_overflow_error');
    fs.rmSync(path.join(t.target, 'dicom/flood'), { recursive: true, force: true });
    await t.standIn.settled();
  }, 120_000);
});
