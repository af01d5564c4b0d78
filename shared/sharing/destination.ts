/**
 * Where a partner's copies go. A container in our account shared by a SAS under a stored
 * access policy (revoking the agreement deletes the policy, and every SAS issued under it stops
 * working at once), or a container in the partner's account written with our managed identity.
 *
 * Files are written once: staged as blocks while their SHA-256 is computed, then committed
 * only if no blob of that name exists (If-None-Match: *), with the hash and size as metadata
 * (a file under one block, 4 MiB, is one conditional Put Blob instead).
 * A second delivery of the same instance finds the committed file and takes its hash from it:
 * a file is never written twice, and a crash before the commit leaves only uncommitted blocks,
 * which the service discards.
 */
import { createHash, randomBytes } from 'node:crypto';

import { DefaultAzureCredential } from '@azure/identity';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';

import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import type { Agreement } from './agreement';

export interface WrittenFile {
  size: number;
  sha256: string;
  /** False when an earlier delivery had committed it already. */
  created: boolean;
}

/** One agreement's destination container. */
export interface PartnerDestination {
  /** Names the destination in the audit, without credentials: `sas:<container>` or `<account url>/<container>`. */
  readonly label: string;
  /**
   * Writes a file unless a blob of that name exists, and gives its size and SHA-256 (of what is
   * stored, whichever delivery wrote it). Idempotent. Throws SERVICE_* on faults.
   */
  writeOnce(blob: string, data: AsyncIterable<Uint8Array>, options?: { abortSignal?: AbortSignal }): Promise<WrittenFile>;
  /** Writes (or replaces) a small text file: the manifest. Idempotent for the same content. */
  putText(blob: string, text: string, contentType: string): Promise<void>;
  /** Deletes a file; a missing one is not an error. */
  delete(blob: string): Promise<void>;
}

export interface DestinationProvider {
  open(agreement: Agreement): PartnerDestination;
  /**
   * SAS destinations: creates the container and its stored access policy (read and list, until
   * `expiresOn`) and gives the SAS URL. Idempotent.
   */
  grant(agreement: Agreement, expiresOn: Date): Promise<{ policyId: string; url: string; expiresOn: string }>;
  /** SAS destinations: deletes the stored access policy, so that every SAS under it stops working. Idempotent. */
  revokeGrant(agreement: Agreement): Promise<void>;
}

const BLOCK_BYTES = 4 * 1024 * 1024;

function statusOf(e: unknown): number | undefined {
  return (e as { statusCode?: number } | null)?.statusCode;
}

/** The stored access policy's id: the agreement's id (at most 64 characters). */
export function policyIdOf(agreement: Agreement): string {
  return agreement.id;
}

/**
 * Creates each container once per process (a create per file was one blob request in four of
 * an export); forgotten when a write finds the container gone, so that the next delivery
 * creates it again.
 */
class ContainersCreated {
  private readonly created = new Map<string, Promise<unknown>>();

  ensure(container: ContainerClient): Promise<unknown> {
    let p = this.created.get(container.url);
    if (!p) {
      p = container.createIfNotExists().catch((e: unknown) => {
        this.created.delete(container.url);
        throw e;
      });
      this.created.set(container.url, p);
    }
    return p;
  }

  forget(container: ContainerClient): void {
    this.created.delete(container.url);
  }
}

class BlobContainerDestination implements PartnerDestination {
  constructor(
    private readonly container: ContainerClient,
    readonly label: string,
    private readonly containers: ContainersCreated = new ContainersCreated(),
  ) {}

