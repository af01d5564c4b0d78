/**
 * ANQ change detection, snapshot mode against notify mode, in one run: the latency from a file's
 * close in the replication target to its catalog entry (`GET /api/ingestions` says cataloged),
 * through the whole local stack (stand-ins, watcher timer, Event Grid webhook, ingestion,
 * Cosmos DB server), one stack per mode, each in a process of its own as npm start runs it.
 *
 * Snapshot mode is measured at its best: a snapshot is taken the moment the file is closed (a
 * replication job's snapshot at its end), and the watcher's timer ticks every 5 s (npm start's
 * schedule; every minute in Azure by default). Notify mode runs with ANQ_NOTIFY_SETTLE_MS (1 s
 * here, 5 s by default). Files are placed one at a time at random moments, so the timer's phase
 * is random.
 *
 * Run: `npm run build && node dist/bench/anqLatency.js` (ANQ_LATENCY_FILES, default 12 per mode;
 * ANQ_LATENCY_SETTLE_MS, default 1000; ANQ_LATENCY_MODES, default snapshots,notify).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { asciiValue } from '../shared/dicom/dataset';
import { parseDicomBuffer } from '../shared/dicom/parser';
import { Tags } from '../shared/dicom/tags';
import { anqSourceUrl } from '../shared/events/ingestEvents';
import { percentile } from './stats';

const projectRoot = path.resolve(__dirname, '..', '..');
const FIXTURE = path.join(projectRoot, 'test', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');

interface StackInfo {
  hostUrl: string;
  targetDir: string;
  restEndpoint: string;
  restToken: string;
  operationsToken: string;
  cluster: string;
  exportPath: string;
}

const childScript = (options: object, logFile: string) => `
const { startStack } = require(${JSON.stringify(path.join(projectRoot, 'dist', 'local', 'stack.js'))});
const fs = require('fs');
const logSink = (level, fn, message) => fs.appendFileSync(${JSON.stringify(logFile)}, level + ' ' + (fn || 'host') + ': ' + message + '\\n');
startStack({ ...${JSON.stringify(options)}, logSink }).then((stack) => {
  process.stdout.write(JSON.stringify({
    hostUrl: stack.hostUrl, targetDir: stack.anq.targetDir, restEndpoint: stack.anq.standIn.restEndpoint, restToken: stack.anq.restToken,
    operationsToken: stack.devIssuer.tokens.operations, cluster: stack.anq.cluster, exportPath: stack.anq.exportPath,
  }) + '\\n');
  process.stdin.on('end', () => stack.stop().then(() => process.exit(0)));
  process.stdin.resume();
}, (err) => { console.error(err.message); process.exit(1); });
`;

async function startStackProcess(mode: 'snapshots' | 'notify', dir: string, settleMs: number): Promise<{ proc: ChildProcess; info: StackInfo }> {
  const options = {
    projectRoot,
    ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 },
    persistence: { inMemory: true },
    localSettings: false,
    dataDir: dir,
    deidKey: 'bench-anq-latency-deid-key-0123456789abcdef',
    anq: { targetDir: path.join(dir, 'anq'), stateDir: path.join(dir, 'anq-state'), prefix: 'dicom/', watchSchedule: '*/5 * * * * *', watchMode: mode },
  };
  const env = { ...process.env, ANQ_WATCH_MODE: mode, ANQ_NOTIFY_SETTLE_MS: String(settleMs), ANQ_WATCH_MAX_RUN_MS: '3600000' };
  const proc = spawn(process.execPath, ['-e', childScript(options, path.join(dir, 'stack.log'))], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const info = await new Promise<StackInfo>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const line = out.split('\n').find((l) => l.startsWith('{"hostUrl"'));
      if (line) resolve(JSON.parse(line) as StackInfo);
    });
    proc.on('exit', (code) => reject(new Error(`the ${mode} stack exited (${code})`)));
  });
  return { proc, info };
}

