/**
 * The notify-mode watcher's core on in-memory fakes of its interfaces: a live tree with S3's
 * key order, a change-notification stream (the payload of the Qumulo administrator guide,
 * watching-file-attribute-directory-changes/rest.html) that the test feeds or ends, an event
 * sink, and a listing state store with conditional writes.
 */
import { ListingState, ListingStateStore, LiveFile, LiveTree, NotifyWatcherDeps, runNotifySession } from '../../../shared/anq/notifyWatcher';
import type { NotifyStreamItem, QumuloNotification, QumuloNotifyApi } from '../../../shared/anq/qumuloRest';
import type { ArchiveEventSink, ArchiveFileEvent } from '../../../shared/anq/watcher';
import { ErrorCodes, PipelineError } from '../../../shared/errors';

class FakeTree implements LiveTree {
  files = new Map<string, LiveFile>();
  private version = 0;

  write(key: string, ageMs = 60_000): void {
    const v = ++this.version;
    this.files.set(key, { key, etag: `e${v}`, size: v, lastModified: new Date(Date.now() - ageMs) });
  }

  async head(key: string): Promise<LiveFile | undefined> {
    return this.files.get(key);
  }

  async listPage(prefix: string, after: string | undefined, options: { limit: number }) {
    const keys = [...this.files.keys()].filter((k) => k.startsWith(prefix) && (after === undefined || Buffer.compare(Buffer.from(k), Buffer.from(after)) > 0)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const page = keys.slice(0, options.limit);
    return { files: page.map((k) => this.files.get(k) as LiveFile), lastKey: page.at(-1), done: keys.length <= options.limit };
  }
}

/** A stream the test feeds: registered at once, then what `send` gives, until `drop`. */
class FakeStream implements QumuloNotifyApi {
  opened = 0;
  failWith?: PipelineError;
  private queue: (QumuloNotification[] | Error)[] = [];
  private wake?: () => void;

  send(...list: [string, string][]): void {
    this.queue.push(list.map(([type, path]) => ({ type, path, spine: [], stream_name: null })));
    this.wake?.();
  }

  drop(): void {
    this.queue.push(new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'dropped'));
    this.wake?.();
  }

  async *notifications(_dir: string, options: { abortSignal?: AbortSignal }): AsyncGenerator<NotifyStreamItem> {
    if (this.failWith) throw this.failWith;
    this.opened++;
    yield { kind: 'registered' };
    for (;;) {
      while (this.queue.length === 0) {
        if (options.abortSignal?.aborted) throw options.abortSignal.reason;
        await new Promise<void>((r) => {
          this.wake = r;
          options.abortSignal?.addEventListener('abort', () => r(), { once: true });
        });
      }
      const next = this.queue.shift() as QumuloNotification[] | Error;
      if (next instanceof Error) throw next;
      yield { kind: 'notifications', notifications: next };
    }
  }
}

class MemoryState implements ListingStateStore {
  doc?: { document: ListingState; etag: string };
  writes = 0;
  conflictAfter?: number;
  async read() {
    return this.doc && { document: structuredClone(this.doc.document), etag: this.doc.etag };
  }
  async write(document: ListingState, expectedEtag: string | undefined): Promise<string> {
    if (this.doc?.etag !== expectedEtag || (this.conflictAfter !== undefined && this.writes >= this.conflictAfter)) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed');
    this.writes++;
    this.doc = { document: structuredClone(document), etag: `v${this.writes}` };
    return this.doc.etag;
  }
}

class Sink implements ArchiveEventSink {
  events: ArchiveFileEvent[] = [];
  async publish(events: ArchiveFileEvent[]): Promise<void> {
    this.events.push(...events);
  }
  seen(): string[] {
    return this.events.map((e) => `${e.type === 'VNA.Archive.FileDeleted' ? 'deleted' : 'replicated'} ${e.subject}`);
  }
}

