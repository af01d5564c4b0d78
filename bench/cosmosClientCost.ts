/**
 * What the Cosmos DB SDK's transport costs (issue 12's host CPU per instance): the kinds of
 * request an ingestion makes (a create of a 60-attribute document, a point read, a point read of
 * an absent document as the first read of a new file is, and a query scoped to one partition
 * with its query plan), sent by one SDK client over its default transport and by one over
 * CosmosHttpClient (shared/catalog/cosmosHttpClient.ts, the pipeline's since 0.12.0), against
 * the same Cosmos DB server, in this process, in turn.
 *
 * The CPU (user and system) of this process per set of the four requests is the figure, over
 * `rounds` rounds of `sets` sets, 8 at a time; the first round of each warms up and is not
 * counted, the median of the rest is printed.
 *
 * Usage: npm run build && node dist/bench/cosmosClientCost.js [sets, default 400] [rounds, default 5]
 */
import { type Container, CosmosClient } from '@azure/cosmos';

import { startCosmosServer } from '../local/services/cosmos';
import { CosmosHttpClient } from '../shared/catalog/cosmosHttpClient';
import { formatTable, percentile, round } from './stats';

const CONCURRENCY = 8;

function attributes(): Record<string, unknown> {
  const dicom: Record<string, unknown> = {};
  for (let i = 0; i < 60; i++) dicom[`0008${i.toString(16).padStart(4, '0')}`] = { vr: 'LO', Value: [`value number ${i}`] };
  return dicom;
}

async function main(): Promise<void> {
  const sets = Number(process.argv[2] ?? 400);
  const rounds = Number(process.argv[3] ?? 5);
  const server = await startCosmosServer({});
  try {
    const key = /AccountKey=([^;]+)/.exec(server.connectionString)?.[1] ?? '';
    const client = (lean: boolean) =>
      new CosmosClient({ endpoint: server.endpoint, key, connectionPolicy: { enableEndpointDiscovery: false }, ...(lean ? { httpClient: new CosmosHttpClient() } : {}) });
    const { database } = await client(false).databases.createIfNotExists({ id: 'bench' });
    await database.containers.createIfNotExists({ id: 'docs', partitionKey: { paths: ['/pk'] } });
    const containers: Record<string, Container> = {
      'SDK default transport': client(false).database('bench').container('docs'),
      CosmosHttpClient: client(true).database('bench').container('docs'),
    };
    const dicom = attributes();
    let n = 0;
    const measure = async (container: Container, count: number): Promise<number> => {
      const before = process.cpuUsage();
      for (let i = 0; i < count; i += CONCURRENCY) {
        await Promise.all(
          Array.from({ length: Math.min(CONCURRENCY, count - i) }, async () => {
            const id = `d${n++}`;
            await container.items.create({ id, pk: 'p', dicom });
            await container.item(id, 'p').read();
            await container.item(`absent-${id}`, 'p').read();
            await container.items.query({ query: 'SELECT c.id FROM c WHERE c.id = @id', parameters: [{ name: '@id', value: id }] }, { partitionKey: 'p' }).fetchAll();
          }),
        );
      }
      const used = process.cpuUsage(before);
      return (used.user + used.system) / 1000 / count;
    };
    const results: Record<string, number[]> = Object.fromEntries(Object.keys(containers).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, container] of Object.entries(containers)) {
        const ms = await measure(container, sets);
        if (r > 0) results[name]?.push(ms);
      }
    }
    const rows = Object.entries(results).map(([name, ms]) => [name, String(round(percentile(ms, 50), 3)), ms.map((m) => m.toFixed(3)).join(' ')]);
    process.stdout.write(`${formatTable([['transport', 'CPU ms per set (median)', 'rounds'], ...rows])}\n`);
    process.stdout.write(`a set: create, point read, point read of an absent document, query in one partition (with its plan); ${sets} sets, ${CONCURRENCY} at a time\n`);
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