async function instance(fixture: Buffer, i: number): Promise<Buffer> {
  const sop = asciiValue((await parseDicomBuffer(fixture)).dataset.get(Tags.SOPInstanceUID)) as string;
  const next = `${sop.slice(0, -5)}${String(i).padStart(5, '0')}`;
  const out = Buffer.from(fixture);
  for (let at = out.indexOf(sop, 132); at >= 0; at = out.indexOf(sop, at + 1)) out.write(next, at, 'latin1');
  return out;
}

async function statusOf(info: StackInfo, url: string): Promise<string | undefined> {
  const res = await fetch(`${info.hostUrl}/api/ingestions?source=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${info.operationsToken}` } });
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  return ((await res.json()) as { status?: string }).status;
}

async function measure(mode: 'snapshots' | 'notify', files: number, settleMs: number): Promise<number[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `anq-latency-${mode}-`));
  const { proc, info } = await startStackProcess(mode, dir, settleMs);
  const fixture = fs.readFileSync(FIXTURE);
  const latencies: number[] = [];
  try {
    // Let the notify watcher register its stream and reconcile the empty tree first.
    await new Promise((r) => setTimeout(r, 6_000));
    for (let i = 0; i < files; i++) {
      await new Promise((r) => setTimeout(r, Math.random() * 2_000));
      const rel = `dicom/latency/${i}.dcm`;
      const bytes = await instance(fixture, (mode === 'notify' ? 50_000 : 60_000) + i);
      fs.mkdirSync(path.dirname(path.join(info.targetDir, rel)), { recursive: true });
      const fd = fs.openSync(path.join(info.targetDir, rel), 'w');
      fs.writeSync(fd, bytes);
      fs.closeSync(fd);
      const closed = Date.now();
      if (mode === 'snapshots') {
        const r = await fetch(`${info.restEndpoint}/v3/snapshots/`, { method: 'POST', headers: { authorization: `Bearer ${info.restToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name_suffix: 'replication' }) });
        if (!r.ok) throw new Error(`snapshot failed (${r.status})`);
        await r.body?.cancel();
      }
      const url = anqSourceUrl(info.cluster, `${info.exportPath}/${rel}`);
      const deadline = Date.now() + 120_000;
      for (;;) {
        const status = await statusOf(info, url);
        if (status === 'cataloged') break;
        if (status && status !== 'cataloged') throw new Error(`${rel} ended ${status}`);
        if (Date.now() > deadline) {
          const log = fs.readFileSync(path.join(dir, 'stack.log'), 'utf8').split('\n').filter((l) => /anq|warn|error/i.test(l)).slice(-15).join('\n');
          throw new Error(`${rel} not cataloged within 120 s in ${mode} mode; the stack's last ANQ lines:\n${log}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      latencies.push(Date.now() - closed);
    }
  } finally {
    // The notify session holds the timer's run, which a graceful stop waits for: the stack's process is ended outright.
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return latencies;
}

async function main(): Promise<void> {
  const files = Number(process.env.ANQ_LATENCY_FILES ?? 12);
  const settleMs = Number(process.env.ANQ_LATENCY_SETTLE_MS ?? 1000);
  const results: Record<string, { p50: number; p90: number; max: number; n: number }> = {};
  const modes = (process.env.ANQ_LATENCY_MODES ?? 'snapshots,notify').split(',') as ('snapshots' | 'notify')[];
  for (const mode of modes) {
    const l = await measure(mode, files, settleMs);
    results[mode] = { p50: percentile(l, 50), p90: percentile(l, 90), max: Math.max(...l), n: l.length };
    console.log(`${mode}: ${l.join(', ')} ms`);
  }
  const s = results.snapshots;
  const n = results.notify;
  const ratio = s && n ? { notifyVsSnapshotsP50: Math.round((n.p50 / s.p50) * 100) / 100 } : {};
  console.log(JSON.stringify({ anqLatency: { settleMs, watchSchedule: '*/5 * * * * *', ...results, ...ratio } }, null, 2));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