function deps(tree: FakeTree, stream: FakeStream, state: MemoryState, sink: Sink): NotifyWatcherDeps {
  return {
    notify: stream,
    tree,
    sink,
    state,
    config: { cluster: 'anq-west', exportPath: '/replica', prefix: 'dicom/', settleMs: 20, reconcileMs: 600_000, pageSize: 2 },
    log: { info: () => undefined, warn: () => undefined },
  };
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function session(d: NotifyWatcherDeps) {
  const ac = new AbortController();
  const done = runNotifySession(d, { durationMs: 60_000, abortSignal: ac.signal });
  done.catch(() => undefined);
  return { done, stop: () => (ac.abort(), done) };
}

describe('runNotifySession on fakes', () => {
  test('given a directory moved, then its known files are deleted under the old path and its files published under the new one', async () => {
    const tree = new FakeTree();
    const stream = new FakeStream();
    const state = new MemoryState();
    const sink = new Sink();
    tree.write('dicom/a/1.dcm');
    tree.write('dicom/a/2.dcm');
    const s = session(deps(tree, stream, state, sink));
    await until(() => sink.events.length === 2);
    for (const k of ['1', '2']) {
      tree.files.set(`dicom/b/${k}.dcm`, { ...(tree.files.get(`dicom/a/${k}.dcm`) as LiveFile), key: `dicom/b/${k}.dcm` });
      tree.files.delete(`dicom/a/${k}.dcm`);
    }
    stream.send(['child_dir_moved_from', 'a'], ['child_dir_moved_to', 'b']);
    await until(() => sink.events.length === 6);
    const r = await s.stop();
    expect(sink.seen().slice(2).sort()).toEqual(['deleted /replica/dicom/a/1.dcm', 'deleted /replica/dicom/a/2.dcm', 'replicated /replica/dicom/b/1.dcm', 'replicated /replica/dicom/b/2.dcm']);
    expect(r).toMatchObject({ replicated: 4, deleted: 2, reconciled: 2, passes: 1 });
    expect(Object.keys(state.doc!.document.files).sort()).toEqual(['dicom/b/1.dcm', 'dicom/b/2.dcm']);
  });

  test('given a file written in steps with a notification each, then it is published once, as its last version, after a quiet settle time', async () => {
    const tree = new FakeTree();
    const stream = new FakeStream();
    const sink = new Sink();
    const s = session(deps(tree, stream, new MemoryState(), sink));
    await until(() => stream.opened === 1);
    for (let i = 0; i < 8; i++) {
      tree.write('dicom/growing.dcm', 0);
      stream.send(['child_data_written', 'growing.dcm']);
      await new Promise((r) => setTimeout(r, 8)); // shorter than the settle time (20 ms)
    }
    await until(() => sink.events.length === 1);
    await new Promise((r) => setTimeout(r, 100));
    await s.stop();
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]!.data.etag).toBe(tree.files.get('dicom/growing.dcm')!.etag);
  });

  test('given a file the reconciliation finds still changing, then it waits for two looks that agree', async () => {
    const tree = new FakeTree();
    // Modified "just now" as the listing sees it, however late a busy machine runs the listing: an
    // mtime a few seconds ahead (the cluster's clock ahead of ours) stays within the settle time.
    tree.write('dicom/fresh.dcm', -5_000);
    const sink = new Sink();
    const looks: string[] = [];
    const head = tree.head.bind(tree);
    tree.head = async (key) => {
      const f = await head(key);
      looks.push(f?.etag ?? '-');
      // Still being written at the first look.
      if (looks.length === 1) tree.write('dicom/fresh.dcm', 0);
      return f;
    };
    const s = session(deps(tree, new FakeStream(), new MemoryState(), sink));
    await until(() => sink.events.length === 1);
    await s.stop();
    expect(looks.length).toBeGreaterThanOrEqual(3);
    expect(sink.events[0]!.data.etag).toBe(tree.files.get('dicom/fresh.dcm')!.etag);
  });

  test('given a reconciliation pass checkpointed mid-way, then the next session goes on after its key rather than from the start', async () => {
    const tree = new FakeTree();
    for (const k of ['a', 'b', 'c', 'd']) tree.write(`dicom/${k}.dcm`);
    const state = new MemoryState();
    // A pass that had done a and b (published, recorded) when the last session ended.
    state.doc = { document: { version: 1, files: { 'dicom/a.dcm': { etag: 'e1', size: 1, mtime: tree.files.get('dicom/a.dcm')!.lastModified.toISOString() } }, reconcile: { after: 'dicom/b.dcm' } }, etag: 'v0' };
    const sink = new Sink();
    const s = session(deps(tree, new FakeStream(), state, sink));
    await until(() => !state.doc!.document.reconcile && !!state.doc!.document.lastReconciledAt);
    await s.stop();
    expect(sink.seen()).toEqual(['replicated /replica/dicom/c.dcm', 'replicated /replica/dicom/d.dcm']);
  });

  test('given a file of the state missing from the listing but there again when looked at, then it is not deleted', async () => {
    const tree = new FakeTree();
    tree.write('dicom/back.dcm');
    const original = tree.listPage.bind(tree);
    // The listing misses it (written back between the listing and the look).
    tree.listPage = async (p, a, o) => {
      const page = await original(p, a, o);
      return { ...page, files: page.files.filter((f) => f.key !== 'dicom/back.dcm') };
    };
    const state = new MemoryState();
    const f = tree.files.get('dicom/back.dcm')!;
    state.doc = { document: { version: 1, files: { 'dicom/back.dcm': { etag: f.etag, size: f.size, mtime: f.lastModified.toISOString() } } }, etag: 'v0' };
    const sink = new Sink();
    const s = session(deps(tree, new FakeStream(), state, sink));
    await until(() => !!state.doc!.document.lastReconciledAt);
    await new Promise((r) => setTimeout(r, 100));
    await s.stop();
    expect(sink.events).toEqual([]);
    expect(Object.keys(state.doc!.document.files)).toEqual(['dicom/back.dcm']);
  });

  test('given a dropped stream, then it is registered again and a reconciliation follows', async () => {
    const tree = new FakeTree();
    const stream = new FakeStream();
    const state = new MemoryState();
    const sink = new Sink();
    const s = session(deps(tree, stream, state, sink));
    await until(() => !!state.doc?.document.lastReconciledAt);
    stream.drop();
    tree.write('dicom/missed.dcm');
    await until(() => sink.events.length === 1);
    const r = await s.stop();
    expect(stream.opened).toBe(2);
    expect(r).toMatchObject({ streamsLost: 1, passes: 2, reconciled: 1 });
  });

  test('given another session writing the state, then this one stops and says so; given the REST user refused, then the session fails', async () => {
    const tree = new FakeTree();
    tree.write('dicom/x.dcm');
    const state = new MemoryState();
    state.conflictAfter = 1;
    const r = await runNotifySession(deps(tree, new FakeStream(), state, new Sink()), { durationMs: 5_000 });
    expect(r.owner).toBe(false);

    const refused = new FakeStream();
    refused.failWith = new PipelineError(ErrorCodes.UNAUTHENTICATED, 'refused (401)');
    await expect(runNotifySession(deps(tree, refused, new MemoryState(), new Sink()), { durationMs: 5_000 })).rejects.toMatchObject({ code: ErrorCodes.UNAUTHENTICATED });
  });
});
