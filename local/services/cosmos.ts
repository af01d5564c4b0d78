/**
 * A Cosmos DB emulator-compatible server (@vercel/cosmosdb-server), in-process, over plain HTTP.
 *
 * HTTP because the package's bundled TLS certificate expired in 2021. The server advertises
 * https locations in its account document, so clients must turn endpoint discovery off:
 * `connectionPolicy: { enableEndpointDiscovery: false }`. Data lives in memory only.
 */
import type * as http from 'http';

import { cosmosEmulatorConnectionString } from '../../shared/config/settings';
import { closeServer, listen } from '../net';

export interface CosmosServerOptions {
  host?: string;
  /** 0 picks a free port; default 8081 (the emulator's). */
  port?: number;
}

export interface CosmosServerHandle {
  port: number;
  /** `http://<host>:<port>/` */
  endpoint: string;
  /** Connection string with the emulator's well-known key. */
  connectionString: string;
  /** Closes the server and its connections. Idempotent. */
  stop(): Promise<void>;
}

/** Throws with the port in the message when it is in use. */
export async function startCosmosServer(options: CosmosServerOptions = {}): Promise<CosmosServerHandle> {
  const host = options.host ?? '127.0.0.1';
  // Loaded lazily: only the stack needs it, and it costs a few hundred ms.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHttpServer } = require('@vercel/cosmosdb-server') as { createHttpServer(opts?: http.ServerOptions): http.Server };
  const server = createHttpServer();
  const port = await listen(server, options.port ?? 8081, host, 'Cosmos DB emulator server');
  let stopping: Promise<void> | undefined;
  return {
    port,
    endpoint: `http://${host}:${port}/`,
    connectionString: cosmosEmulatorConnectionString(port, host),
    stop() {
      stopping ??= closeServer(server);
      return stopping;
    },
  };
}
