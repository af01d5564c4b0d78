/**
 * Acceptance (issue 15): an export of 1,000 instances whose worker is killed mid-way resumes
 * and ends with every instance exactly once, and the manifest's hashes equal the written files.
 *
 * The worker is a function host in a process of its own (local/hostProcess.ts) with its own
 * export queue, over the stack's Azurite, Cosmos DB server and landing container; it is killed
 * with SIGKILL while messages are in flight (their lease, LOCAL_QUEUE_LEASE_SECONDS, then
 * runs out and they are delivered again), and a second host process takes over.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { ContainerClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';

import { ctSliceBytes } from '../../bench/generate';
import { type HostProcess, startHostProcess } from '../../local/hostProcess';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { sourceId } from '../../shared/ingest/ingestSourceFile';
import { CosmosSharingAudit } from '../../shared/sharing/cosmosSharing';
import type { ExportStatus } from '../../shared/sharing/sharing';
import { sourceDriver } from './sourceDrivers';
import { authHeader, testStack } from './stackEnv';

const SEED = 15001;
const STUDIES = 10;
const PER_STUDY = 100;
const TOTAL = STUDIES * PER_STUDY;
const projectRoot = resolve(__dirname, '..', '..');


async function pool<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++] as T);
  }));
}

describe('an export of 1,000 instances with its worker killed mid-way', () => {
  const driver = sourceDriver('blob');
  const queueName = `exports-kill-${randomBytes(4).toString('hex')}`;
  const logDir = mkdtempSync(join(tmpdir(), 'sharing-kill-'));
  const hosts: HostProcess[] = [];
  let studies: string[] = [];

  const startWorker = async (n: number) => {
    const host = await startHostProcess({
      projectRoot,
      env: { ...testStack().env, EXPORT_QUEUE: queueName, LOCAL_QUEUE_LEASE_SECONDS: '5' },
      logFile: join(logDir, `host${n}.log`),
    });
    hosts.push(host);
    return host;
  };

  const call = async (host: HostProcess, method: string, path: string, body?: unknown) =>
    fetch(`${host.url}${path}`, {
      method,
      headers: { ...authHeader('sharing'), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });

  beforeAll(async () => {
    const names: string[] = [];
    for (let s = 0; s < STUDIES; s++) for (let i = 1; i <= PER_STUDY; i++) names.push(`sharing-kill-${SEED}/study${s}/${i}.dcm`);
    await pool(names, 16, async (name) => {
      const [, study, file] = /study(\d+)\/(\d+)\.dcm$/.exec(name) as RegExpExecArray;
      await driver.put(name, ctSliceBytes({ seed: SEED, study: Number(study), instance: Number(file), matrix: 16 }));
    });
    await driver.settle(600_000);
    const settings = loadSettings(testStack().env);
    const index = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.indexContainer);
    const docs: IngestionDocument[] = [];
    await pool(names, 16, async (n) => {
      const id = sourceId(driver.sourceUrl(n));
      docs.push((await index.item(id, id).read<IngestionDocument>()).resource as IngestionDocument);
    });
    expect(docs.filter((d) => d.status === 'cataloged')).toHaveLength(TOTAL);
    studies = [...new Set(docs.map((d) => d.research?.studyInstanceUid as string))];
    expect(studies).toHaveLength(STUDIES);
  }, 900_000);

  afterAll(async () => {
    for (const h of hosts) await h.stop().catch(() => undefined);
  });

  it('given the worker killed with messages in flight, then a second worker finishes: every instance exactly once, the manifest hashes equal the files', async () => {
    const first = await startWorker(1);
    const created = await call(first, 'POST', '/api/agreements', {
      partnerId: 'kill-test',
      partnerName: 'Exactly once',
      profile: { builtIn: 'research-default' },
      cohort: { studies },
      mode: 'once',
      validFrom: '2026-01-01',
      validUntil: '2030-01-01',
      destination: { kind: 'sas', container: `share-kill-${randomBytes(3).toString('hex')}` },
    });
    expect(created.status).toBe(201);
    const agreement = (await created.json()) as { id: string; keyId: string; sas: { url: string } };
    const started = await call(first, 'POST', `/api/agreements/${agreement.id}/exports`);
    expect(started.status).toBe(202);
    const location = started.headers.get('location') as string;
    const statusOf = async (host: HostProcess) => (await (await call(host, 'GET', location)).json()) as ExportStatus;

    // Killed once about a third is done: the messages it held stay invisible until their lease ends.
    let atKill: ExportStatus;
    for (;;) {
      atKill = await statusOf(first);
      if (atKill.done >= TOTAL / 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    process.kill(first.pid, 'SIGKILL');
    expect(atKill.done).toBeLessThan(TOTAL);

    const second = await startWorker(2);
    const deadline = Date.now() + 600_000;
    let final: ExportStatus;
    for (;;) {
      final = await statusOf(second);
      if (final.status === 'completed') break;
      if (Date.now() > deadline) throw new Error(`export not completed: ${JSON.stringify(final)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(final).toMatchObject({ total: TOTAL, done: TOTAL, failed: 0, left: 0 });

    const container = new ContainerClient(agreement.sas.url);
    const files = new Map<string, Buffer>();
    const blobs: string[] = [];
    for await (const b of container.listBlobsFlat()) blobs.push(b.name);
    await pool(blobs, 16, async (name) => {
      files.set(name, await container.getBlobClient(name).downloadToBuffer());
    });
    const dicom = blobs.filter((b) => b.endsWith('.dcm'));
    expect(dicom).toHaveLength(TOTAL);
    expect(blobs.filter((b) => !b.endsWith('.dcm')).sort()).toEqual([final.manifest?.csv, final.manifest?.json].sort());
    const manifest = JSON.parse((files.get(final.manifest?.json as string) as Buffer).toString()) as { keyId: string; files: { blob: string; sha256: string; size: number }[] };
    expect(manifest.keyId).toBe(agreement.keyId);
    expect(manifest.files.map((f) => f.blob).sort()).toEqual([...dicom].sort());
    const mismatched = manifest.files.filter((f) => {
      const data = files.get(f.blob) as Buffer;
      return createHash('sha256').update(data).digest('hex') !== f.sha256 || data.length !== f.size;
    });
    expect(mismatched).toEqual([]);
    expect(final.bytes).toBe(dicom.reduce((s, b) => s + (files.get(b) as Buffer).length, 0));

    // One record per file that left, however often its message was delivered.
    const settings = loadSettings(testStack().env);
    const audit = new CosmosSharingAudit(createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.sharing.sharingAuditContainer));
    const received = await audit.byPartner('kill-test');
    expect(received.filter((r) => r.agreementId === agreement.id).map((r) => r.blob).sort()).toEqual([...dicom].sort());

    // Nothing was given up on.
    const queues = QueueServiceClient.fromConnectionString(testStack().env.AzureWebJobsStorage as string);
    const poison = queues.getQueueClient(`${queueName}-poison`);
    const poisoned = (await poison.exists()) ? (await poison.getProperties()).approximateMessagesCount : 0;
    expect(poisoned).toBe(0);
    expect((await queues.getQueueClient(queueName).getProperties()).approximateMessagesCount).toBe(0);
  }, 900_000);
});
