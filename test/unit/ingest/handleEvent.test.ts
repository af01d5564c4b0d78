import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { EventDeps, handleIngestEvent } from '../../../shared/ingest/handleEvent';
import { Limiter } from '../../../shared/ingest/limiter';
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
    deps: { sourceBlobEndpoints: [ENDPOINT], settings: { sourceContainers: ['anq-replica'] }, telemetry, ingestions: limiter, ingestDeps: () => w.deps },
    opened: () => opened,
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
});
