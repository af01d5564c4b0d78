/**
 * The backfill function's dependencies from the settings (functions/backfill.ts): the job blob,
 * the source listers (a landing container, or a directory of the ANQ export as of one
 * snapshot), the archive topic the command line publishes to, the index and the telemetry of
 * the function runtime, and the generation (DEID_KEY_ID, DEID_PROFILE) a re-index compares with.
 */
import { loadAnqSettings, loadBackfillFunctionSettings } from '../config/anqSettings';
import { ErrorCodes, PipelineError } from '../errors';
import { generationOf } from '../ingest/generation';
import { loadDeidProfile, type Runtime } from '../runtime';
import { blobServiceClient } from '../storage/blobStores';
import { BlobBackfillJobStore, BlobContainerLister, TopicBackfillSink } from './adapters';
import { anqBackfillLister } from './anqLister';
import type { BackfillEventSink } from './backfill';
import type { BackfillSource, SliceDeps } from './job';

type Env = Record<string, string | undefined>;

/** The job store alone: what the HTTP route and a tick without a job need. */
export function backfillJobStore(env: Env = process.env): BlobBackfillJobStore {
  return BlobBackfillJobStore.fromSettings(loadBackfillFunctionSettings(env).job);
}

/** A sink that fails with CONFIG_INVALID on use: a job cannot run without the topic, a tick without a job needs none. */
const NO_TOPIC: BackfillEventSink = {
  publish: () => Promise.reject(new PipelineError(ErrorCodes.CONFIG_INVALID, 'invalid configuration: a backfill job needs ANQ_EVENTS_TOPIC_ENDPOINT (the archive topic)')),
};

/** The slice runner's dependencies. Throws CONFIG_INVALID on bad settings. */
export function backfillSliceDeps(rt: Runtime, env: Env = process.env): SliceDeps & { maxRunMs: number } {
  const s = loadBackfillFunctionSettings(env);
  const settings = rt.settings;
  const endpoint = settings.sourceStorage.kind === 'connectionString' ? settings.sourceStorage.blobEndpoint : settings.sourceStorage.blobServiceUri;
  return {
    jobs: BlobBackfillJobStore.fromSettings(s.job),
    async listerFor(source: BackfillSource) {
      if (source.kind === 'blob') {
        if (!settings.sourceContainers.includes(source.container)) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'the job names a container that is not in SOURCE_CONTAINERS');
        return { lister: new BlobContainerLister(blobServiceClient(settings.sourceStorage).getContainerClient(source.container), endpoint, source.prefix), source };
      }
      // The first slice fixes the snapshot (the newest then); the next ones list the same one.
      const anq = await anqBackfillLister(loadAnqSettings(env), source.path, source.snapshotId);
      return { lister: anq.lister, source: { ...source, snapshotId: anq.snapshotId } };
    },
    sink: s.topic.endpoint ? new TopicBackfillSink(s.topic) : NO_TOPIC,
    index: rt.index,
    generation: generationOf({ keyId: settings.deidKeyId, profile: loadDeidProfile(settings.deidProfilePath) }),
    telemetry: rt.telemetry,
    maxRunMs: s.maxRunMs,
  };
}
