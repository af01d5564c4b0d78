/**
 * `npm test`: the three jest projects in two runs. The unit and slow projects run first, several
 * files at once (at least two workers); the integration project runs next, one file at a time,
 * because its files share the local services that test/integration/globalSetup.ts starts (and
 * some stop and restart them). On the 2-CPU CI machine jest's default is one worker for the
 * whole run (CPUs less one), so the unit and slow files, 445 s of the 1,213 s CI spent in jest
 * (2026-12-04), ran one after another with a CPU idle: with two workers they took 290 s.
 *
 * `--json --outputFile=<file>` (as .ci/run passes them) gives each run a file of its own and
 * writes their merged results to <file>; a run that wrote none counts as a failed suite there.
 * Any other argument (a path, `--selectProjects`, `-t`) makes it one plain jest run with the
 * arguments as given. Exits non-zero when any run failed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRun {
  /** jest's arguments. */
  args: string[];
  /** Where the run writes its JSON results, when the caller asked for them. */
  outputFile?: string;
}

export interface TestPlan {
  runs: TestRun[];
  /** Where the merged results go. */
  outputFile?: string;
}

/** The runs for `npm test <args>`; `scratch` is a folder for the runs' own result files. */
export function planTestRuns(args: readonly string[], workers: number, scratch: string): TestPlan {
  let json = false;
  let outputFile: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--json') json = true;
    else if (arg.startsWith('--outputFile=')) outputFile = arg.slice('--outputFile='.length);
    else if (arg === '--outputFile' && i + 1 < args.length) outputFile = args[++i];
    else rest.push(arg);
  }
  if (rest.length > 0 || (json && outputFile === undefined)) return { runs: [{ args: [...args] }] };
  const phases = [
    ['--selectProjects', 'unit', 'slow', `--maxWorkers=${workers}`],
    ['--selectProjects', 'integration', '--runInBand'],
  ];
  if (outputFile === undefined) return { runs: phases.map((p) => ({ args: p })) };
  return {
    outputFile,
    runs: phases.map((p, i) => {
      const file = join(scratch, `results-${i + 1}.json`);
      return { args: [...p, '--json', `--outputFile=${file}`], outputFile: file };
    }),
  };
}

/** jest's `--json` results, as far as the merge reads them. */
export interface JestResults {
  success: boolean;
  startTime: number;
  testResults: unknown[];
  [field: string]: unknown;
}

/**
 * One result of several runs: counts (`num...`) and snapshot counts summed, test files in run
 * order, successful only if every run was; `missing` runs (no results written) count as failed
 * suites that did not run.
 */
export function mergeJestResults(runs: readonly JestResults[], missing = 0): JestResults {
  const merged: JestResults = { ...(runs[0] ?? {}), success: missing === 0, startTime: Number.POSITIVE_INFINITY, testResults: [] };
  for (const [i, run] of runs.entries()) {
    for (const [field, value] of Object.entries(run)) {
      if (i > 0 && field.startsWith('num') && typeof value === 'number') merged[field] = ((merged[field] as number | undefined) ?? 0) + value;
    }
    if (i > 0 && run.snapshot && typeof run.snapshot === 'object') {
      const sum = { ...(merged.snapshot as Record<string, unknown>) };
      for (const [field, value] of Object.entries(run.snapshot as Record<string, unknown>)) {
        if (typeof value === 'number' && typeof sum[field] === 'number') sum[field] = (sum[field] as number) + value;
        else if (typeof value === 'boolean' && typeof sum[field] === 'boolean') sum[field] = (sum[field] as boolean) || value;
      }
      merged.snapshot = sum;
    }
    if (run.wasInterrupted === true) merged.wasInterrupted = true;
    merged.success = merged.success && run.success;
    merged.startTime = Math.min(merged.startTime, run.startTime);
    merged.testResults.push(...run.testResults);
  }
  if (missing > 0) {
    merged.numRuntimeErrorTestSuites = ((merged.numRuntimeErrorTestSuites as number | undefined) ?? 0) + missing;
    merged.numFailedTestSuites = ((merged.numFailedTestSuites as number | undefined) ?? 0) + missing;
  }
  if (!Number.isFinite(merged.startTime)) merged.startTime = Date.now();
  return merged;
}

/** Runs the plan for `args` with the jest entry point `jest` (a script run by this Node). Resolves with the exit code. */
export function runTests(args: readonly string[], options: { jest: string; workers: number }): number {
  const scratch = mkdtempSync(join(tmpdir(), 'vna-tests-'));
  try {
    const plan = planTestRuns(args, options.workers, scratch);
    let failed = false;
    for (const run of plan.runs) {
      const result = spawnSync(process.execPath, [options.jest, ...run.args], { stdio: 'inherit' });
      if (result.status !== 0) failed = true;
    }
    if (plan.outputFile !== undefined) {
      const written = plan.runs.filter((r) => r.outputFile !== undefined && existsSync(r.outputFile));
      const results = written.map((r) => JSON.parse(readFileSync(r.outputFile as string, 'utf8')) as JestResults);
      const missing = plan.runs.length - written.length;
      if (missing > 0) process.stderr.write(`runTests: ${missing} of ${plan.runs.length} jest runs wrote no results\n`);
      writeFileSync(plan.outputFile, JSON.stringify(mergeJestResults(results, missing)));
      if (missing > 0) failed = true;
    }
    return failed ? 1 : 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (require.main === module) {
  process.exitCode = runTests(process.argv.slice(2), { jest: require.resolve('jest/bin/jest'), workers: Math.max(2, availableParallelism() - 1) });
}
