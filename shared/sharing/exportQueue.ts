/**
 * The export queue on Azure Storage queues: one message per instance, base64-encoded JSON as
 * the Functions host's queue trigger reads it by default (host.json
 * `extensions.queues.messageEncoding`). The connection is the app's AzureWebJobsStorage, the
 * one the trigger binding names.
 */
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';
import { QueueClient, QueueServiceClient } from '@azure/storage-queue';

import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import type { ExportMessage, ExportQueue } from './sharing';

/** The setting the queue trigger's `connection` names. */
export const EXPORT_QUEUE_CONNECTION = 'AzureWebJobsStorage';

/** The queue service of a Functions storage connection: a connection string, or `<name>__queueServiceUri` with a managed identity. */
export function queueServiceFor(name: string, env: NodeJS.ProcessEnv = process.env): QueueServiceClient {
  const conn = env[name]?.trim();
  if (conn) return QueueServiceClient.fromConnectionString(conn);
  const uri = env[`${name}__queueServiceUri`]?.trim();
  if (!uri) throw new PipelineError(ErrorCodes.CONFIG_INVALID, `${name}: neither a connection string nor ${name}__queueServiceUri is set`);
  const clientId = env[`${name}__clientId`]?.trim();
  return new QueueServiceClient(uri, clientId ? new ManagedIdentityCredential({ clientId }) : new DefaultAzureCredential());
}

export function encodeMessage(m: ExportMessage): string {
  return Buffer.from(JSON.stringify(m), 'utf8').toString('base64');
}

/** Checks what the trigger hands the function; throws EVENT_INVALID when it is not an export message. */
export function parseExportMessage(item: unknown): ExportMessage {
  const m = (typeof item === 'string' ? (() => {
    try {
      return JSON.parse(item) as unknown;
    } catch {
      return undefined;
    }
  })() : item) as Record<string, unknown> | undefined;
  const fields = ['exportId', 'agreementId', 'studyInstanceUid', 'seriesInstanceUid', 'sopInstanceUid'] as const;
  if (!m || typeof m !== 'object' || fields.some((f) => typeof m[f] !== 'string' || m[f] === '')) {
    throw new PipelineError(ErrorCodes.EVENT_INVALID, 'export message: not an export message');
  }
  return Object.fromEntries(fields.map((f) => [f, m[f]])) as unknown as ExportMessage;
}

const PARALLEL_SENDS = 16;

export class AzureExportQueue implements ExportQueue {
  private created?: Promise<unknown>;
  private readonly queue: QueueClient;

  constructor(service: QueueServiceClient, queueName: string) {
    this.queue = service.getQueueClient(queueName);
  }

  async send(messages: ExportMessage[]): Promise<void> {
    try {
      this.created ??= this.queue.createIfNotExists().catch((e: unknown) => {
        this.created = undefined;
        throw e;
      });
      await this.created;
      let next = 0;
      const worker = async () => {
        while (next < messages.length) {
          const m = messages[next++] as ExportMessage;
          await this.queue.sendMessage(encodeMessage(m));
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL_SENDS, messages.length) }, worker));
    } catch (e) {
      throw fromServiceError(e, 'enqueuing an export');
    }
  }
}
