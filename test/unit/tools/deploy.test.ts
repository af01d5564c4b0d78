import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { main, parseArgs, planDeployment, projectRoot, SECRET_PARAMETERS, STAGE_DIR, TEMPLATE_FILE } from '../../../tools/deploy';

const root = projectRoot(__dirname);
const template = JSON.parse(readFileSync(join(root, TEMPLATE_FILE), 'utf8')) as { parameters: Record<string, unknown>; outputs: Record<string, unknown> };

/** Runs `main` with a PATH whose az, npm and zip record any call: a dry run must make none. */
function dryRun(args: string[], env: Record<string, string> = {}): { lines: string[]; code: number; called: string[] } {
  const bin = mkdtempSync(join(tmpdir(), 'deploy-bin-'));
  const record = join(bin, 'calls.log');
  for (const tool of ['az', 'npm', 'zip', 'cp', 'rm', 'mkdir']) writeFileSync(join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> '${record}'\n`, { mode: 0o755 });
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path ?? ''}`;
  const lines: string[] = [];
  try {
    const code = main(args, (l) => lines.push(l), { ...process.env, ...env });
    return { lines, code, called: existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean) : [] };
  } finally {
    process.env.PATH = path;
    rmSync(bin, { recursive: true, force: true });
  }
}

describe('npm run deploy', () => {
  test('given --dry-run, then it prints the build, the package with production dependencies, both template deployments, the package deployment and the URLs, and runs nothing', () => {
    const stagedBefore = existsSync(join(root, STAGE_DIR));
    const { lines, code, called } = dryRun(['--dry-run', '--resource-group', 'rg-vna', '--location', 'westeurope'], { DEID_KEY: 'a-de-identification-key-of-at-least-32-bytes' });
    expect(code).toBe(0);
    expect(called).toEqual([]);
    expect(existsSync(join(root, STAGE_DIR))).toBe(stagedBefore);
    const commands = lines.filter((l) => !l.startsWith('#'));
    const order = [
      /^npm run build$/,
      /^cp -R dist\/functions dist\/shared \.deploy\/package\/dist\/$/,
      /^\(cd \.deploy\/package && npm ci --omit=dev /,
      /^\(cd \.deploy\/package && zip -qr \.\.\/app\.zip \.\)$/,
      /^az group create --name rg-vna --location westeurope/,
      /^az deployment group create --resource-group rg-vna .*--template-file infra\/azuredeploy\.json --parameters @infra\/azuredeploy\.parameters\.json --parameters @\{secretParametersFile\} --parameters deployEventSubscriptions=false/,
      /^az functionapp deployment source config-zip --resource-group rg-vna --name \{functionAppName\} --src \.deploy\/app\.zip$/,
      /^az deployment group create .*deployEventSubscriptions=true/,
      /^az storage blob service-properties update --account-name \{viewerStorageAccount\} .*--static-website/,
    ];
    let at = 0;
    for (const pattern of order) {
      const found = commands.slice(at).findIndex((c) => pattern.test(c));
      expect({ pattern: String(pattern), found: found >= 0 }).toEqual({ pattern: String(pattern), found: true });
      at += found + 1;
    }
    for (const label of ['API:', 'health:', 'DICOMweb:', 'viewer:', 'dashboard:', 'workbook:']) expect(lines.some((l) => l.startsWith(`# ${label}`))).toBe(true);
    expect(lines.join('\n')).not.toContain('a-de-identification-key');
  });

  test('given the plan, then every template parameter it sets is declared, every {placeholder} is a template output, and the files it names exist', () => {
    const steps = planDeployment(parseArgs(['-g', 'rg', '--viewer-dir', 'viewer/dist'], {}));
    for (const arg of steps.flatMap((s) => s.argv)) {
      const param = /^(\w+)=/.exec(arg);
      if (param && steps.some((s) => s.argv.includes('deployment') && s.argv.includes(arg))) expect(template.parameters).toHaveProperty([param[1] as string]);
      for (const m of arg.matchAll(/\{(\w+)\}/g)) if (`{${m[1]}}` !== SECRET_PARAMETERS) expect(template.outputs).toHaveProperty([m[1] as string]);
      if (arg.startsWith('@') && !arg.includes('{')) expect(existsSync(join(root, arg.slice(1)))).toBe(true);
    }
    expect(existsSync(join(root, TEMPLATE_FILE))).toBe(true);
    expect(steps.some((s) => s.argv.includes('upload-batch') && s.argv.includes('viewer/dist'))).toBe(true);
  });

  test('given the package it stages (dist/functions and dist/shared), then the functions Azure loads import nothing outside it', () => {
    const main = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { main: string }).main;
    expect(main).toBe('dist/functions/*.js');
    const staged = ['functions', 'shared'];
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(join(root, file), 'utf8');
      for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
        const target = join(file, '..', m[1] as string).replace(/\\/g, '/');
        expect({ file, imports: target, staged: staged.includes(target.split('/')[0] as string) }).toEqual({ file, imports: target, staged: true });
        const ts = [`${target}.ts`, `${target}/index.ts`, target].find((p) => existsSync(join(root, p)) && p.endsWith('.ts'));
        if (ts) visit(ts);
      }
    };
    for (const f of readdirSync(join(root, 'functions')).filter((n) => n.endsWith('.ts'))) visit(`functions/${f}`);
    expect(seen.size).toBeGreaterThan(20);
  });

  test('given no resource group, or an unknown option, then it says which and exits 2; a real run without DEID_KEY refuses', () => {
    expect(dryRun(['--dry-run']).lines.join('\n')).toMatch(/--resource-group \(or AZURE_RESOURCE_GROUP\) is required/);
    expect(dryRun(['--dry-run', '-g', 'rg', '--colour']).code).toBe(2);
    const noKey = dryRun(['-g', 'rg'], { DEID_KEY: '' });
    expect(noKey.code).toBe(2);
    expect(noKey.called).toEqual([]);
    expect(noKey.lines.join('\n')).toMatch(/DEID_KEY must hold/);
  });
});
