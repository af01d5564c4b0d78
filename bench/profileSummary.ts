/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, e.g. the function host's under
 * `BENCH_PROFILE=<folder> npm run bench`): self time by module (an npm package, a project folder,
 * Node's internals, the garbage collector) and the functions with the most self time.
 *
 * Usage: node dist/bench/profileSummary.js <file.cpuprofile> [top functions, default 25]
 */
import * as fs from 'node:fs';

import { formatTable } from './stats';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  ms: number;
  share: number;
}

/**
 * The module a script URL belongs to: `pkg` or `@scope/pkg` under node_modules, the project's
 * own folder (`shared/dicom`, `local`, ...), `node:internal`, or the V8 pseudo-frames.
 */
export function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? url);
  }
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) {
    const parts = url.slice(dist + '/dist/'.length).split('/');
    return parts.length > 2 ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
  }
  return url;
}

/**
 * Self time (ms) per module and per function, and inclusive time per module (the samples with
 * that module anywhere on their stack: what calling into it costs, Node's and V8's work on its
 * behalf included), largest first. Asynchronous continuations start a new stack, so a
 * response's parsing counts for whoever handles it, not for the request's sender.
 */
export function summarise(profile: CpuProfile): { totalMs: number; modules: SelfTime[]; inclusiveModules: SelfTime[]; functions: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // A sample's time is the delta to the next sample (V8 records the delta before each one).
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    const ms = (deltas[i + 1] ?? 0) / 1000;
    self.set(id, (self.get(id) ?? 0) + ms);
  }
  const modules = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const functions = new Map<string, number>();
  let totalMs = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const module = moduleOf(url, functionName);
    if (module === '(idle)') continue;
    totalMs += ms;
    modules.set(module, (modules.get(module) ?? 0) + ms);
    const where = url ? `${module}:${url.split('/').pop() ?? ''}:${lineNumber + 1}` : module;
    const key = `${functionName || '(anonymous)'} ${where}`;
    functions.set(key, (functions.get(key) ?? 0) + ms);
    const onStack = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame && frame.functionName !== '(root)') onStack.add(moduleOf(frame.url, frame.functionName));
    }
    for (const m of onStack) inclusive.set(m, (inclusive.get(m) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms: Math.round(ms * 10) / 10, share: totalMs > 0 ? Math.round((ms / totalMs) * 1000) / 10 : 0 }));
  return { totalMs: Math.round(totalMs), modules: sorted(modules), inclusiveModules: sorted(inclusive), functions: sorted(functions) };
}

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: profileSummary.js <file.cpuprofile> [top]');
  const top = Number(topArg ?? 25);
  const summary = summarise(JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile);
  const rows = (list: SelfTime[]) => list.slice(0, top).map((s) => [s.name, s.ms.toFixed(1), `${s.share.toFixed(1)} %`]);
  process.stdout.write(`busy (not idle) ${summary.totalMs} ms\n\n`);
  process.stdout.write(`${formatTable([['module', 'self ms', 'share'], ...rows(summary.modules)])}\n\n`);
  process.stdout.write(`${formatTable([['module (on the stack)', 'inclusive ms', 'share'], ...rows(summary.inclusiveModules)])}\n\n`);
  process.stdout.write(`${formatTable([['function', 'self ms', 'share'], ...rows(summary.functions)])}\n`);
}

if (require.main === module) main();
