/**
 * The stack bench's uploader (bench/uploader.ts), run as the bench runs it, against an Azurite
 * of its own: with `announce`, each committed upload is reported with what Event Grid's event
 * carries, and the report matches the blob storage holds. The stack bench raises its events from
 * these lines when the uploads go straight to Azurite.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { UPLOAD_CONTENT_TYPE, UPLOADED_PREFIX, type UploadJob, type UploadReport, type UploadWritten, WRITTEN_PREFIX } from '../../bench/uploadJob';
import { azuriteConnectionString } from '../../local/emulators';
import { type AzuriteHandle, startAzurite } from '../../local/services/azurite';

const uploaderScript = path.resolve(__dirname, '..', '..', 'dist', 'bench', 'uploader.js');

describe('bench uploader', () => {
  let azurite: AzuriteHandle;
  let connectionString: string;
  let workDir: string;
  const container = 'uploader-landing';

  beforeAll(async () => {
    azurite = await startAzurite({ blobPort: 0, queuePort: 0 });
    connectionString = azuriteConnectionString(azurite.blobPort, azurite.queuePort, azurite.host);
    await BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container).createIfNotExists();
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'uploader-'));
  }, 60_000);

  afterAll(async () => {
    await azurite?.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  /** Runs the uploader on `files` (name to bytes); its stdout lines, and its exit status. */
  function run(tag: string, files: Record<string, Buffer>, announce: boolean): { lines: string[]; status: number | null; stderr: string } {
    const job: UploadJob = {
      connectionString,
      container,
      files: Object.entries(files).map(([name, bytes]) => {
        const file = path.join(workDir, `${tag}-${name.replace(/\//g, '_')}`);
        fs.writeFileSync(file, bytes);
        return { file, name };
      }),
      concurrency: 2,
      announce,
    };
    const jobFile = path.join(workDir, `${tag}.json`);
    fs.writeFileSync(jobFile, JSON.stringify(job));
    const out = spawnSync(process.execPath, [uploaderScript, jobFile], { encoding: 'utf8', timeout: 60_000 });
    return { lines: out.stdout.split('\n').filter(Boolean), status: out.status, stderr: out.stderr };
  }

  test('announces each committed upload as storage holds it', async () => {
    const files = { 'a/one.dcm': Buffer.alloc(1000, 1), 'a/two.dcm': Buffer.alloc(70_000, 2), 'b/three.dcm': Buffer.alloc(3, 3) };
    const spawned = Date.now();
    const { lines, status, stderr } = run('announce', files, true);
    expect({ status, stderr }).toEqual({ status: 0, stderr: '' });

    const written = lines.filter((l) => l.startsWith(WRITTEN_PREFIX)).map((l) => JSON.parse(l.slice(WRITTEN_PREFIX.length)) as UploadWritten);
    expect(written.map((w) => w.blobName).sort()).toEqual(Object.keys(files).sort());
    const landing = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container);
    for (const w of written) {
      const props = await landing.getBlobClient(w.blobName).getProperties();
      expect(w).toEqual({
        container,
        blobName: w.blobName,
        eTag: props.etag,
        requestId: expect.stringMatching(/\S/),
        clientRequestId: expect.stringMatching(/\S/),
        contentLength: files[w.blobName as keyof typeof files].length,
        contentType: UPLOAD_CONTENT_TYPE,
      });
      expect(props.contentType).toBe(UPLOAD_CONTENT_TYPE);
    }

    // The report comes last, and names every upload.
    expect(lines[lines.length - 1]?.startsWith(UPLOADED_PREFIX)).toBe(true);
    const report = JSON.parse((lines[lines.length - 1] as string).slice(UPLOADED_PREFIX.length)) as UploadReport;
    expect(Object.keys(report.uploadedAt).sort()).toEqual(Object.keys(files).sort());
    // The stack's rate is measured from the first upload: after the process started, before any upload completed.
    expect(report.startedAt).toBeGreaterThanOrEqual(spawned);
    expect(report.startedAt).toBeLessThanOrEqual(Math.min(...Object.values(report.uploadedAt)));
  }, 60_000);

  test('prints the report only without announce', () => {
    const { lines, status } = run('quiet', { 'c/four.dcm': Buffer.alloc(10, 4) }, false);
    expect(status).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.startsWith(UPLOADED_PREFIX)).toBe(true);
  }, 60_000);
});
