/**
 * A small reader of ARM template expressions ("[...]" strings): a parser that rejects what
 * Resource Manager would reject (unbalanced brackets, unterminated strings, unknown functions),
 * and an evaluator for the functions infra/azuredeploy.json uses, so that the tests can resolve
 * the Function App's app settings into the values the code will read. `reference()` answers the
 * shape each resource type's runtime state has, with names derived from the resource's name.
 */
import { createHash } from 'node:crypto';

export type Expr =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'call'; name: string; args: Expr[] }
  | { kind: 'member'; target: Expr; property: string }
  | { kind: 'index'; target: Expr; index: Expr };

/** ARM template functions (the subset a template of this kind may use; anything else is a typo). */
export const ARM_FUNCTIONS = new Set([
  'parameters', 'variables', 'resourceGroup', 'subscription', 'tenant', 'environment', 'deployment', 'uniqueString', 'guid', 'newGuid',
  'format', 'concat', 'take', 'skip', 'toLower', 'toUpper', 'replace', 'string', 'int', 'json', 'bool', 'base64', 'uri', 'trim',
  'resourceId', 'subscriptionResourceId', 'extensionResourceId', 'tenantResourceId', 'reference', 'listKeys',
  'if', 'empty', 'not', 'and', 'or', 'equals', 'less', 'greater', 'contains', 'length', 'union', 'intersection',
  'createArray', 'createObject', 'null', 'true', 'false', 'first', 'last', 'split', 'join', 'startsWith', 'endsWith', 'coalesce', 'utcNow',
]);

export function isExpression(s: unknown): s is string {
  return typeof s === 'string' && s.startsWith('[') && s.endsWith(']') && !s.startsWith('[[');
}

/** Parses the inside of "[...]". Throws a message naming the position on bad syntax. */
export function parseExpression(source: string): Expr {
  const text = source.slice(1, -1);
  let i = 0;
  const ws = () => { while (i < text.length && /\s/.test(text[i] as string)) i++; };
  const fail = (msg: string): never => { throw new Error(`${msg} at ${i} in ${source}`); };
  const primary = (): Expr => {
    ws();
    const ch = text[i];
    if (ch === "'") {
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length) fail('unterminated string');
        if (text[i] === "'") {
          if (text[i + 1] === "'") { value += "'"; i += 2; continue; }
          i++;
          break;
        }
        value += text[i++];
      }
      return { kind: 'string', value };
    }
    const num = /^-?\d+(\.\d+)?/.exec(text.slice(i));
    if (num) { i += num[0].length; return { kind: 'number', value: Number(num[0]) }; }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
    if (!id) return fail('expected a function call, a string or a number');
    i += id[0].length;
    ws();
    if (text[i] !== '(') fail(`expected ( after ${id[0]}`);
    i++;
    const args: Expr[] = [];
    ws();
    if (text[i] === ')') i++;
    else {
      for (;;) {
        args.push(expression());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ')') { i++; break; }
        fail('expected , or )');
      }
    }
    return { kind: 'call', name: id[0], args };
  };
  const expression = (): Expr => {
    let e = primary();
    for (;;) {
      ws();
      if (text[i] === '.') {
        i++;
        const id = /^[A-Za-z_$][A-Za-z0-9_$]*/.exec(text.slice(i));
        if (!id) fail('expected a property name');
        i += (id as RegExpExecArray)[0].length;
        e = { kind: 'member', target: e, property: (id as RegExpExecArray)[0] };
      } else if (text[i] === '[') {
        i++;
        const index = expression();
        ws();
        if (text[i] !== ']') fail('expected ]');
        i++;
        e = { kind: 'index', target: e, index };
      } else return e;
    }
  };
  const e = expression();
  ws();
  if (i !== text.length) fail('unexpected text after the expression');
  return e;
}

/** Every call in an expression tree, depth first. */
export function calls(e: Expr): { name: string; args: Expr[] }[] {
  switch (e.kind) {
    case 'call': return [{ name: e.name, args: e.args }, ...e.args.flatMap(calls)];
    case 'member': return calls(e.target);
    case 'index': return [...calls(e.target), ...calls(e.index)];
    default: return [];
  }
}

/** Every string in a JSON value, with its path. */
export function strings(value: unknown, path = '$'): { path: string; value: string }[] {
  if (typeof value === 'string') return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, `${path}[${i}]`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => strings(v, `${path}.${k}`));
  return [];
}

