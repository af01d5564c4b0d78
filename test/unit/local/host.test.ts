import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { expandMainGlob } from '../../../local/host';
import { applyLocalSettings } from '../../../local/stack';

describe('main glob', () => {
  let root: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'main-glob-'));
    for (const f of ['dist/functions/b.js', 'dist/functions/a.js', 'dist/functions/a.js.map', 'dist/functions/sub/c.js', 'dist/other/d.js']) {
      fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
      fs.writeFileSync(path.join(root, f), '');
    }
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test('given dist/functions/*.js, then the files of that folder only, sorted', () => {
    expect(expandMainGlob(root, 'dist/functions/*.js').map((f) => path.relative(root, f))).toEqual([
      path.join('dist', 'functions', 'a.js'),
      path.join('dist', 'functions', 'b.js'),
    ]);
  });

  test('given a ** glob, then nested files too', () => {
    expect(expandMainGlob(root, 'dist/**/*.js')).toHaveLength(4);
  });

  test('given a single file or no match, then that file or nothing', () => {
    expect(expandMainGlob(root, './dist/other/d.js')).toEqual([path.join(root, 'dist', 'other', 'd.js')]);
    expect(expandMainGlob(root, 'build/*.js')).toEqual([]);
  });
});

describe('local.settings.json', () => {
  test('given Values, then they fill the environment without overriding what is set', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-settings-'));
    const file = path.join(dir, 'local.settings.json');
    fs.writeFileSync(file, JSON.stringify({ IsEncrypted: false, Values: { A: 'from-file', B: 'from-file', N: 3 } }));
    const env: NodeJS.ProcessEnv = { B: 'from-env' };
    expect(applyLocalSettings(file, env)).toEqual(['A', 'N']);
    expect(env).toEqual({ A: 'from-file', B: 'from-env', N: '3' });
    expect(applyLocalSettings(path.join(dir, 'missing.json'), env)).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
