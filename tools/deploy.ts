/**
 * One-step deployment to Azure (`npm run deploy -- --resource-group <rg> [--location <region>]`):
 * builds, stages a package with production dependencies only, deploys infra/azuredeploy.json
 * with the Azure CLI, deploys the package to the Function App, deploys the template again with
 * the Event Grid subscriptions (they need the ingestion function to exist), switches on the
 * viewer's static website, and prints the endpoints, the viewer and dashboard URLs and the
 * workbook. `--dry-run` prints the commands instead of running them, and runs nothing.
 *
 * The de-identification key comes from DEID_KEY in the environment and goes to the template
 * through a parameters file readable by the user only, removed afterwards; it is never printed
 * and never on a command line.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

export interface DeployOptions {
  resourceGroup: string;
  /** Creates the resource group in this region first; absent: the group must exist. */
  location?: string;
  parametersFile: string;
  /** A built OHIF viewer folder (docs/research-access.md "Hosting the viewer in Azure") to upload. */
  viewerDir?: string;
  skipBuild: boolean;
  dryRun: boolean;
  deploymentName: string;
}

/** One command of the plan. `{name}` in an argument is an output of the template, known once it is deployed. */
export interface Step {
  title: string;
  argv: string[];
  /** Relative to the project root. */
  cwd?: string;
  /** The step's stdout is the template's outputs (JSON). */
  capturesOutputs?: boolean;
}

export const STAGE_DIR = '.deploy';
const PACKAGE_DIR = `${STAGE_DIR}/package`;
const PACKAGE_ZIP = `${STAGE_DIR}/app.zip`;
export const TEMPLATE_FILE = 'infra/azuredeploy.json';
/** Stands for the file holding deidKey, written at run time. */
export const SECRET_PARAMETERS = '{secretParametersFile}';

