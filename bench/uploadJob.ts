/**
 * What the stack scenario and its uploader process (bench/uploader.ts) exchange: the job, the
 * lines the uploader prints and its report. Apart from the uploader so that the scenario can
 * load it without running the uploader.
 */
import type { BlobWrite } from '../local/blobEvents';

export interface UploadJob {
  connectionString: string;
  container: string;
  files: { file: string; name: string }[];
  /** Uploads in flight at most. */
  concurrency: number;
  /** Starts this many uploads per second, evenly spaced; absent: as fast as `concurrency` allows. */
  ratePerSecond?: number;
  /**
   * Prints a `WRITTEN` line (UploadWritten) for each committed upload: what storage tells Event
   * Grid of a write, for the parent to raise the event when the uploads do not cross the stand-in.
   */
  announce?: boolean;
}

/** One committed upload, as storage reports it to Event Grid: the parts of the stand-in's BlobWrite that the uploader knows. */
export type UploadWritten = Required<Pick<BlobWrite, 'container' | 'blobName' | 'eTag' | 'requestId' | 'clientRequestId' | 'contentLength' | 'contentType'>>;

export interface UploadReport {
  /** Blob name to the time (ms since the epoch) its upload completed. */
  uploadedAt: Record<string, number>;
  retries: number;
  /** When the first upload started (ms since the epoch): after the process started and read its files. */
  startedAt: number;
  seconds: number;
  /** This process's CPU time over the uploads (user and system), ms. */
  cpuMs: number;
}

export const UPLOADED_PREFIX = 'UPLOADED ';
export const WRITTEN_PREFIX = 'WRITTEN ';

/** Set on every upload, as replication of a DICOM archive would: Event Grid's event carries it. */
export const UPLOAD_CONTENT_TYPE = 'application/dicom';
