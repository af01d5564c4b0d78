import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { EventDeps, handleIngestEvent } from '../../../shared/ingest/handleEvent';
import { Limiter } from '../../../shared/ingest/limiter';
import { SingleFlight } from '../../../shared/singleFlight';
import type { SourceStore } from '../../../shared/storage/stores';
import { CapturingLogger, CapturingTelemetry, deferred, memoryWorld } from '../fakes';

const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';

let n = 0;
function blobCreated(url = `${ENDPOINT}/anq-replica/site/${++n}.dcm`): unknown {
  return { id: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobCreated', data: { url } };
}

/** Event deps whose source reads wait at a gate: `opened` counts the ingestions that got past the limiter. */
function heldDeps(limiter: Limiter, gate: Promise<void>): { deps: EventDeps; opened: () => number; telemetry: CapturingTelemetry } {
  const w = memoryWorld(defaultProfile());
  let opened = 0;
  const open: SourceStore['open'] = async () => {
    opened++;
    await gate;
    // Gone by then: the ingestion ends as an event for a blob never recorded.
    return undefined;
  };
  w.source.open = open;
  const telemetry = new CapturingTelemetry();
  return {
    deps: { sourceBlobEndpoints: [ENDPOINT], settings: { sourceContainers: ['anq-replica'] }, telemetry, ingestions: limiter, deliveries: new SingleFlight(), ingestDeps: () => w.deps },
    opened: () => opened,
    telemetry,
  };
}

const ANQ_SCOPE = { cluster: 'anq-local', bucket: 'replica', exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' as const };

function fileReplicated(url: string, snapshotId = 7): unknown {
  return { id: `evt-${++n}`, type: 'VNA.Archive.FileReplicated', source: '/anq/anq-local', data: { url, snapshotId } };
}

/** Event deps with the ANQ source on, whose source store records where it is asked to read (and finds nothing). */
function anqDeps(): { deps: EventDeps; reads: Array<{ container: string; blobName: string }>; telemetry: CapturingTelemetry } {
  const w = memoryWorld(defaultProfile());
  const reads: Array<{ container: string; blobName: string }> = [];
  w.source.open = async (container, blobName) => {
    reads.push({ container, blobName });
    return undefined;
  };
  const telemetry = new CapturingTelemetry();
  return {
    deps: { sourceBlobEndpoints: [ENDPOINT], anqScope: ANQ_SCOPE, settings: { sourceContainers: ['anq-replica'] }, telemetry, ingestions: new Limiter(2), deliveries: new SingleFlight(), ingestDeps: () => w.deps },
    reads,
    telemetry,
  };
}

/** Lets every pending continuation run (the in-memory stores resolve at once). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe('handleIngestEvent', () => {
  it('given two events for one runtime whose limiter has one slot, then the second ingestion starts only after the first ends', async () => {
    const gate = deferred();
    const one = heldDeps(new Limiter(1), gate.promise);
    const runs = [handleIngestEvent(blobCreated(), one.deps, new CapturingLogger()), handleIngestEvent(blobCreated(), one.deps, new CapturingLogger())];
    await settle();
    expect(one.opened()).toBe(1);
    gate.resolve();
    expect((await Promise.all(runs)).map((o) => o.status)).toEqual(['unchanged', 'unchanged']);
    expect(one.opened()).toBe(2);
  });

  it('given an event delivered again while its first delivery is still being ingested (Event Grid answers a slow delivery after 30 s), then it joins that ingestion: the file is read once and both deliveries get its outcome', async () => {
    const gate = deferred();
    const held = heldDeps(new Limiter(4), gate.promise);
    const event = blobCreated();
    const first = handleIngestEvent(event, held.deps, new CapturingLogger());
    await settle();
    const again = handleIngestEvent(event, held.deps, new CapturingLogger());
    await settle();
    expect(held.opened()).toBe(1);
    expect(held.deps.ingestions.inUse).toBe(1);
    gate.resolve();
    expect(await again).toEqual(await first);
    // Once done with, a delivery again is handled afresh (the index then says the version is known).
    await handleIngestEvent(event, held.deps, new CapturingLogger());
    expect(held.opened()).toBe(2);
  });

  it('given two events for one version of one file (its ETag), then they are one ingestion; another version is its own', async () => {
    const gate = deferred();
    const held = heldDeps(new Limiter(4), gate.promise);
    const url = `${ENDPOINT}/anq-replica/site/versions.dcm`;
    const created = (id: string, eTag: string) => ({ id, eventType: 'Microsoft.Storage.BlobCreated', data: { url, eTag } });
    const runs = [created('a', '"0x1"'), created('b', '"0x1"'), created('c', '"0x2"')].map((e) => handleIngestEvent(e, held.deps, new CapturingLogger()));
    await settle();
    expect(held.opened()).toBe(2);
    gate.resolve();
    await Promise.all(runs);
    expect(held.deps.deliveries.size).toBe(0);
  });

  it('given two runtimes with a one-slot limiter each, then an ingestion in one does not wait for the other', async () => {
    const gate = deferred();
    const first = heldDeps(new Limiter(1), gate.promise);
    const second = heldDeps(new Limiter(1), gate.promise);
    const runs = [handleIngestEvent(blobCreated(), first.deps, new CapturingLogger()), handleIngestEvent(blobCreated(), second.deps, new CapturingLogger())];
    await settle();
    expect([first.opened(), second.opened()]).toEqual([1, 1]);
    gate.resolve();
    await Promise.all(runs);
    expect(first.deps.ingestions.inUse + second.deps.ingestions.inUse).toBe(0);
  });

  it('given a URL outside the source account, then the event is refused, counted as a failure, and nothing is read', async () => {
    const gate = deferred();
    const held = heldDeps(new Limiter(1), gate.promise);
    const out = await handleIngestEvent(blobCreated('https://elsewhere.example.com/devstoreaccount1/anq-replica/a.dcm'), held.deps, new CapturingLogger());
    expect(out.status).toBe('refused');
    expect(held.telemetry.records).toEqual([{ kind: 'failure', code: 'SOURCE_NOT_ALLOWED', operation: 'ingest' }]);
    expect(held.opened()).toBe(0);
  });

  it('given a malformed event, then it is invalid and let go without a retry', async () => {
    const gate = deferred();
    const held = heldDeps(new Limiter(1), gate.promise);
    const log = new CapturingLogger();
    const out = await handleIngestEvent({ eventType: 'Microsoft.Storage.BlobCreated', data: {} }, held.deps, log);
    expect(out.status).toBe('invalid');
    expect(log.lines[0]).toMatch(/^warn event rejected/);
    expect(held.opened()).toBe(0);
  });

  it('given an ANQ event for a file under the export and prefix, then it is read from the ANQ bucket as of the event\'s snapshot', async () => {
    const anq = anqDeps();
    const out = await handleIngestEvent(fileReplicated('anq://anq-local/replica/dicom/site/a%20b.dcm', 7), anq.deps, new CapturingLogger());
    expect(out.status).not.toBe('refused');
    expect(anq.reads).toEqual([{ container: 'anq/replica', blobName: '.snapshot/7/dicom/site/a b.dcm' }]);
    expect(anq.telemetry.records).toEqual([]);
  });

  it.each([
    ['outside the prefix', 'anq://anq-local/replica/other/a.dcm'],
    ['outside the export', 'anq://anq-local/etc/passwd'],
    ['with dot segments', 'anq://anq-local/replica/dicom/../secret/a.dcm'],
    ['on another cluster', 'anq://elsewhere/replica/dicom/a.dcm'],
  ])('given an ANQ event for a path %s, then it is refused, counted as a failure, and nothing is read', async (_what, url) => {
    const anq = anqDeps();
    const out = await handleIngestEvent(fileReplicated(url), anq.deps, new CapturingLogger());
    expect(out.status).toBe('refused');
    expect(anq.telemetry.records).toEqual([{ kind: 'failure', code: 'SOURCE_NOT_ALLOWED', operation: 'ingest' }]);
    expect(anq.reads).toEqual([]);
  });

  it('given an ANQ event while the ANQ source is off, then it is refused and nothing is read', async () => {
    const anq = anqDeps();
    const { anqScope: _off, ...deps } = anq.deps;
    const out = await handleIngestEvent(fileReplicated('anq://anq-local/replica/dicom/a.dcm'), deps, new CapturingLogger());
    expect(out).toEqual({ status: 'refused', reason: 'the ANQ source is not configured' });
    expect(anq.reads).toEqual([]);
  });

  it('given a blob event while the ANQ source is on, then the blob is read from its container as before', async () => {
    const anq = anqDeps();
    const out = await handleIngestEvent(blobCreated(`${ENDPOINT}/anq-replica/site/x.dcm`), anq.deps, new CapturingLogger());
    expect(out.status).toBe('unchanged');
    expect(anq.reads).toEqual([{ container: 'anq-replica', blobName: 'site/x.dcm' }]);
  });
});
