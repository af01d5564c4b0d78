/**
 * `npm test`'s runner (tools/runTests.ts): the two runs it plans for the arguments .ci/run
 * passes, the plain run for any other, and the merged results that .ci/run counts. The runs
 * themselves are a stand-in jest here (a script that writes the results it is told to and exits
 * with the code it is told to), so that these tests do not start the whole suite.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type JestResults, mergeJestResults, planTestRuns, runTests } from '../../../tools/runTests';

const results = (over: Partial<JestResults> & Record<string, unknown>): JestResults => ({
  success: true,
  startTime: 1000,
  testResults: [],
  numPassedTests: 0,
  numFailedTests: 0,
  numRuntimeErrorTestSuites: 0,
  numFailedTestSuites: 0,
  numTotalTests: 0,
  snapshot: { added: 0, failure: false, total: 0 },
  ...over,
});

describe('planTestRuns', () => {
  test('given the arguments of .ci/run, then unit and slow run with the workers, integration in band, each into a file of its own', () => {
    const plan = planTestRuns(['--json', '--outputFile=/r/all.json'], 2, '/s');
    expect(plan.outputFile).toBe('/r/all.json');
    expect(plan.runs).toEqual([
      { args: ['--selectProjects', 'unit', 'slow', '--maxWorkers=2', '--json', '--outputFile=/s/results-1.json'], outputFile: '/s/results-1.json' },
      { args: ['--selectProjects', 'integration', '--runInBand', '--json', '--outputFile=/s/results-2.json'], outputFile: '/s/results-2.json' },
    ]);
  });

  test('given --outputFile as two arguments, then the same plan', () => {
    expect(planTestRuns(['--outputFile', '/r/all.json', '--json'], 3, '/s')).toEqual(planTestRuns(['--json', '--outputFile=/r/all.json'], 3, '/s'));
  });

  test('given no arguments, then the same two runs without result files', () => {
    expect(planTestRuns([], 2, '/s')).toEqual({
      runs: [{ args: ['--selectProjects', 'unit', 'slow', '--maxWorkers=2'] }, { args: ['--selectProjects', 'integration', '--runInBand'] }],
    });
  });

  test.each([
    [['test/unit/tools/runTests.test.ts']],
    [['--selectProjects', 'integration']],
    [['-t', 'given', '--json', '--outputFile=/r/x.json']],
    [['--json']],
  ])('given %j, then one plain jest run with the arguments as given', (args) => {
    expect(planTestRuns(args, 2, '/s')).toEqual({ runs: [{ args }] });
  });
});

describe('mergeJestResults', () => {
  test('given two runs, then their counts add up, their files follow in order and it succeeds only if both did', () => {
    const a = results({ numPassedTests: 1600, numTotalTests: 1600, startTime: 2000, testResults: ['a1', 'a2'], snapshot: { added: 1, failure: false, total: 2 } });
    const b = results({ numPassedTests: 800, numFailedTests: 2, numFailedTestSuites: 1, numTotalTests: 802, success: false, startTime: 1500, testResults: ['b1'], snapshot: { added: 0, failure: true, total: 3 } });
    const merged = mergeJestResults([a, b]);
    expect(merged).toMatchObject({ numPassedTests: 2400, numFailedTests: 2, numFailedTestSuites: 1, numTotalTests: 2402, success: false, startTime: 1500, testResults: ['a1', 'a2', 'b1'] });
    expect(merged.snapshot).toEqual({ added: 1, failure: true, total: 5 });
    expect(mergeJestResults([a, results({ numPassedTests: 5 })]).success).toBe(true);
  });

  test('given a run that wrote no results, then it counts as a failed suite and the whole fails', () => {
    const merged = mergeJestResults([results({ numPassedTests: 10 })], 1);
    expect(merged).toMatchObject({ numPassedTests: 10, numRuntimeErrorTestSuites: 1, numFailedTestSuites: 1, success: false });
  });
});

describe('runTests, with a stand-in jest', () => {
  let dir = '';
  let fakeJest = '';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'run-tests-'));
    fakeJest = path.join(dir, 'jest.js');
    // Records its arguments; the integration run does what integration.json says (the child does
    // not see this sandbox's process.env): exit with `exit`, and write no results when `silent`.
    fs.writeFileSync(path.join(dir, 'integration.json'), '{}');
    fs.writeFileSync(
      fakeJest,
      `const fs = require('fs');
       const args = process.argv.slice(2);
       fs.appendFileSync(${JSON.stringify(path.join(dir, 'calls.txt'))}, JSON.stringify(args) + '\\n');
       const integration = args.includes('integration');
       const told = JSON.parse(fs.readFileSync(${JSON.stringify(path.join(dir, 'integration.json'))}, 'utf8'));
       const out = args.find((a) => a.startsWith('--outputFile='));
       if (out && !(integration && told.silent)) {
         const passed = integration ? 7 : 5;
         fs.writeFileSync(out.slice('--outputFile='.length), JSON.stringify({ success: true, startTime: 1, testResults: [integration ? 'i' : 'u'], numPassedTests: passed, numFailedTests: 0, numRuntimeErrorTestSuites: 0, numFailedTestSuites: 0 }));
       }
       process.exit(integration ? (told.exit ?? 0) : 0);`,
    );
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const calls = () => fs.readFileSync(path.join(dir, 'calls.txt'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[]);
  const merged = () => JSON.parse(fs.readFileSync(path.join(dir, 'all.json'), 'utf8')) as JestResults;

  test('given both runs pass, then it exits 0 and the merged file holds both runs', () => {
    expect(runTests(['--json', `--outputFile=${path.join(dir, 'all.json')}`], { jest: fakeJest, workers: 2 })).toBe(0);
    expect(calls().map((c) => c.slice(0, 3))).toEqual([['--selectProjects', 'unit', 'slow'], ['--selectProjects', 'integration', '--runInBand']]);
    expect(merged()).toMatchObject({ numPassedTests: 12, success: true, testResults: ['u', 'i'] });
  });

  test('given the integration run fails, then the unit run has still run and it exits 1', () => {
    fs.writeFileSync(path.join(dir, 'integration.json'), JSON.stringify({ exit: 1 }));
    expect(runTests(['--json', `--outputFile=${path.join(dir, 'all.json')}`], { jest: fakeJest, workers: 2 })).toBe(1);
    expect(calls()).toHaveLength(2);
  });

  test('given a run that writes no results, then it exits 1 and the merged file counts a failed suite', () => {
    fs.writeFileSync(path.join(dir, 'integration.json'), JSON.stringify({ silent: true }));
    expect(runTests(['--json', `--outputFile=${path.join(dir, 'all.json')}`], { jest: fakeJest, workers: 2 })).toBe(1);
    expect(merged()).toMatchObject({ numPassedTests: 5, numRuntimeErrorTestSuites: 1, success: false });
  });
});
