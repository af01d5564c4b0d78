/**
 * The OCR engine runs offline (issue 17): a child process with the network taken away
 * (offline/denyNetwork.js, preloaded in the process and in every worker thread the engine
 * starts) OCRs a real ultrasound fixture with the production TesseractDetector. The text is
 * found and no connection, lookup, request or fetch was attempted. A probe run first shows that
 * the preload does block and record each of these, so the check can fail.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

jest.setTimeout(300_000);

const ROOT = join(__dirname, '..', '..', '..', '..');
const OFFLINE = join(__dirname, 'offline');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'dicom', 'deid', 'ultrasounds__GREYSCALE_IMAGE.dcm');

interface Note {
  thread: number;
  armed?: boolean;
  attempt?: string;
}

/** Runs the child under the preload; its JSON answer and what the preload noted. */
function offline(args: string[]): { result: unknown; notes: Note[]; stderr: string; status: number | null } {
  const dir = mkdtempSync(join(tmpdir(), 'ocr-offline-'));
  const file = join(dir, 'attempts.jsonl');
  try {
    // No proxy or extra CA settings of the caller leak in; the child is told nothing of the network.
    const env = { PATH: process.env.PATH ?? '', NETWORK_ATTEMPTS_FILE: file };
    const run = spawnSync(process.execPath, ['--require', join(OFFLINE, 'denyNetwork.js'), join(OFFLINE, 'ocrFixture.js'), ...args], { env, cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
    const lines = run.stdout.trim().split('\n').filter(Boolean);
    const notes = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Note);
    return { result: lines.length ? (JSON.parse(lines[lines.length - 1]!) as unknown) : undefined, notes, stderr: run.stderr, status: run.status };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('given the network taken away from the process and its worker threads', () => {
  it('the preload blocks and records every kind of attempt (fetch, TCP, DNS, http, https)', () => {
    const run = offline(['--probe']);
    expect(run.status).toBe(0);
    const tried = ['fetch', 'net.connect', 'new net.Socket().connect', 'dns.lookup', 'dns.promises.lookup', 'http.get', 'https.request'];
    expect(run.result).toEqual({ blocked: tried });
    expect(run.notes.filter((n) => n.attempt).map((n) => n.attempt)).toEqual(['fetch', 'net.connect', 'net.Socket.connect', 'dns.lookup', 'dns.promises.lookup', 'http.get', 'https.request']);
  });

  it('then the production TextDetector reads the burned-in text of the real ultrasound, and nothing tried the network in any thread', () => {
    const run = offline(['--ocr', FIXTURE, ROOT]);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const words = (run.result as { words: string[] }).words;
    // The overlay of this public sample: its test patient's name line and its dates.
    expect(words).toContain('TEST');
    expect(words.filter((w) => /^\d{2}\/\d{2}\/\d{4}$/.test(w)).length).toBeGreaterThanOrEqual(2);
    // The engine ran in a worker thread, and the preload watched it there too.
    const armed = new Set(run.notes.filter((n) => n.armed).map((n) => n.thread));
    expect(armed.has(0)).toBe(true);
    expect(armed.size).toBeGreaterThanOrEqual(2);
    expect(run.notes.filter((n) => n.attempt)).toEqual([]);
  });
});