  async writeOnce(blob: string, data: AsyncIterable<Uint8Array>, options: { abortSignal?: AbortSignal } = {}): Promise<WrittenFile> {
    const client = this.container.getBlockBlobClient(blob);
    const hash = createHash('sha256');
    // Block ids unique per attempt: a crashed attempt's uncommitted blocks never mix with this one's.
    const attempt = randomBytes(6).toString('hex');
    const ids: string[] = [];
    let size = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const id = Buffer.from(`${attempt}-${String(ids.length).padStart(6, '0')}`).toString('base64');
      const body = Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      await client.stageBlock(id, body, body.length, { abortSignal: options.abortSignal });
      ids.push(id);
    };
    try {
      await this.containers.ensure(this.container);
      for await (const chunk of data) {
        hash.update(chunk);
        size += chunk.byteLength;
        pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= BLOCK_BYTES) await flush();
      }
      const sha256 = hash.digest('hex');
      const commit = {
        conditions: { ifNoneMatch: '*' },
        metadata: { sha256, size: String(size) },
        blobHTTPHeaders: { blobContentType: 'application/dicom' },
        abortSignal: options.abortSignal,
      };
      try {
        if (ids.length === 0) {
          // Under one block: one Put Blob, as atomic as a block list and one request instead of two.
          const body = Buffer.concat(pending);
          await client.upload(body, body.length, commit);
        } else {
          await flush();
          await client.commitBlockList(ids, commit);
        }
        return { size, sha256, created: true };
      } catch (e) {
        const status = statusOf(e);
        if (status === 404) this.containers.forget(this.container);
        if (status !== 409 && status !== 412) throw e;
      }
      // Committed by an earlier delivery: what is stored is what left.
      const props = await client.getProperties({ abortSignal: options.abortSignal });
      const stored = props.metadata?.sha256;
      if (!stored) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'a partner file exists without its hash: written by something else');
      return { size: props.contentLength ?? Number(props.metadata?.size), sha256: stored, created: false };
    } catch (e) {
      throw fromServiceError(e, 'writing a partner file');
    }
  }

  async putText(blob: string, text: string, contentType: string): Promise<void> {
    try {
      await this.containers.ensure(this.container);
      const body = Buffer.from(text, 'utf8');
      await this.container.getBlockBlobClient(blob).upload(body, body.length, { blobHTTPHeaders: { blobContentType: contentType } });
    } catch (e) {
      throw fromServiceError(e, 'writing a manifest');
    }
  }

  async delete(blob: string): Promise<void> {
    try {
      await this.container.getBlobClient(blob).deleteIfExists({ deleteSnapshots: 'include' });
    } catch (e) {
      throw fromServiceError(e, 'deleting a partner file');
    }
  }
}

/** Our account's containers (a connection string, so that SAS can be signed with the account key) and partner accounts by managed identity. */
export class AzureDestinations implements DestinationProvider {
  private readonly partnerServices = new Map<string, BlobServiceClient>();
  private readonly containers = new ContainersCreated();

  constructor(private readonly ours: BlobServiceClient) {}

  open(agreement: Agreement): PartnerDestination {
    const d = agreement.destination;
    if (d.kind === 'sas') return new BlobContainerDestination(this.ours.getContainerClient(d.container), `sas:${d.container}`, this.containers);
    let service = this.partnerServices.get(d.accountUrl);
    if (!service) {
      // Not testable locally: Azurite has no Entra ID. In Azure the Function App's identity needs Storage Blob Data Contributor on the container.
      service = new BlobServiceClient(d.accountUrl, new DefaultAzureCredential());
      this.partnerServices.set(d.accountUrl, service);
    }
    return new BlobContainerDestination(service.getContainerClient(d.container), `${d.accountUrl}/${d.container}`, this.containers);
  }

  async grant(agreement: Agreement, expiresOn: Date): Promise<{ policyId: string; url: string; expiresOn: string }> {
    const d = agreement.destination;
    if (d.kind !== 'sas') throw new PipelineError(ErrorCodes.INTERNAL, 'a SAS is only granted on our own containers');
    const container = this.ours.getContainerClient(d.container);
    const policyId = policyIdOf(agreement);
    try {
      await container.createIfNotExists();
      await container.setAccessPolicy(undefined, [{ id: policyId, accessPolicy: { permissions: 'rl', startsOn: new Date(Date.now() - 5 * 60_000), expiresOn } }]);
      // Signed with the account key (connection string); the SAS names the policy and carries no permissions or expiry of its own.
      const url = await container.generateSasUrl({ identifier: policyId });
      return { policyId, url, expiresOn: expiresOn.toISOString() };
    } catch (e) {
      throw fromServiceError(e, 'granting the partner\'s access');
    }
  }

  async revokeGrant(agreement: Agreement): Promise<void> {
    const d = agreement.destination;
    if (d.kind !== 'sas') return;
    try {
      await this.ours.getContainerClient(d.container).setAccessPolicy(undefined, []);
    } catch (e) {
      if (statusOf(e) === 404) return;
      throw fromServiceError(e, 'revoking the partner\'s access');
    }
  }
}