export interface Template {
  parameters: Record<string, { type: string; defaultValue?: unknown; allowedValues?: unknown[] }>;
  variables: Record<string, unknown>;
  resources: Resource[];
  outputs: Record<string, { type: string; value: unknown }>;
  metadata?: Record<string, unknown>;
}
export interface Resource {
  type: string; apiVersion: string; name: string; condition?: unknown; scope?: string; dependsOn?: string[];
  properties?: Record<string, unknown>; [k: string]: unknown;
}

export interface EvalContext {
  template: Template;
  parameters: Record<string, unknown>;
  resourceGroupId: string;
  subscriptionId: string;
  tenantId: string;
  location: string;
}

function hash(...parts: string[]): string {
  return createHash('sha256').update(parts.join('|')).digest('hex');
}

/** uniqueString's real algorithm is not public: a 13-character lower-case stand-in, deterministic. */
function uniqueString(...parts: string[]): string {
  return hash(...parts).replace(/[^a-z0-9]/g, '').slice(0, 13).replace(/^[0-9]/, 'a');
}

function guidOf(...parts: string[]): string {
  const h = hash(...parts);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** The resource ID Resource Manager would build: type segments interleaved with name segments. */
export function buildResourceId(prefix: string, type: string, names: string[]): string {
  const [ns, ...types] = type.split('/');
  if (types.length !== names.length) throw new Error(`resourceId('${type}') takes ${types.length} names, got ${names.length}`);
  return `${prefix}/providers/${ns}/${types.map((t, i) => `${t}/${names[i]}`).join('/')}`;
}

/** The ID of a template resource, from its type and its (evaluated) name. */
export function idOfResource(ctx: EvalContext, r: Resource): string {
  const name = String(evaluate(ctx, r.name));
  const names = name.split('/');
  if (r.scope !== undefined) return `${String(evaluate(ctx, r.scope))}/providers/${r.type}/${name}`;
  return buildResourceId(ctx.resourceGroupId, r.type, names);
}

function runtimeState(ctx: EvalContext, id: string): Record<string, unknown> {
  const m = /\/providers\/([^/]+\/[^/]+)\/([^/]+)(?:\/([^/]+)\/([^/]+))?$/.exec(id);
  const type = m?.[1] ?? '';
  const name = m?.[2] ?? '';
  const principalId = guidOf('principal', id);
  if (/\/secrets\/[^/]+$/.test(id)) {
    const vault = /vaults\/([^/]+)/.exec(id)?.[1];
    const secret = /secrets\/([^/]+)$/.exec(id)?.[1];
    return { secretUri: `https://${vault}.vault.azure.net/secrets/${secret}`, secretUriWithVersion: `https://${vault}.vault.azure.net/secrets/${secret}/0123` };
  }
  switch (type) {
    case 'Microsoft.Storage/storageAccounts':
      return { primaryEndpoints: { blob: `https://${name}.blob.core.windows.net/`, queue: `https://${name}.queue.core.windows.net/`, web: `https://${name}.z6.web.core.windows.net/` } };
    case 'Microsoft.DocumentDB/databaseAccounts':
      return { documentEndpoint: `https://${name}.documents.azure.com:443/` };
    case 'Microsoft.EventGrid/topics':
      return { endpoint: `https://${name}.${ctx.location}-1.eventgrid.azure.net/api/events`, identity: { principalId } };
    case 'Microsoft.EventGrid/systemTopics':
      return { identity: { principalId } };
    case 'Microsoft.Insights/components':
      return { ConnectionString: `InstrumentationKey=${guidOf('ikey', id)};IngestionEndpoint=https://${ctx.location}.in.applicationinsights.azure.com/` };
    case 'Microsoft.Web/sites':
      return { defaultHostName: `${name}.azurewebsites.net`, identity: { principalId } };
    default:
      return { identity: { principalId } };
  }
}

export function evaluate(ctx: EvalContext, value: unknown): unknown {
  if (isExpression(value)) return evalExpr(ctx, parseExpression(value));
  if (typeof value === 'string' && value.startsWith('[[')) return value.slice(1);
  if (Array.isArray(value)) return value.map((v) => evaluate(ctx, v));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, evaluate(ctx, v)]));
  return value;
}

