/**
 * The local host fires timer triggers on their NCRONTAB schedule once its timers are started,
 * through the library as the worker does; a run never overlaps the previous one, and a
 * schedule it cannot read is reported, not fired.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { type FunctionHost, startHost } from '../../../local/host';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));

const app = (journalFile: string) => `
const { app } = require(${functionsLib});
const fs = require('fs');
const note = (line) => fs.appendFileSync(${JSON.stringify(journalFile)}, line + '\\n');
app.timer('everySecond', { schedule: '*/1 * * * * *', handler: async (timer) => note('everySecond ' + typeof timer.isPastDue + ' ' + typeof timer.scheduleStatus.next) });
app.timer('slow', { schedule: '*/1 * * * * *', handler: async () => { note('slow start'); await new Promise((r) => setTimeout(r, 2500)); note('slow end'); } });
app.timer('monday', { schedule: '0 0 9 * * MON', handler: async () => note('monday') });
`;

let dir: string;
let journal: string;
let host: FunctionHost;
const logs: { level: string; functionName: string; message: string }[] = [];
const lines = () => fs.readFileSync(journal, 'utf8').split('\n').filter(Boolean);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-timers-'));
  journal = path.join(dir, 'journal.txt');
  fs.writeFileSync(journal, '');
  fs.mkdirSync(path.join(dir, 'functions'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'functions/*.js' }));
  fs.writeFileSync(path.join(dir, 'host.json'), JSON.stringify({ version: '2.0' }));
  fs.writeFileSync(path.join(dir, 'functions', 'app.js'), app(journal));
  host = await startHost({ projectRoot: dir, port: 0, logSink: (level, functionName, message) => logs.push({ level, functionName, message }) });
});

afterAll(async () => {
  await host?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('given timers not started yet, then none fires; once started, they fire on schedule without overlapping', async () => {
  expect(host.functions.filter((f) => f.trigger === 'timerTrigger').map((f) => [f.name, f.schedule])).toEqual([
    ['everySecond', '*/1 * * * * *'],
    ['slow', '*/1 * * * * *'],
    ['monday', '0 0 9 * * MON'],
  ]);
  await new Promise((r) => setTimeout(r, 1200));
  expect(lines()).toEqual([]);

  host.startTimers();
  await new Promise((r) => setTimeout(r, 3600));
  const seen = lines();
  expect(seen.filter((l) => l === 'everySecond boolean string').length).toBeGreaterThanOrEqual(2);
  // The slow timer's runs follow one another: every start is followed by its end before the next start.
  const slow = seen.filter((l) => l.startsWith('slow'));
  expect(slow[0]).toBe('slow start');
  for (let i = 1; i < slow.length; i++) expect(slow[i]).not.toBe(slow[i - 1]);
  expect(seen).not.toContain('monday');
  expect(logs.some((l) => l.functionName === 'monday' && l.level === 'warning' && /not fired locally: the day-of-week field/.test(l.message))).toBe(true);
});

test('given fireTimer, then the timer runs now and its result is awaited', async () => {
  const before = lines().filter((l) => l === 'monday').length;
  await expect(host.fireTimer('monday')).resolves.toBeUndefined();
  expect(lines().filter((l) => l === 'monday').length).toBe(before + 1);
  await expect(host.fireTimer('nothing')).rejects.toThrow(/no timer function named "nothing"/);
});
