/** Uploading a folder of files into a container, as the archive's replication would land them. */
import type { ContainerClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as path from 'path';

export interface FolderFile {
  file: string;
  /** Relative path with `/` separators: the blob name (after the prefix). */
  relative: string;
  size: number;
}

/** Every file under folder, recursively, sorted; `exclude` gets the relative path. */
export function listFolder(folder: string, exclude: (relative: string) => boolean = () => false): FolderFile[] {
  const out: FolderFile[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const relative = path.relative(folder, full).split(path.sep).join('/');
        if (!exclude(relative)) out.push({ file: full, relative, size: fs.statSync(full).size });
      }
    }
  };
  walk(folder);
  return out.sort((a, b) => a.relative.localeCompare(b.relative));
}

export interface UploadProgress {
  done: number;
  failed: number;
  total: number;
  bytes: number;
}

export interface UploadOptions {
  /** Prepended to every blob name, e.g. `samples/`. */
  prefix?: string;
  /** Files uploading at once; default 8. */
  concurrency?: number;
  onProgress?: (progress: UploadProgress) => void;
  abortSignal?: AbortSignal;
}

/**
 * Uploads the files (streamed from disk). A failed file is counted and reported through
 * `failures`, the others go on; never throws for one file.
 */
export async function uploadFiles(container: ContainerClient, files: FolderFile[], options: UploadOptions = {}): Promise<UploadProgress & { failures: { relative: string; message: string }[] }> {
  const progress: UploadProgress = { done: 0, failed: 0, total: files.length, bytes: 0 };
  const failures: { relative: string; message: string }[] = [];
  let next = 0;
  const worker = async () => {
    for (;;) {
      if (options.abortSignal?.aborted) return;
      const item = files[next++];
      if (!item) return;
      try {
        // No content type: the archive's replication does not set one either.
        await container.getBlockBlobClient(`${options.prefix ?? ''}${item.relative}`).uploadFile(item.file, { abortSignal: options.abortSignal });
        progress.done += 1;
        progress.bytes += item.size;
      } catch (err) {
        progress.failed += 1;
        failures.push({ relative: item.relative, message: (err as Error).message });
      }
      options.onProgress?.({ ...progress });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 8) }, worker));
  return { ...progress, failures };
}
