/**
 * Facts about what the code running in Azure needs, read from the code itself (shared/ and
 * functions/, the modules the Function App loads), so that a change that adds a setting, a
 * container or a client without touching infra/azuredeploy.json fails the infra tests.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export const projectRoot = join(__dirname, '..', '..', '..');

export interface SourceFile { path: string; text: string }

/** Every .ts file under shared/ and functions/ (what `dist/functions/*.js` can load in Azure). */
export function runtimeSources(): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.ts')) out.push({ path: relative(projectRoot, p), text: readFileSync(p, 'utf8') });
    }
  };
  walk(join(projectRoot, 'shared'));
  walk(join(projectRoot, 'functions'));
  return out;
}

/** Comments removed, so that a setting named in TSDoc is not taken for one read. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

export type SettingRead =
  | 'required' // read without a fallback: must be set
  | 'default' // read with a fallback value in the code
  | 'optional' // unset means "feature off" or "use another setting"
  | 'connection'; // a Functions connection: <Name>, or <Name>__blobServiceUri / __accountEndpoint

export interface SettingFact { name: string; reads: Set<SettingRead>; files: Set<string>; fallback?: string }

const NAME = "'([A-Za-z][A-Za-z0-9_]*)'";
const COLLECTOR_READ = new RegExp(`\\.(str|optional|int|containerName|storage|cosmos)\\(\\s*${NAME}\\s*(,\\s*([^)]*))?\\)`, 'g');
const ENV_READ = /\b(?:process\.env|env)(?:\.([A-Za-z][A-Za-z0-9_]*)|\[\s*'([A-Za-z][A-Za-z0-9_]*)'\s*\])/g;

/** Settings the runtime code reads: through the Collector of shared/config/settings.ts, or process.env / env directly. */
export function settingsRead(sources = runtimeSources()): Map<string, SettingFact> {
  const facts = new Map<string, SettingFact>();
  const add = (name: string, read: SettingRead, file: string, fallback?: string) => {
    const f = facts.get(name) ?? { name, reads: new Set<SettingRead>(), files: new Set<string>() };
    f.reads.add(read);
    f.files.add(file);
    if (fallback !== undefined && f.fallback === undefined) f.fallback = fallback;
    facts.set(name, f);
  };
  for (const { path, text } of sources) {
    const src = code(text);
    for (const m of src.matchAll(COLLECTOR_READ)) {
      const [, method, name, , rest] = m as unknown as [string, string, string, string | undefined, string | undefined];
      const fallback = rest?.split(',')[0]?.trim();
      if (method === 'storage' || method === 'cosmos') {
        add(name, 'connection', path, fallback ? `the ${fallback.replace(/'/g, '')} connection` : undefined);
      } else if (method === 'optional') {
        add(name, 'optional', path);
      } else if (fallback !== undefined && fallback !== '') {
        add(name, 'default', path, fallback);
      } else {
        add(name, 'required', path);
      }
    }
    // Names handed to a helper that reads them (`list('AUTH_AUDIENCE')`): any UPPER_SNAKE literal in shared/config/.
    if (path.startsWith(join('shared', 'config'))) {
      for (const m of src.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g)) if (!facts.has(m[1] as string)) add(m[1] as string, 'optional', path);
    }
    for (const m of src.matchAll(ENV_READ)) {
      const name = m[1] ?? m[2];
      if (!name) continue;
      // `process.env.X || 'y'` / `?? 'y'` reads with a default.
      const after = src.slice((m.index ?? 0) + m[0].length, (m.index ?? 0) + m[0].length + 40);
      const fb = /^\s*(\|\||\?\?)\s*('[^']*')/.exec(after);
      add(name, fb ? 'default' : 'optional', path, fb?.[2]);
    }
  }
  return facts;
}

/** Names that settingsRead cannot see as literals: the identity forms of a connection. */
export function connectionForms(name: string): string[] {
  return [name, `${name}__blobServiceUri`, `${name}__accountEndpoint`, `${name}__queueServiceUri`, `${name}__clientId`];
}

/** The `load*Settings` functions of shared/config/*.ts (each reads and validates one group). */
export function settingsLoaderModules(sources = runtimeSources()): { module: string; loaders: string[] }[] {
  return sources
    .filter((s) => s.path.startsWith(join('shared', 'config')))
    .map((s) => ({ module: s.path.replace(/\.ts$/, ''), loaders: [...s.text.matchAll(/export function (load\w*Settings)\(/g)].map((m) => m[1] as string) }))
    .filter((m) => m.loaders.length > 0);
}

/** Files that use an SDK client or operation, by the pattern given. */
export function filesUsing(pattern: RegExp, sources = runtimeSources()): string[] {
  return sources.filter((s) => pattern.test(code(s.text))).map((s) => s.path);
}

/** Event types the ingestion function accepts, as literals in shared/events/. */
export function handledEventTypes(sources = runtimeSources()): string[] {
  const types = new Set<string>();
  for (const s of sources.filter((f) => f.path.startsWith(join('shared', 'events')))) {
    for (const m of code(s.text).matchAll(/'((?:Microsoft\.Storage\.Blob|VNA\.Archive\.)[A-Za-z]+)'/g)) types.add(m[1] as string);
  }
  return [...types].sort();
}

/** The Cosmos containers created in the code: `containers.createIfNotExists(` calls. */
export function containerCreateCalls(sources = runtimeSources()): { path: string; count: number }[] {
  return sources
    .map((s) => ({ path: s.path, count: [...code(s.text).matchAll(/containers\s*\.\s*createIfNotExists\s*\(/g)].length }))
    .filter((s) => s.count > 0);
}
