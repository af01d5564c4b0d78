import { createServer } from 'node:net';

import { CosmosClient } from '@azure/cosmos';
import { RestError } from '@azure/storage-blob';

import { ErrorCodes, fromServiceError, isTransient } from '../../shared/errors';

/** The Cosmos DB emulator's well-known key; nothing listens at the endpoint. */
const EMULATOR_KEY = 'C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==';

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe('fromServiceError', () => {
  it('given an id the Cosmos SDK refuses on the client side, then the error is permanent, not transient', async () => {
    const client = new CosmosClient({ endpoint: 'http://127.0.0.1:1', key: EMULATOR_KEY, connectionPolicy: { enableEndpointDiscovery: false } });
    const item = client.database('d').container('c').item('2.25.1\\2.25.2', 'p');
    for (const e of [await rejection(item.read()), await rejection(item.replace({ id: '2.25.1\\2.25.2' }))]) {
      const mapped = fromServiceError(e, 'writing the instance');
      expect(mapped.code).toBe(ErrorCodes.INTERNAL);
      expect(isTransient(mapped)).toBe(false);
    }
  });

  it.each([400, 413, 431])('given a %i answer, then the error is permanent', (status) => {
    const mapped = fromServiceError(new RestError('rejected', { statusCode: status }), 'reading source blob');
    expect(mapped.code).toBe(ErrorCodes.INTERNAL);
    expect(isTransient(mapped)).toBe(false);
  });

  it.each([
    [429, ErrorCodes.SERVICE_THROTTLED],
    [408, ErrorCodes.SERVICE_TIMEOUT],
    [500, ErrorCodes.SERVICE_UNAVAILABLE],
    [503, ErrorCodes.SERVICE_UNAVAILABLE],
    [403, ErrorCodes.SERVICE_UNAVAILABLE],
    [412, ErrorCodes.CATALOG_CONFLICT],
  ])('given a %i answer, then the error is transient (%s)', (status, code) => {
    const mapped = fromServiceError(new RestError('x', { statusCode: status }), 'reading source blob');
    expect(mapped.code).toBe(code);
    expect(isTransient(mapped)).toBe(true);
  });

  it('given a refused connection from the real SDK, then the error is transient', async () => {
    const port = await closedPort();
    const client = new CosmosClient({ endpoint: `http://127.0.0.1:${port}`, key: EMULATOR_KEY, connectionPolicy: { enableEndpointDiscovery: false } });
    const e = await rejection(client.database('d').container('c').item('a', 'a').read());
    const mapped = fromServiceError(e, 'reading the catalog');
    expect(mapped.code).toBe(ErrorCodes.SERVICE_UNAVAILABLE);
    expect(isTransient(mapped)).toBe(true);
  });

  it('given a refused connection through fetch, then the error is transient', async () => {
    const port = await closedPort();
    const e = await rejection(fetch(`http://127.0.0.1:${port}/`));
    expect(isTransient(fromServiceError(e, 'calling the service'))).toBe(true);
  });
});
