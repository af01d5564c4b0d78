/**
 * Modules of the project compiled to CommonJS, for a test that loads them where ts-jest does not
 * reach: a fresh process, or a fixture app the local host loads. writeTranspiled and
 * useTranspiled compile one module, which must not import other modules of the project (only
 * Node's and packages'); callInFreshProcess compiles what it requires as it goes.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import ts from 'typescript';

/** The project root, from test/unit. */
const PROJECT_ROOT = path.join(__dirname, '..', '..');

/** Compiles `source` (a path under the project root) and writes it to `outFile`; returns `outFile`. */
export function writeTranspiled(source: string, outFile: string): string {
  const compiled = ts.transpileModule(fs.readFileSync(path.join(PROJECT_ROOT, source), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
  });
  fs.writeFileSync(outFile, compiled.outputText);
  return outFile;
}

/**
 * For a describe block: compiles `source` into a temporary folder before its tests and removes
 * the folder after them. Returns the compiled file's path (known once the tests run).
 */
export function useTranspiled(source: string): () => string {
  let dir = '';
  let file = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'transpiled-'));
    file = writeTranspiled(source, path.join(dir, `${path.basename(source, '.ts')}.js`));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return () => file;
}

/**
 * Calls `exportName(...args)` of a module of the project (a path under the project root; it may
 * import other modules of the project) in a fresh Node.js process, and resolves with what it
 * returned (JSON). The process compiles each TypeScript module as it is required.
 *
 * For measurements that a jest worker would distort: a worker that has run other test files
 * holds hundreds of MB, and one full collection of that heap pauses the event loop for 200-500
 * ms in the middle of whatever is being measured, work that is not the code under test.
 */
export function callInFreshProcess<T>(source: string, exportName: string, args: unknown[], timeoutMs = 60_000): Promise<T> {
  const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true };
  const script = `
    const fs = require('node:fs');
    const ts = require(${JSON.stringify(require.resolve('typescript'))});
    const options = ${JSON.stringify(compilerOptions)};
    require.extensions['.ts'] = (module, filename) => {
      module._compile(ts.transpileModule(fs.readFileSync(filename, 'utf8'), { compilerOptions: options, fileName: filename }).outputText, filename);
    };
    const args = JSON.parse(process.argv[1]);
    Promise.resolve(require(${JSON.stringify(path.join(PROJECT_ROOT, source))})[${JSON.stringify(exportName)}](...args)).then(
      (result) => process.stdout.write(JSON.stringify(result ?? null), () => process.exit(0)),
      (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); },
    );
  `;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script, JSON.stringify(args)], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${source} ${exportName} in a fresh process failed: ${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as T);
    });
  });
}
