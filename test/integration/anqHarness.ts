/**
 * What the ANQ integration tests share: a temporary replication target under the stand-ins
 * (local/services/anqStandIn.ts), a loopback Event Grid topic that keeps the CloudEvents it
 * receives, distinct DICOM files made from one fixture, and the delivery of received events to
 * the ingestion use case as the function does it.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

import { closeServer, listen } from '../../local/net';
import { AnqStandIn, AnqStandInOptions, startAnqStandIn } from '../../local/services/anqStandIn';
import { asciiValue } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import { AnqScope, parseIncomingEvent, resolveRequestSource } from '../../shared/events/ingestEvents';
import { ingestSourceFile } from '../../shared/ingest/ingestSourceFile';
import type { MemoryWorld } from '../unit/fakes';

export const STAND_IN_BUCKET = 'replica';
export const STAND_IN_TOKEN = 'stand-in-token';

export interface AnqTarget {
  dir: string;
  /** The replication target folder. */
  target: string;
  standIn: AnqStandIn;
  /** Writes a file into the replication target (relative path). */
  place(rel: string, content: Buffer): void;
  close(): Promise<void>;
}

/** The stand-ins over a fresh temporary folder, exported as `/replica` in the bucket `replica`. */
export async function startAnqTarget(name: string, options: Pick<AnqStandInOptions, 'notify'> = {}): Promise<AnqTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  const target = path.join(dir, 'target');
  const standIn = await startAnqStandIn({ targetDir: target, stateDir: path.join(dir, 'state'), exportPath: '/replica', bucket: STAND_IN_BUCKET, restToken: STAND_IN_TOKEN, ...options });
  return {
    dir,
    target,
    standIn,
    place(rel, content) {
      fs.mkdirSync(path.dirname(path.join(target, rel)), { recursive: true });
      fs.writeFileSync(path.join(target, rel), content);
    },
    async close() {
      await standIn.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface LoopbackTopic {
  /** The endpoint to give the Event Grid SDK. */
  url: string;
  /** CloudEvents as the topic received them (the wire format subscribers parse). */
  delivered: Record<string, unknown>[];
  close(): Promise<void>;
}

/** An HTTP server that takes Event Grid publishes and keeps them. */
export async function startLoopbackTopic(): Promise<LoopbackTopic> {
  const delivered: Record<string, unknown>[] = [];
  const topic = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      delivered.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>[]));
      res.writeHead(200, { 'content-length': 0 });
      res.end();
    });
  });
  const port = await listen(topic, 0, '127.0.0.1', 'loopback Event Grid topic');
  return { url: `http://127.0.0.1:${port}/api/events`, delivered, close: () => closeServer(topic) };
}

/** The fixture as another SOP instance (the last digits of its UID), one per `i`. */
export async function dicomInstance(fixture: Buffer, i: number): Promise<Buffer> {
  const sop = asciiValue((await parseDicomBuffer(fixture)).dataset.get(Tags.SOPInstanceUID))!;
  const next = `${sop.slice(0, -5)}${String(i).padStart(5, '0')}`;
  const out = Buffer.from(fixture);
  for (let at = out.indexOf(sop, 132); at >= 0; at = out.indexOf(sop, at + 1)) out.write(next, at, 'latin1');
  return out;
}

/** Ingests CloudEvents as the ingestion function does (parse, resolve against the scope, ingest), in order; their statuses. */
export async function ingestEvents(world: MemoryWorld, events: Record<string, unknown>[], scope: AnqScope): Promise<string[]> {
  const outcomes: string[] = [];
  for (const event of events) {
    const parsed = parseIncomingEvent(event);
    if (parsed.kind !== 'ingest') throw new Error(`event not ingested: ${parsed.reason}`);
    const resolved = resolveRequestSource(parsed.request, { blobEndpoints: [], sourceContainers: [], anq: scope });
    if (resolved.kind !== 'source') throw new Error(`event ${resolved.kind}: ${resolved.reason}`);
    outcomes.push((await ingestSourceFile(world.deps, parsed.request, resolved.location)).status);
  }
  return outcomes;
}

/** Polls until `check` holds (or fails with `what` after `timeoutMs`). */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
