/**
 * The local services' well-known accounts: published keys of the Azurite development account and
 * of the Cosmos DB emulator, not secrets. Only the local stack, the bench and the tests use them.
 */

/** The Azurite development account. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
/** The Cosmos DB emulator's key. */
export const COSMOS_EMULATOR_KEY =
  'C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XyJ6Ej8g==';

export function azuriteConnectionString(blobPort = 10000, queuePort = 10001, host = '127.0.0.1'): string {
  return (
    `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
    `BlobEndpoint=http://${host}:${blobPort}/${AZURITE_ACCOUNT};QueueEndpoint=http://${host}:${queuePort}/${AZURITE_ACCOUNT};`
  );
}

export function cosmosEmulatorConnectionString(port = 8081, host = '127.0.0.1'): string {
  return `AccountEndpoint=http://${host}:${port}/;AccountKey=${COSMOS_EMULATOR_KEY};`;
}
