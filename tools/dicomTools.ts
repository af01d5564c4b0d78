/**
 * Thin wrappers around the DICOM command-line tools the comparison and the integration tests
 * run: dciodvfy (dicom3tools) and gdcmanon (libgdcm-tools). Each call is one process; the
 * callers decide how many run at once.
 */
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: readonly string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** True when the command can be started (it exists on PATH). */
export function isInstalled(command: string): boolean {
  const r = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}

/**
 * The number of errors dciodvfy reports for a file: its lines that start with "Error" (it
 * writes them to stderr; warnings start with "Warning" and are not counted).
 */
export async function dciodvfyErrors(file: string): Promise<{ errors: number; lines: string[] }> {
  const r = await run('dciodvfy', [file]);
  const lines = `${r.stderr}\n${r.stdout}`.split('\n').filter((l) => l.startsWith('Error'));
  return { errors: lines.length, lines };
}

/**
 * A throwaway self-signed certificate for `gdcmanon -e`: its E.1.1 mode encrypts the removed
 * attributes into Encrypted Attributes Sequence for the certificate's owner and refuses to
 * run without one. The key is discarded, so nothing can be re-identified.
 */
export async function throwawayCertificate(dir: string): Promise<string> {
  const cert = join(dir, 'gdcmanon-cert.pem');
  const r = await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'gdcmanon-key.pem'), '-out', cert, '-days', '1', '-subj', '/CN=throwaway',
  ]);
  if (r.code !== 0) throw new Error(`openssl could not create a certificate: ${r.stderr.trim()}`);
  return cert;
}

/** gdcmanon's Basic Application Level Confidentiality Profile (E.1.1) on one file. */
export async function gdcmanonBasic(input: string, output: string, certificate: string): Promise<boolean> {
  const r = await run('gdcmanon', ['-e', '-c', certificate, '-i', input, '-o', output]);
  return r.code === 0;
}

/** Runs `task` over `items` with at most `limit` at a time, keeping the order of results. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await task(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
