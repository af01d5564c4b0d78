/**
 * Entry point of one benchmark child process: `node dist/bench/worker.js <mode> <job.json>`.
 * Prints one `BENCH_RESULT <json>` line; anything else on stdout is ignored by the parent.
 */
import * as fs from 'node:fs';

import type { WorkList } from './modes';
import type { SharingScenarioOptions } from './sharingScenario';
import type { StackScenarioOptions } from './stackScenario';
import type { WadoScenarioOptions } from './wadoScenario';

// run.ts looks for this prefix.
const RESULT_PREFIX = 'BENCH_RESULT ';

async function main(): Promise<void> {
  const [mode, jobFile] = process.argv.slice(2);
  if (!mode || !jobFile) throw new Error('usage: worker.js <core|naive|dcmjs-header|stack|wado|sharing> <job.json>');
  const job = JSON.parse(fs.readFileSync(jobFile, 'utf8')) as unknown;
  let result: unknown;
  // Loaded on demand: a core child must not carry the SDKs and the stack in its peak RSS.
  if (mode === 'core') result = await (await import('./modes')).runCore(job as WorkList);
  else if (mode === 'naive') result = await (await import('./modes')).runNaiveDcmjs(job as WorkList);
  else if (mode === 'dcmjs-header') result = await (await import('./modes')).runHeaderDcmjs(job as WorkList);
  else if (mode === 'stack') result = await (await import('./stackScenario')).runStackScenario(job as StackScenarioOptions);
  else if (mode === 'wado') result = await (await import('./wadoScenario')).runWadoScenario(job as WadoScenarioOptions);
  else if (mode === 'sharing') result = await (await import('./sharingScenario')).runSharingScenario(job as SharingScenarioOptions);
  else throw new Error(`unknown mode ${mode}`);
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
