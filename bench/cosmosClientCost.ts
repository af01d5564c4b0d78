/**
 * What the Cosmos DB SDK's transport costs (issue 12's host CPU per instance): the kinds of
 * request an ingestion makes (a create of a 60-attribute document, a point read, a point read of
 * an absent document as the first read of a new file is, and a query scoped to one partition
 * with its query plan), sent by one SDK client over its default transport, by one over
 * CosmosHttpClient (shared/catalog/cosmosHttpClient.ts, the pipeline's since 0.12.0), and as the
 * pipeline sent them in 0.13.0: the three point operations by CosmosDocuments
 * (shared/catalog/cosmosDocuments.ts), the query by the SDK over CosmosHttpClient with the
 * documents' session tokens; and as it sends them since 0.14.0, all four by CosmosDocuments
 * (the query without a plan). Against the same Cosmos DB server (a process of its own), in turn.
 *
 * The CPU (user and system) of this process per set of the four requests is the figure, over
 * `rounds` rounds of `sets` sets, 8 at a time; the first round of each warms up and is not
 * counted, the median of the rest is printed.
 *
 * Usage: npm run build && node dist/bench/cosmosClientCost.js [sets, default 400] [rounds, default 5]
 */
import { type Container, CosmosClient } from '@azure/cosmos';

import { startCosmosServer } from '../local/services/cosmos';
import { CosmosDocumentClient } from '../shared/catalog/cosmosDocuments';
import { CosmosHttpClient } from '../shared/catalog/cosmosHttpClient';
import { formatTable, percentile, round } from './stats';

const CONCURRENCY = 8;

function attributes(): Record<string, unknown> {
  const dicom: Record<string, unknown> = {};
  for (let i = 0; i < 60; i++) dicom[`0008${i.toString(16).padStart(4, '0')}`] = { vr: 'LO', Value: [`value number ${i}`] };
  return dicom;
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 400);
  const rounds = Number(process.argv[3] ?? 5);
  const server = await startCosmosServer({});
  try {
    const key = /AccountKey=([^;]+)/.exec(server.connectionString)?.[1] ?? '';
    const client = (lean: boolean) =>
      new CosmosClient({ endpoint: server.endpoint, key, connectionPolicy: { enableEndpointDiscovery: false }, ...(lean ? { httpClient: new CosmosHttpClient() } : {}) });
    const { database } = await client(false).databases.createIfNotExists({ id: 'bench' });
    await database.containers.createIfNotExists({ id: 'docs', partitionKey: { paths: ['/pk'] } });
    const dicom = attributes();
    const query = (container: Container, id: string, sessionToken?: string) =>
      container.items.query({ query: 'SELECT c.id FROM c WHERE c.id = @id', parameters: [{ name: '@id', value: id }] }, { partitionKey: 'p', ...(sessionToken ? { sessionToken } : {}) }).fetchAll();
    const sdkSet = (container: Container) => async (id: string) => {
      await container.items.create({ id, pk: 'p', dicom });
      await container.item(id, 'p').read();
      await container.item(`absent-${id}`, 'p').read();
      await query(container, id);
    };
    const documents = new CosmosDocumentClient(server.endpoint, { kind: 'key', key }).container('bench', 'docs');
    const queries = client(true).database('bench').container('docs');
    const sets: Record<string, (id: string) => Promise<void>> = {
      'SDK default transport': sdkSet(client(false).database('bench').container('docs')),
      CosmosHttpClient: sdkSet(client(true).database('bench').container('docs')),
      'CosmosDocuments + SDK query': async (id) => {
        await documents.create({ id, pk: 'p', dicom }, 'p');
        await documents.read(id, 'p');
        await documents.read(`absent-${id}`, 'p');
        await query(queries, id, documents.sessionToken());
      },
      'CosmosDocuments, query too': async (id) => {
        await documents.create({ id, pk: 'p', dicom }, 'p');
        await documents.read(id, 'p');
        await documents.read(`absent-${id}`, 'p');
        await documents.query({ query: 'SELECT c.id FROM c WHERE c.id = @id', parameters: [{ name: '@id', value: id }] }, 'p');
      },
    };
    let n = 0;
    const measure = async (set: (id: string) => Promise<void>, total: number): Promise<number> => {
      const before = process.cpuUsage();
      for (let i = 0; i < total; i += CONCURRENCY) {
        await Promise.all(Array.from({ length: Math.min(CONCURRENCY, total - i) }, () => set(`d${n++}`)));
      }
      const used = process.cpuUsage(before);
      return (used.user + used.system) / 1000 / total;
    };
    const results: Record<string, number[]> = Object.fromEntries(Object.keys(sets).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, set] of Object.entries(sets)) {
        const ms = await measure(set, count);
        if (r > 0) results[name]?.push(ms);
      }
    }
    const rows = Object.entries(results).map(([name, ms]) => [name, String(round(percentile(ms, 50), 3)), ms.map((m) => m.toFixed(3)).join(' ')]);
    process.stdout.write(`${formatTable([['transport', 'CPU ms per set (median)', 'rounds'], ...rows])}\n`);
    process.stdout.write(`a set: create, point read, point read of an absent document, query in one partition (with its plan on the SDK); ${count} sets, ${CONCURRENCY} at a time\n`);
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