export function evalExpr(ctx: EvalContext, e: Expr): unknown {
  switch (e.kind) {
    case 'string': case 'number': return e.value;
    case 'member': {
      const t = evalExpr(ctx, e.target) as Record<string, unknown> | undefined;
      if (t === null || typeof t !== 'object') throw new Error(`.${e.property} of a non-object`);
      return t[e.property];
    }
    case 'index': {
      const t = evalExpr(ctx, e.target) as Record<string, unknown>;
      return t[String(evalExpr(ctx, e.index))];
    }
    case 'call': break;
  }
  const a = (i: number) => evalExpr(ctx, e.args[i] as Expr);
  const all = () => e.args.map((x) => evalExpr(ctx, x));
  switch (e.name) {
    case 'parameters': {
      const n = String(a(0));
      const decl = ctx.template.parameters[n];
      if (!decl) throw new Error(`parameter ${n} is not declared`);
      if (n in ctx.parameters) return ctx.parameters[n];
      if (decl.defaultValue === undefined) throw new Error(`parameter ${n} has no value and no default`);
      return evaluate(ctx, decl.defaultValue);
    }
    case 'variables': {
      const n = String(a(0));
      if (!(n in ctx.template.variables)) throw new Error(`variable ${n} is not declared`);
      return evaluate(ctx, ctx.template.variables[n]);
    }
    case 'resourceGroup': return { id: ctx.resourceGroupId, location: ctx.location, name: ctx.resourceGroupId.split('/').pop() };
    case 'subscription': return { id: `/subscriptions/${ctx.subscriptionId}`, subscriptionId: ctx.subscriptionId, tenantId: ctx.tenantId };
    case 'environment': return { suffixes: { storage: 'core.windows.net', keyvaultDns: '.vault.azure.net' }, name: 'AzureCloud' };
    case 'uniqueString': return uniqueString(...all().map(String));
    case 'guid': return guidOf(...all().map(String));
    case 'format': {
      const [fmt, ...rest] = all();
      return String(fmt).replace(/\{(\d+)\}/g, (_, n: string) => String(rest[Number(n)]));
    }
    case 'concat': {
      const v = all();
      return v.every(Array.isArray) ? (v as unknown[][]).flat() : v.map(String).join('');
    }
    case 'take': { const v = a(0); const n = Number(a(1)); return Array.isArray(v) ? v.slice(0, n) : String(v).slice(0, n); }
    case 'toLower': return String(a(0)).toLowerCase();
    case 'toUpper': return String(a(0)).toUpperCase();
    case 'replace': return String(a(0)).split(String(a(1))).join(String(a(2)));
    case 'string': { const v = a(0); return typeof v === 'string' ? v : JSON.stringify(v); }
    case 'int': return Number.parseInt(String(a(0)), 10);
    case 'json': return JSON.parse(String(a(0)));
    case 'if': return a(0) ? a(1) : a(2);
    case 'empty': { const v = a(0); return v === null || v === undefined || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && Object.keys(v as object).length === 0); }
    case 'not': return !a(0);
    case 'and': return all().every(Boolean);
    case 'or': return all().some(Boolean);
    case 'equals': return JSON.stringify(a(0)) === JSON.stringify(a(1));
    case 'length': { const v = a(0); return Array.isArray(v) || typeof v === 'string' ? v.length : Object.keys(v as object).length; }
    case 'union': {
      const v = all();
      return v.every(Array.isArray) ? [...new Set((v as unknown[][]).flat())] : Object.assign({}, ...(v as object[]));
    }
    case 'createArray': return all();
    case 'createObject': {
      const v = all();
      const o: Record<string, unknown> = {};
      for (let i = 0; i < v.length; i += 2) o[String(v[i])] = v[i + 1];
      return o;
    }
    case 'null': return null;
    case 'true': return true;
    case 'false': return false;
    case 'resourceId': return buildResourceId(ctx.resourceGroupId, String(a(0)), all().slice(1).map(String));
    case 'subscriptionResourceId': return buildResourceId(`/subscriptions/${ctx.subscriptionId}`, String(a(0)), all().slice(1).map(String));
    case 'extensionResourceId': return `${String(a(0))}/providers/${String(a(1))}/${all().slice(2).map(String).join('/')}`;
    case 'reference': return runtimeState(ctx, String(a(0)));
    // A storage account's keys: a value derived from its ID, so that a test can look for it where it must not be.
    case 'listKeys': return { keys: [{ keyName: 'key1', value: `key-${guidOf('key', String(a(0)))}` }] };
    default: throw new Error(`the evaluator does not know ${e.name}()`);
  }
}
