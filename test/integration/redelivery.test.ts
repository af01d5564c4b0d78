/**
 * A file that takes longer to ingest than Event Grid waits for an answer (30 s; the stand-in here
 * waits 0.5 s): the event is delivered again while its first delivery is still being ingested. The
 * host, in a process of its own as in the bench, joins each such delivery to the ingestion in
 * progress: the research copy is committed once, not once per delivery, and the file is cataloged.
 * The functions' storage requests are counted in the host (bench/requestCounter.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CosmosClient } from '@azure/cosmos';

import { startBenchServices } from '../../bench/benchServices';
import { writeMultiFrame } from '../../bench/generate';
import { type HostProcess, startHostProcess } from '../../local/hostProcess';
import type { IngestionDocument } from '../../shared/catalog/documents';

describe('an event delivered again while its file is still being ingested', () => {
  const stops: (() => Promise<void>)[] = [];
  let workDir: string;

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('given deliveries that time out before the ingestion ends, then they join it: one commit of the research copy, and the file cataloged', async () => {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'redelivery-'));
    // 160 frames of 512 KiB: about 80 MB, several seconds to ingest here, against a 0.5 s delivery timeout.
    const file = path.join(workDir, 'mf.dcm');
    writeMultiFrame(file, { seed: 11, frames: 160 });
    const { events, cosmosServer, env, settings, blobService } = await startBenchServices({ workDir, deidKey: 'redelivery-test-deid-key-not-for-production-01234', deliveryTimeoutMs: 500 }, stops);
    const host: HostProcess = await startHostProcess({
      projectRoot: path.resolve(__dirname, '..', '..'),
      env,
      logFile: path.join(workDir, 'host.log'),
      countRequests: { blob: events.port, cosmos: cosmosServer.port },
    });
    stops.push(() => host.stop());
    events.setWebhookBaseUrl(host.url);

    await blobService.getContainerClient(settings.sourceContainers[0] ?? '').getBlockBlobClient('redelivery/mf.dcm').uploadFile(file);
    await events.idle();

    const cosmosKey = /AccountKey=([^;]+)/.exec(cosmosServer.connectionString)?.[1] ?? '';
    const cosmos = new CosmosClient({ endpoint: cosmosServer.endpoint, key: cosmosKey, connectionPolicy: { enableEndpointDiscovery: false } });
    const { resources } = await cosmos
      .database(settings.cosmosDatabase)
      .container(settings.indexContainer)
      .items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE c.blobName = @b', parameters: [{ name: '@b', value: 'redelivery/mf.dcm' }] })
      .fetchAll();
    const stats = events.stats();
    const requests = await host.requests();
    console.log(`redelivery: ${stats.delivered} delivered after ${stats.retried} timed-out attempts; research copy commits ${requests.blobOperations.PutBlockList ?? 0}`);
    // The case under test happened: at least one delivery timed out and the event came again.
    expect(stats.retried).toBeGreaterThan(0);
    expect(stats).toMatchObject({ delivered: 1, deadLettered: 0, pending: 0 });
    expect(resources.map((r) => r.status)).toEqual(['cataloged']);
    // Each ingestion that ran commits its copy's blocks once: one ingestion, one commit.
    expect(requests.blobOperations.PutBlockList).toBe(1);
  }, 300_000);
});