export function planDeployment(o: DeployOptions): Step[] {
  const steps: Step[] = [];
  if (!o.skipBuild) steps.push({ title: 'build', argv: ['npm', 'run', 'build'] });
  steps.push(
    { title: 'stage the package', argv: ['rm', '-rf', STAGE_DIR] },
    { title: 'stage the package', argv: ['mkdir', '-p', `${PACKAGE_DIR}/dist`] },
    { title: 'stage the package', argv: ['cp', '-R', 'dist/functions', 'dist/shared', `${PACKAGE_DIR}/dist/`] },
    { title: 'stage the package', argv: ['cp', 'host.json', 'package.json', 'package-lock.json', `${PACKAGE_DIR}/`] },
    // Production dependencies only, from the lock file: the dev tree of the working copy is left alone.
    { title: 'production dependencies', argv: ['npm', 'ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], cwd: PACKAGE_DIR },
    { title: 'zip the package', argv: ['zip', '-qr', '../app.zip', '.'], cwd: PACKAGE_DIR },
  );
  if (o.location) steps.push({ title: 'resource group', argv: ['az', 'group', 'create', '--name', o.resourceGroup, '--location', o.location, '--output', 'none'] });
  const deployTemplate = (subscriptions: boolean): Step => ({
    title: subscriptions ? 'template, with the Event Grid subscriptions' : 'template',
    argv: [
      'az', 'deployment', 'group', 'create',
      '--resource-group', o.resourceGroup,
      '--name', subscriptions ? `${o.deploymentName}-events` : o.deploymentName,
      '--template-file', TEMPLATE_FILE,
      '--parameters', `@${o.parametersFile}`,
      '--parameters', `@${SECRET_PARAMETERS}`,
      '--parameters', `deployEventSubscriptions=${subscriptions}`,
      '--query', 'properties.outputs', '--output', 'json',
    ],
    capturesOutputs: true,
  });
  steps.push(
    deployTemplate(false),
    { title: 'deploy the package', argv: ['az', 'functionapp', 'deployment', 'source', 'config-zip', '--resource-group', o.resourceGroup, '--name', '{functionAppName}', '--src', PACKAGE_ZIP] },
    deployTemplate(true),
    {
      title: 'viewer static website',
      argv: ['az', 'storage', 'blob', 'service-properties', 'update', '--account-name', '{viewerStorageAccount}', '--auth-mode', 'login', '--static-website', '--index-document', 'index.html', '--404-document', 'index.html', '--output', 'none'],
    },
  );
  if (o.viewerDir) {
    steps.push({ title: 'viewer upload', argv: ['az', 'storage', 'blob', 'upload-batch', '--account-name', '{viewerStorageAccount}', '--auth-mode', 'login', '--source', o.viewerDir, '--destination', '$web', '--overwrite', '--output', 'none'] });
  }
  return steps;
}

/** What is printed once deployed (dry run: with the placeholders). */
export function summary(outputs: Record<string, string>, viewerUploaded: boolean): string[] {
  const at = (k: string) => outputs[k] ?? `{${k}}`;
  return [
    `API:        ${at('apiBaseUrl')}`,
    `health:     ${at('healthUrl')}`,
    `DICOMweb:   ${at('dicomwebUrl')}`,
    `viewer:     ${at('viewerUrl')}${viewerUploaded ? '' : '  (upload a viewer build with --viewer-dir; see docs/research-access.md)'}`,
    `dashboard:  ${at('dashboardUrl')}`,
    `workbook:   https://portal.azure.com/#resource${at('workbookId')}/workbook`,
    `ingestions: ${at('apiBaseUrl')}/ingestions?source=<url> (Operations.Read)`,
  ];
}

/** A command as a POSIX shell would take it. */
export function shellQuote(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./{}-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function fill(arg: string, values: Record<string, string>): string {
  return arg.replace(/\{(\w+)\}/g, (whole, k: string) => values[k] ?? whole);
}

export function parseArgs(args: string[], env: Record<string, string | undefined> = process.env): DeployOptions {
  const o: DeployOptions = {
    resourceGroup: env.AZURE_RESOURCE_GROUP ?? '',
    location: env.AZURE_LOCATION,
    parametersFile: 'infra/azuredeploy.parameters.json',
    skipBuild: false,
    dryRun: false,
    deploymentName: 'vna-research-pipeline',
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (): string => {
      const v = args[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--resource-group' || a === '-g') o.resourceGroup = value();
    else if (a === '--location' || a === '-l') o.location = value();
    else if (a === '--parameters') o.parametersFile = value();
    else if (a === '--viewer-dir') o.viewerDir = value();
    else if (a === '--deployment-name') o.deploymentName = value();
    else if (a === '--skip-build') o.skipBuild = true;
    else if (a === '--dry-run') o.dryRun = true;
    else throw new Error(`unknown option ${a} (options: --resource-group, --location, --parameters, --viewer-dir, --deployment-name, --skip-build, --dry-run)`);
  }
  if (!o.resourceGroup) throw new Error('--resource-group (or AZURE_RESOURCE_GROUP) is required');
  if (!/^[-\w._()]{1,90}$/.test(o.resourceGroup)) throw new Error('--resource-group: 1-90 letters, digits, underscores, hyphens, periods or parentheses');
  return o;
}

/** The folder of package.json above this file (tools/ from source, dist/tools/ when built). */
export function projectRoot(from = __dirname): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = resolve(dir, '..');
    if (up === dir) throw new Error('deploy: no package.json above the deploy tool');
    dir = up;
  }
  return dir;
}

function run(step: Step, root: string, values: Record<string, string>): string {
  const argv = step.argv.map((a) => fill(a, values));
  const r = spawnSync(argv[0] as string, argv.slice(1), { cwd: join(root, step.cwd ?? '.'), stdio: ['ignore', step.capturesOutputs ? 'pipe' : 'inherit', 'inherit'], encoding: 'utf8' });
  if (r.error) throw new Error(`${step.title}: ${argv[0]} could not start (${r.error.message})`);
  if (r.status !== 0) throw new Error(`${step.title}: ${shellQuote(argv.map((a) => (a.startsWith('@') && a.includes(tmpdir()) ? '@<secret parameters>' : a)))} exited with ${r.status}`);
  return r.stdout ?? '';
}

export function main(args: string[], out: (line: string) => void = (l) => console.log(l), env = process.env): number {
  let o: DeployOptions;
  try {
    o = parseArgs(args, env);
  } catch (e) {
    out(`deploy: ${(e as Error).message}`);
    return 2;
  }
  const root = projectRoot();
  const steps = planDeployment(o);
  if (o.dryRun) {
    out(`# dry run: these commands would run in ${relative(process.cwd(), root) || '.'}; {name} is an output of the template deployment`);
    out(`# ${SECRET_PARAMETERS}: a file readable by you only, holding deidKey from DEID_KEY, removed afterwards`);
    if (o.skipBuild) out('# npm run build: done before this plan (npm run deploy builds first)');
    for (const s of steps) out(`${s.cwd ? `(cd ${s.cwd} && ` : ''}${shellQuote(s.argv)}${s.cwd ? ')' : ''}`);
    for (const l of summary({}, o.viewerDir !== undefined)) out(`# ${l}`);
    return 0;
  }
  const key = env.DEID_KEY;
  if (!key) {
    out('deploy: DEID_KEY must hold the de-identification key (at least 32 bytes, text or base64:...); keep it: a different key gives different research identifiers');
    return 2;
  }
  const secretDir = mkdtempSync(join(tmpdir(), 'vna-deploy-'));
  const secretFile = join(secretDir, 'secret.parameters.json');
  writeFileSync(secretFile, JSON.stringify({ $schema: 'https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#', contentVersion: '1.0.0.0', parameters: { deidKey: { value: key } } }), { mode: 0o600 });
  chmodSync(secretFile, 0o600);
  const values: Record<string, string> = { secretParametersFile: secretFile };
  try {
    for (const s of steps) {
      out(`== ${s.title}`);
      const stdout = run(s, root, values);
      if (s.capturesOutputs) {
        const outputs = JSON.parse(stdout) as Record<string, { value: unknown }>;
        for (const [k, v] of Object.entries(outputs)) values[k] = String(v.value);
      }
    }
  } catch (e) {
    out(`deploy: ${(e as Error).message}`);
    return 1;
  } finally {
    rmSync(secretDir, { recursive: true, force: true });
  }
  if (!existsSync(join(root, PACKAGE_ZIP))) out(`deploy: warning: ${PACKAGE_ZIP} is missing after the run`);
  for (const l of summary(values, o.viewerDir !== undefined)) out(l);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
