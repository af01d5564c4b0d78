/**
 * What batching point requests saves (shared/catalog/bulkLane.ts): the catalog requests of a
 * burst's ingestions, each a read of its index record (absent, as for a new file), then an
 * instance document created (about 4.7 KB, as the stack's) and an index record created (about
 * 1.6 KB), sent by 16 workers at once (the host's concurrency) to two containers of the Cosmos
 * DB server (a process of its own): every request alone (`requestsInFlight` 0) and batched
 * behind the one out (1), in turn. Per instance: the CPU of this process and of the server,
 * and the requests sent. The workers do nothing between their requests, so they overlap more
 * than a host's do (its requests sit between parsing, uploads and reads): the batches here are
 * larger than the stack's, and the stack bench's request counts say how large its are.
 *
 * Usage: npm run build && node dist/bench/bulkLaneCost.js [instances per round, default 1000] [rounds, default 5]
 */
import { CosmosClient } from '@azure/cosmos';

import { startCosmosServer } from '../local/services/cosmos';
import { CosmosDocumentClient } from '../shared/catalog/cosmosDocuments';
import { processCpuMs } from './stackScenario';
import { formatTable, percentile, round } from './stats';

const WORKERS = 16;

function dicom(attributes: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < attributes; i++) out[`0008${i.toString(16).padStart(4, '0')}`] = { vr: 'LO', Value: [`value number ${i} of this instance`] };
  return out;
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 1000);
  const rounds = Number(process.argv[3] ?? 5);
  const server = await startCosmosServer({});
  try {
    const key = /AccountKey=([^;]+)/.exec(server.connectionString)?.[1] ?? '';
    const sdk = new CosmosClient({ endpoint: server.endpoint, key, connectionPolicy: { enableEndpointDiscovery: false } });
    const { database } = await sdk.databases.createIfNotExists({ id: 'bench' });
    await database.containers.createIfNotExists({ id: 'research', partitionKey: { paths: ['/pk'] } });
    await database.containers.createIfNotExists({ id: 'index', partitionKey: { paths: ['/id'] } });
    const instance = dicom(80);
    const record = dicom(25);
    const modes: Record<string, number> = { alone: 0, batched: 1 };
    const results: Record<string, { client: number[]; server: number[]; requests: number[] }> = {};
    let n = 0;
    for (let r = 0; r < rounds; r++) {
      for (const [mode, inFlight] of Object.entries(modes)) {
        // A client per round: the range check of the first overlap is part of what a round costs.
        const client = new CosmosDocumentClient(server.endpoint, { kind: 'key', key }, { requestsInFlight: inFlight });
        const research = client.container('bench', 'research');
        const index = client.container('bench', 'index');
        let next = 0;
        const clientBefore = process.cpuUsage();
        const serverBefore = processCpuMs(server.pid) ?? 0;
        await Promise.all(Array.from({ length: WORKERS }, async () => {
          for (let i = next++; i < count; i = next++) {
            const id = `i${n++}`;
            const study = `s${i % 4}`;
            if (await index.read(id, id)) throw new Error(`${id} exists before it is created`);
            await research.create({ id, pk: study, type: 'instance', dicom: instance }, study);
            await index.create({ id, status: 'cataloged', original: record }, id);
          }
        }));
        const used = process.cpuUsage(clientBefore);
        const serverMs = (processCpuMs(server.pid) ?? 0) - serverBefore;
        const requests = [research, index].reduce((sum, c) => sum + c.lane.counts.alone + c.lane.counts.bulk, 0);
        if (r === 0) continue;
        const row = (results[mode] ??= { client: [], server: [], requests: [] });
        row.client.push((used.user + used.system) / 1000 / count);
        row.server.push(serverMs / count);
        row.requests.push(requests / count);
      }
    }
    const rows = Object.entries(results).map(([mode, m]) => [mode, String(round(percentile(m.client, 50), 3)), String(round(percentile(m.server, 50), 3)), String(round(percentile(m.requests, 50), 2))]);
    process.stdout.write(`${formatTable([['requests', 'client CPU ms per instance', 'server CPU ms per instance', 'requests per instance'], ...rows])}\n`);
    process.stdout.write(`${count} instances per round (a read and two creates each), ${WORKERS} at a time; medians of ${rounds - 1} rounds after one to warm up\n`);
  } finally {
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
