/**
 * A module of the project compiled to CommonJS, for a test that loads it where ts-jest does not
 * reach: a fresh process, or a fixture app the local host loads. The module must not import
 * other modules of the project (only Node's and packages').
 */
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
