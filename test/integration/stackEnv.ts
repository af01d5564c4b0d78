/**
 * What integration tests know about the stack that globalSetup started: endpoints, the settings
 * the functions got, the host log (scanned for PHI) and the event source's progress.
 */
import * as fs from 'fs';

import type { DevTokens } from '../../local/devIssuer';

export interface TestStackInfo {
  /** `http://127.0.0.1:<port>/devstoreaccount1`, through the event source. */
  blobEndpoint: string;
  blobPort: number;
  queuePort: number;
  cosmosEndpoint: string;
  cosmosPort: number;
  /** `http://127.0.0.1:<port>` of the function host. */
  hostUrl: string;
  hostPort: number;
  /** Every line the host and the functions logged. */
  logFile: string;
  deadLetterFile: string;
  /** `GET` answers the event source's stats; `/idle` waits until nothing is pending. */
  eventsUrl: string;
  /** The settings the functions got (SourceStorage, CosmosDb, DEID_KEY, container names, AUTH_*...). */
  env: Record<string, string>;
  /** Tokens of the development issuer, one per app role (as `npm start` writes them to tokens.json). */
  tokens: DevTokens;
  /** The stack's data folder (the development issuer's key is there). */
  dataDir: string;
  /** The ANQ side: the stand-ins over a replication target, as the functions' ANQ_* settings name them. */
  anq?: {
    cluster: string;
    bucket: string;
    exportPath: string;
    prefix: string;
    /** The folder that plays the replication target (the export's root). */
    targetDir: string;
    s3Endpoint: string;
    restEndpoint: string;
    restToken: string;
    /** The snapshot watcher's checkpoint blob, in the stack's storage account. */
    checkpoint: { container: string; blobName: string };
  };
}

/** `Authorization: Bearer` of the development issuer's token for one role. */
export function authHeader(who: keyof DevTokens): { authorization: string } {
  return { authorization: `Bearer ${testStack().tokens[who]}` };
}

/** A GET of an API route with the token of one role. */
export function apiGet(pathAndQuery: string, who: keyof DevTokens): Promise<Response> {
  return fetch(`${testStack().hostUrl}${pathAndQuery}`, { headers: authHeader(who) });
}

export interface EventStats {
  emitted: number;
  delivered: number;
  retried: number;
  deadLettered: number;
  pending: number;
}

/** Where globalSetup wrote the description (workers inherit TEST_STACK_FILE from it). */
export function stackFilePath(): string | undefined {
  return process.env.TEST_STACK_FILE;
}

/** Throws when globalSetup has not run (a test started without the integration project). */
export function testStack(): TestStackInfo {
  const file = stackFilePath();
  if (!file || !fs.existsSync(file)) {
    throw new Error(`no local stack description (TEST_STACK_FILE=${file ?? 'unset'}): run integration tests through jest --selectProjects integration (its globalSetup starts the stack)`);
  }
  return JSON.parse(fs.readFileSync(file, 'utf8')) as TestStackInfo;
}

export async function eventStats(): Promise<EventStats> {
  const res = await fetch(testStack().eventsUrl);
  return (await res.json()) as EventStats;
}

/** Resolves when every emitted blob event was delivered or dead-lettered; throws after timeoutMs. */
export async function waitForEvents(timeoutMs = 60000): Promise<EventStats> {
  const res = await fetch(`${testStack().eventsUrl}/idle?timeoutMs=${timeoutMs}`);
  const stats = (await res.json()) as EventStats;
  if (res.status !== 200) throw new Error(`blob events still pending after ${timeoutMs} ms: ${JSON.stringify(stats)}`);
  return stats;
}

/** Everything logged so far by the host and the functions. */
export function hostLog(): string {
  const file = testStack().logFile;
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
}
