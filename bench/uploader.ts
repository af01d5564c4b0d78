/**
 * The archive's side of the stack scenario, in a process of its own (as replication is another
 * system): uploads files into the landing container, all at once with bounded concurrency or
 * paced at a fixed rate, and reports when each upload completed.
 * Usage: node dist/bench/uploader.js <job.json>; prints one `UPLOADED <json>` line at the end
 * and, with `announce`, one `WRITTEN <json>` line per committed upload as it completes.
 */
import * as fs from 'node:fs';

import { BlobServiceClient } from '@azure/storage-blob';

import { UPLOAD_CONTENT_TYPE, UPLOADED_PREFIX, UploadJob, UploadReport, UploadWritten, WRITTEN_PREFIX } from './uploadJob';

async function main(): Promise<void> {
  const job = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as UploadJob;
  const landing = BlobServiceClient.fromConnectionString(job.connectionString).getContainerClient(job.container);
  const report: UploadReport = { uploadedAt: {}, retries: 0, startedAt: 0, seconds: 0, cpuMs: 0 };
  // Read before the clock starts, as the storage floor holds its files in memory before its
  // run: the bench measures what storage and the pipeline do, not this machine's file reads.
  const bodies = new Map(await Promise.all(job.files.map(async ({ file }) => [file, await fs.promises.readFile(file)] as const)));
  const started = Date.now();
  report.startedAt = started;
  const cpuStart = process.cpuUsage();
  let active = 0;
  const slots: (() => void)[] = [];
  const upload = async (file: string, name: string) => {
    const data = bodies.get(file) as Buffer;
    // The blob proxy answers 502 when Azurite drops a kept-alive socket under load; the
    // archive's replication would retry such a write, so the bench does too (and counts it).
    for (let attempt = 1; ; attempt++) {
      try {
        const written = await landing.getBlockBlobClient(name).uploadData(data, { blobHTTPHeaders: { blobContentType: UPLOAD_CONTENT_TYPE } });
        if (job.announce) {
          const line: UploadWritten = {
            container: job.container,
            blobName: name,
            eTag: written.etag ?? '',
            requestId: written.requestId ?? '',
            clientRequestId: written.clientRequestId ?? '',
            contentLength: data.length,
            contentType: UPLOAD_CONTENT_TYPE,
          };
          process.stdout.write(`${WRITTEN_PREFIX}${JSON.stringify(line)}\n`);
        }
        break;
      } catch (err) {
        if (attempt >= 5) throw err;
        report.retries += 1;
      }
    }
    report.uploadedAt[name] = Date.now();
  };
  const pending: Promise<void>[] = [];
  for (const [i, { file, name }] of job.files.entries()) {
    if (job.ratePerSecond) {
      const due = started + (i * 1000) / job.ratePerSecond;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
    if (active >= job.concurrency) await new Promise<void>((r) => slots.push(r));
    active++;
    pending.push(upload(file, name).finally(() => {
      active--;
      slots.shift()?.();
    }));
  }
  await Promise.all(pending);
  report.seconds = (Date.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  report.cpuMs = (cpu.user + cpu.system) / 1000;
  process.stdout.write(`${UPLOADED_PREFIX}${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
