/**
 * infra/azuredeploy.json against the code: settings, Cosmos containers and partition keys,
 * blob containers, role assignments and their built-in role IDs, Event Grid subscriptions,
 * alerts, and the template's own syntax. The facts come from the code (codeFacts.ts), not from
 * lists kept here, so a change that reads a new setting or creates a new container fails here
 * until the template follows. What these tests cannot prove is listed in docs/operations.md
 * ("What the template tests prove").
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ensureCatalog } from '../../../shared/catalog/cosmosCatalog';
import { loadSettings } from '../../../shared/config/settings';
import { EXPORT_QUEUE_CONNECTION, queueServiceFor } from '../../../shared/sharing/exportQueue';
import { ARM_FUNCTIONS, calls, type EvalContext, evaluate, idOfResource, isExpression, parseExpression, type Resource, strings, type Template } from './arm';
import { connectionForms, containerCreateCalls, filesUsing, handledEventTypes, projectRoot, runtimeSources, settingsLoaderModules, settingsRead } from './codeFacts';

const template = JSON.parse(readFileSync(join(projectRoot, 'infra', 'azuredeploy.json'), 'utf8')) as Template;
const parameterFile = JSON.parse(readFileSync(join(projectRoot, 'infra', 'azuredeploy.parameters.json'), 'utf8')) as { parameters: Record<string, { value: unknown }> };
const sources = runtimeSources();

/** Azure's built-in role definition IDs (the same in every tenant: docs "Azure built-in roles"). */
const BUILT_IN_ROLES: Record<string, string> = {
  'Storage Blob Data Reader': '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1',
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'Key Vault Secrets User': '4633458b-17de-408a-b874-0445c86b69e6',
  'EventGrid Data Sender': 'd5a91429-5739-47e2-a06b-3470a27159e7',
};
/** Cosmos DB for NoSQL built-in data roles (sqlRoleDefinitions of every account). */
const COSMOS_BUILT_IN_DATA_CONTRIBUTOR = '00000000-0000-0000-0000-000000000002';
/** Roles that include reading, writing blobs, and writing tags, in that order of privilege. */
const BLOB_READERS = ['Storage Blob Data Reader', 'Storage Blob Data Contributor', 'Storage Blob Data Owner'].map((r) => BUILT_IN_ROLES[r]);
const BLOB_WRITERS = ['Storage Blob Data Contributor', 'Storage Blob Data Owner'].map((r) => BUILT_IN_ROLES[r]);
const BLOB_TAG_WRITERS = ['Storage Blob Data Owner'].map((r) => BUILT_IN_ROLES[r]);

/** Settings the Functions platform reads, not the code. */
const PLATFORM_SETTING = /^(AzureWebJobsStorage__\w+|WEBSITE_\w+|APPLICATIONINSIGHTS_\w+|FUNCTIONS_\w+|AzureFunctionsJobHost__\w+)$/;

const DEID_KEY = 'k'.repeat(40);
const baseContext = (parameters: Record<string, unknown>): EvalContext => ({
  template,
  // The final state npm run deploy leaves: the second pass deploys the Event Grid subscriptions.
  parameters: { ...Object.fromEntries(Object.entries(parameterFile.parameters).map(([k, v]) => [k, v.value])), deidKey: DEID_KEY, deployEventSubscriptions: true, ...parameters },
  resourceGroupId: '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-vna',
  subscriptionId: '00000000-1111-2222-3333-444444444444',
  tenantId: '99999999-8888-7777-6666-555555555555',
  location: 'westeurope',
});
const BLOB_ONLY = baseContext({});
const WITH_ANQ = baseContext({
  anqS3Endpoint: 'https://anq-west.example.org:9000', anqCluster: 'anq-west', anqS3Bucket: 'replica', anqS3AccessKeyId: 'AKIDEXAMPLE',
  anqS3SecretAccessKey: 'secret-example-value', anqRestEndpoint: 'https://anq-west.example.org:8000', anqRestToken: 'token-example-value', anqExportPath: '/replica',
});
const PUBLIC_NETWORK = baseContext({ enablePrivateNetworking: false });
/** With the account of the `sas` partner destinations (signed with its key). */
const WITH_SAS = baseContext({ enablePartnerSas: true });

function deployed(ctx: EvalContext): Resource[] {
  return template.resources.filter((r) => r.condition === undefined || evaluate(ctx, r.condition) === true);
}
function byType(ctx: EvalContext, type: string): Resource[] {
  return deployed(ctx).filter((r) => r.type === type);
}
function nameOf(ctx: EvalContext, r: Resource): string {
  return String(evaluate(ctx, r.name));
}
const appSettingsResource = () => {
  const found = template.resources.filter((r) => r.type === 'Microsoft.Web/sites/config' && /\/appsettings'/.test(r.name));
  if (found.length !== 1) throw new Error(`the template needs exactly one sites/config appsettings resource, found ${found.length}`);
  return found[0] as Resource;
};

/** The app settings as the worker sees them: evaluated, and Key Vault references resolved to the secret's value. */
function appSettings(ctx: EvalContext): Record<string, string> {
  const raw = evaluate(ctx, appSettingsResource().properties) as Record<string, unknown>;
  const secrets = new Map(byType(ctx, 'Microsoft.KeyVault/vaults/secrets').map((s) => [nameOf(ctx, s).split('/')[1], evaluate(ctx, (s.properties as { value: unknown }).value)]));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    const ref = /^@Microsoft\.KeyVault\(SecretUri=https:\/\/[^/]+\/secrets\/([^/)]+)(\/[^)]*)?\)$/.exec(String(v));
    if (ref) {
      expect(secrets.has(ref[1] as string)).toBe(true);
      out[k] = String(secrets.get(ref[1] as string));
    } else out[k] = String(v);
  }
  return out;
}
function keyVaultReferences(ctx: EvalContext): { setting: string; secret: string }[] {
  const raw = evaluate(ctx, appSettingsResource().properties) as Record<string, unknown>;
  return Object.entries(raw).flatMap(([setting, v]) => {
    const m = /^@Microsoft\.KeyVault\(SecretUri=https:\/\/[^/]+\/secrets\/([^/)]+)/.exec(String(v));
    return m ? [{ setting, secret: m[1] as string }] : [];
  });
}

const siteResource = () => template.resources.find((r) => r.type === 'Microsoft.Web/sites') as Resource;
function functionPrincipal(ctx: EvalContext): string {
  return (evaluate(ctx, `[reference('${idOfResource(ctx, siteResource())}', '2024-04-01', 'Full').identity.principalId]`.replace(/^\[reference\('/, "[reference('")) as string);
}

interface Assignment { scope: string; roleId: string; principalId: string }
function roleAssignments(ctx: EvalContext): Assignment[] {
  return byType(ctx, 'Microsoft.Authorization/roleAssignments').map((r) => {
    const p = evaluate(ctx, r.properties) as { roleDefinitionId: string; principalId: string };
    return { scope: String(evaluate(ctx, r.scope)), roleId: p.roleDefinitionId.split('/').pop() as string, principalId: p.principalId };
  });
}
/** Granted on the scope itself or on a parent of it (an account covers its containers). */
function granted(ctx: EvalContext, scope: string, roles: (string | undefined)[], principalId = functionPrincipal(ctx)): boolean {
  return roleAssignments(ctx).some((a) => a.principalId === principalId && roles.includes(a.roleId) && (scope === a.scope || scope.startsWith(`${a.scope}/`)));
}

function storageAccountByEndpoint(ctx: EvalContext, endpoint: string): Resource {
  const account = byType(ctx, 'Microsoft.Storage/storageAccounts').find((a) => {
    const ep = (evaluate(ctx, `[reference('${idOfResource(ctx, a)}', '2023-05-01').primaryEndpoints.blob]`) as string).replace(/\/+$/, '');
    return ep === endpoint.replace(/\/+$/, '');
  });
  if (!account) throw new Error(`no storage account of the template has the blob endpoint ${endpoint}`);
  return account;
}
function blobContainerIds(ctx: EvalContext): Set<string> {
  return new Set(byType(ctx, 'Microsoft.Storage/storageAccounts/blobServices/containers').map((c) => idOfResource(ctx, c)));
}
const containerId = (ctx: EvalContext, account: Resource, container: string) => `${idOfResource(ctx, account)}/blobServices/default/containers/${container}`;

describe('infra/azuredeploy.json: ARM syntax', () => {
  const expressions = strings(template).filter((s) => isExpression(s.value));

  test('given every [expression] in the template, then each parses and calls only ARM functions', () => {
    expect(expressions.length).toBeGreaterThan(100);
    for (const { path, value } of expressions) {
      let parsed;
      try {
        parsed = parseExpression(value);
      } catch (e) {
        throw new Error(`${path}: ${(e as Error).message}`);
      }
      for (const c of calls(parsed)) if (!ARM_FUNCTIONS.has(c.name)) throw new Error(`${path}: unknown function ${c.name}()`);
    }
  });

  test('given parameters() and variables() calls, then each names a declared one, and every declared parameter is used', () => {
    const used = new Set<string>();
    for (const { path, value } of expressions) {
      for (const c of calls(parseExpression(value))) {
        const arg = c.args[0];
        if ((c.name === 'parameters' || c.name === 'variables') && arg?.kind !== 'string') throw new Error(`${path}: ${c.name}() with a computed name`);
        if (c.name === 'parameters' && arg?.kind === 'string') {
          expect({ path, declared: arg.value in template.parameters }).toEqual({ path, declared: true });
          used.add(arg.value);
        }
        if (c.name === 'variables' && arg?.kind === 'string') expect({ path, declared: arg.value in template.variables }).toEqual({ path, declared: true });
      }
    }
    expect(Object.keys(template.parameters).filter((p) => !used.has(p))).toEqual([]);
  });

  test('given the parameters file, then it names only declared parameters and gives every one without a default but deidKey (passed by the deploy script)', () => {
    for (const name of Object.keys(parameterFile.parameters)) expect(template.parameters).toHaveProperty([name]);
    const needed = Object.entries(template.parameters).filter(([, p]) => p.defaultValue === undefined).map(([n]) => n);
    expect(needed.filter((n) => !(n in parameterFile.parameters)).sort()).toEqual(['deidKey']);
    expect(template.parameters.deidKey?.type).toBe('securestring');
  });

  test('given the whole template evaluated with the parameters file, then every expression evaluates', () => {
    for (const ctx of [BLOB_ONLY, WITH_ANQ, PUBLIC_NETWORK, WITH_SAS, baseContext({ enablePartnerSas: true, enablePrivateNetworking: false })]) {
      for (const r of deployed(ctx)) {
        try {
          evaluate(ctx, r);
        } catch (e) {
          throw new Error(`${r.type} ${r.name}: ${(e as Error).message}`);
        }
      }
      evaluate(ctx, template.outputs);
    }
  });

  test('given every resourceId() and dependsOn, then each refers to a resource the template defines (or a built-in, a subnet or a function of the code)', () => {
    for (const ctx of [BLOB_ONLY, PUBLIC_NETWORK]) {
      const ids = new Set(template.resources.map((r) => idOfResource(ctx, r)));
      const subnets = new Set(template.resources.filter((r) => r.type === 'Microsoft.Network/virtualNetworks')
        .flatMap((v) => ((evaluate(ctx, v.properties) as { subnets: { name: string }[] }).subnets).map((s) => `${idOfResource(ctx, v)}/subnets/${s.name}`)));
      const registered = new Set([...sources.map((s) => s.text).join('\n').matchAll(/app\.\w+\(\s*'([A-Za-z0-9_-]+)'/g)].map((m) => m[1]));
      const check = (id: string, where: string) => {
        if (ids.has(id) || subnets.has(id)) return;
        if (/\/providers\/Microsoft\.Authorization\/roleDefinitions\/[0-9a-f-]{36}$/.test(id)) return;
        if (id.endsWith(`/sqlRoleDefinitions/${COSMOS_BUILT_IN_DATA_CONTRIBUTOR}`)) return;
        const fn = /\/providers\/Microsoft\.Web\/sites\/[^/]+\/functions\/([^/]+)$/.exec(id);
        if (fn && registered.has(fn[1])) return;
        throw new Error(`${where}: ${id} is not defined by the template`);
      };
      for (const r of template.resources) {
        for (const d of r.dependsOn ?? []) check(String(evaluate(ctx, d)), `${r.type} ${r.name} dependsOn`);
      }
      // Every resourceId() call in the template, evaluated as a whole call.
      for (const { path, value } of strings(template.resources).filter((s) => isExpression(s.value))) {
        const walk = (e: ReturnType<typeof parseExpression>): void => {
          if (e.kind === 'call') {
            if (e.name === 'resourceId' || e.name === 'extensionResourceId') {
              const id = String(evaluate(ctx, `[${render(e)}]`));
              check(id, path);
            }
            e.args.forEach(walk);
          } else if (e.kind === 'member') walk(e.target);
          else if (e.kind === 'index') { walk(e.target); walk(e.index); }
        };
        walk(parseExpression(value));
      }
    }
  });
});

function render(e: ReturnType<typeof parseExpression>): string {
  switch (e.kind) {
    case 'string': return `'${e.value.replace(/'/g, "''")}'`;
    case 'number': return String(e.value);
    case 'call': return `${e.name}(${e.args.map(render).join(', ')})`;
    case 'member': return `${render(e.target)}.${e.property}`;
    case 'index': return `${render(e.target)}[${render(e.index)}]`;
  }
}

describe('infra/azuredeploy.json: settings the code reads', () => {
  const facts = settingsRead(sources);
  const optional = (template.metadata?.optionalSettings ?? {}) as Record<string, string>;
  const setInTemplate = new Set(Object.keys(appSettingsResource().properties ?? {}));

  test('given the settings read in shared/ and functions/, then each is set in the app settings or documented in metadata.optionalSettings with its default', () => {
    expect(facts.size).toBeGreaterThan(40);
    const missing: string[] = [];
    for (const f of facts.values()) {
      const forms = f.reads.has('connection') ? connectionForms(f.name) : [f.name];
      if (forms.some((n) => setInTemplate.has(n))) continue;
      if (f.name in optional) continue;
      missing.push(`${f.name} (${[...f.reads].join(', ')}; ${[...f.files].join(', ')})`);
    }
    expect(missing).toEqual([]);
  });

  test('given metadata.optionalSettings, then each is read by the code with a default or as optional, never as required', () => {
    for (const [name, doc] of Object.entries(optional)) {
      const f = facts.get(name);
      expect({ name, read: f !== undefined }).toEqual({ name, read: true });
      expect({ name, required: f?.reads.has('required') && !f.reads.has('default') }).toEqual({ name, required: false });
      expect(doc.length).toBeGreaterThan(0);
    }
  });

  test('given the app settings, then each is a setting the code reads (or one the platform reads): none is stale', () => {
    const readNames = new Set([...facts.values()].flatMap((f) => (f.reads.has('connection') ? connectionForms(f.name) : [f.name])));
    expect([...setInTemplate].filter((n) => !readNames.has(n) && !PLATFORM_SETTING.test(n))).toEqual([]);
  });

  test.each([['blob landing only', BLOB_ONLY], ['with the ANQ source', WITH_ANQ], ['with partner SAS', WITH_SAS]] as const)('given the app settings (%s), then every load*Settings of shared/config accepts them', async (_label, ctx) => {
    const env = appSettings(ctx);
    const modules = settingsLoaderModules(sources);
    expect(modules.map((m) => m.loaders).flat().length).toBeGreaterThanOrEqual(4);
    for (const { module, loaders } of modules) {
      const mod = (await import(join(projectRoot, module))) as Record<string, (e: Record<string, string>) => unknown>;
      for (const loader of loaders) {
        try {
          mod[loader]?.(env);
        } catch (e) {
          throw new Error(`${module}.${loader}: ${(e as Error).message}`);
        }
      }
    }
    const s = loadSettings(env);
    expect(s.deidKey.toString('utf8')).toBe(DEID_KEY);
    expect(s.cosmos.kind).toBe('identity');
    expect(s.sourceStorage.kind).toBe('identity');
  });

  test('given the ANQ parameters, then the ANQ source is on and its secrets come from Key Vault; without them it is off', async () => {
    const { loadAnqSettings } = await import('../../../shared/config/anqSettings');
    const anq = loadAnqSettings(appSettings(WITH_ANQ));
    expect(anq?.s3.secretAccessKey).toBe('secret-example-value');
    expect(anq?.rest?.token).toBe('token-example-value');
    expect(loadAnqSettings(appSettings(BLOB_ONLY))).toBeUndefined();
    expect(keyVaultReferences(WITH_ANQ).map((r) => r.setting).sort()).toEqual(['ANQ_REST_TOKEN', 'ANQ_S3_SECRET_ACCESS_KEY', 'DEID_KEY']);
  });

  test('given the parameters, then no secret is an app setting value or an output in clear', () => {
    const raw = JSON.stringify(evaluate(WITH_ANQ, appSettingsResource().properties)) + JSON.stringify(evaluate(WITH_ANQ, template.outputs));
    for (const secret of [DEID_KEY, 'secret-example-value', 'token-example-value']) expect(raw.includes(secret)).toBe(false);
    // The partner-SAS account's key: in the Key Vault secret SharingStorage refers to, nowhere else.
    const withSas = JSON.stringify(evaluate(WITH_SAS, appSettingsResource().properties)) + JSON.stringify(evaluate(WITH_SAS, template.outputs));
    const sharing = loadSettings(appSettings(WITH_SAS)).sharing.storage;
    expect(sharing.kind).toBe('connectionString');
    const key = /AccountKey=([^;]+)/.exec(sharing.kind === 'connectionString' ? sharing.connectionString : '')?.[1] ?? '';
    expect(key.length).toBeGreaterThan(10);
    expect(withSas.includes(key)).toBe(false);
    expect(keyVaultReferences(WITH_SAS).map((r) => r.setting)).toContain('SharingStorage');
  });
});

describe('infra/azuredeploy.json: Cosmos DB containers as the code creates them', () => {
  /** ensureCatalog run against a recording client, with the settings the template gives. */
  async function createdByCode(ctx: EvalContext) {
    const created: { database?: string; containers: { id: string; partitionKey: unknown; indexingPolicy?: unknown }[] } = { containers: [] };
    const fakeContainer = { read: async () => ({}) };
    const client = {
      databases: {
        createIfNotExists: async ({ id }: { id: string }) => {
          created.database = id;
          return {
            database: {
              containers: {
                createIfNotExists: async (def: { id: string; partitionKey: unknown; indexingPolicy?: unknown }) => {
                  created.containers.push(def);
                  return { container: { ...fakeContainer, id: def.id } };
                },
              },
            },
          };
        },
      },
    };
    await ensureCatalog(loadSettings(appSettings(ctx)), client as never);
    return created;
  }

  test('given the containers.createIfNotExists calls in the code, then all of them are in ensureCatalog (the function this test runs)', async () => {
    const created = await createdByCode(BLOB_ONLY);
    const inCode = containerCreateCalls(sources);
    expect(inCode.reduce((n, c) => n + c.count, 0)).toBe(created.containers.length);
  });

  test('given what ensureCatalog creates with the template\'s settings, then the template has the same database, containers, partition keys and indexing policies, and no other', async () => {
    const created = await createdByCode(BLOB_ONLY);
    const ctx = BLOB_ONLY;
    const dbs = byType(ctx, 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases').map((d) => nameOf(ctx, d).split('/')[1]);
    expect(dbs).toEqual([created.database]);
    const inTemplate = byType(ctx, 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers').map((c) => {
      const res = (evaluate(ctx, c.properties) as { resource: { id: string; partitionKey: { paths: string[] }; indexingPolicy?: unknown } }).resource;
      expect(nameOf(ctx, c).split('/')).toEqual([expect.any(String), created.database, res.id]);
      return { id: res.id, paths: res.partitionKey.paths, indexingPolicy: res.indexingPolicy };
    });
    const fromCode = created.containers.map((c) => ({ id: c.id, paths: (c.partitionKey as { paths: string[] }).paths, indexingPolicy: c.indexingPolicy }));
    const sortById = <T extends { id: string }>(a: T[]) => [...a].sort((x, y) => x.id.localeCompare(y.id));
    expect(sortById(inTemplate)).toEqual(sortById(fromCode));
  });

  /**
   * The append-only containers: each audit container and the adapter class that alone writes it.
   * The class must create and may read and query, never replace, upsert, delete or patch, and the
   * template gives the identity no more than that on the container.
   */
  const appendOnly = (s: ReturnType<typeof loadSettings>) => [
    { container: s.auditContainer, file: /audit[\\/]cosmosAccessAudit\.ts$/, adapter: 'CosmosAccessAudit' },
    { container: s.sharing.sharingAuditContainer, file: /sharing[\\/]cosmosSharing\.ts$/, adapter: 'CosmosSharingAudit' },
  ];
  /** The text of `class <name> ... {...}` up to the next top-level declaration. */
  function classBody(file: RegExp, name: string): string {
    const text = sources.find((s) => file.test(s.path))?.text ?? '';
    const start = text.indexOf(`export class ${name} `);
    if (start < 0) return '';
    const rest = text.slice(start + 1);
    const end = rest.search(/\n(export |class |function |const )/);
    return end < 0 ? rest : rest.slice(0, end);
  }

  test('given each container the code creates, then the Function App identity has a data role on it; the access and sharing audits only an append-only one', async () => {
    const created = await createdByCode(BLOB_ONLY);
    const ctx = BLOB_ONLY;
    const settings = loadSettings(appSettings(ctx));
    const principal = functionPrincipal(ctx);
    const assignments = byType(ctx, 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments').map((a) => evaluate(ctx, a.properties) as { roleDefinitionId: string; principalId: string; scope: string });
    const definitions = new Map(byType(ctx, 'Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions').map((d) => [idOfResource(ctx, d), evaluate(ctx, d.properties) as { permissions: { dataActions: string[] }[] }]));
    const audits = appendOnly(settings);
    expect(audits.every((a) => created.containers.some((c) => c.id === a.container))).toBe(true);
    for (const c of created.containers) {
      const mine = assignments.filter((a) => a.principalId === principal && (a.scope.endsWith(`/dbs/${created.database}/colls/${c.id}`) || a.scope.endsWith(`/dbs/${created.database}`)));
      expect({ container: c.id, assigned: mine.length }).toEqual({ container: c.id, assigned: 1 });
      const role = mine[0] as { roleDefinitionId: string };
      const audit = audits.find((a) => a.container === c.id);
      if (audit) {
        const actions = definitions.get(role.roleDefinitionId)?.permissions.flatMap((p) => p.dataActions) ?? [];
        expect({ container: c.id, writesBeyondCreate: actions.some((a) => /items\/(replace|upsert|delete|\*)$|\/\*$/.test(a)) }).toEqual({ container: c.id, writesBeyondCreate: false });
        expect(actions).toEqual(expect.arrayContaining([expect.stringMatching(/items\/create$/), expect.stringMatching(/executeQuery$/)]));
        // The code must need no more than that: the adapter creates, reads and queries only.
        const body = classBody(audit.file, audit.adapter);
        expect({ adapter: audit.adapter, creates: /\bcreate\(/.test(body) }).toEqual({ adapter: audit.adapter, creates: true });
        expect({ adapter: audit.adapter, changes: /\b(replace|upsert|delete|patch)\(/.test(body) }).toEqual({ adapter: audit.adapter, changes: false });
        // ... and it is the only store built on that container in the runtime.
        const runtime = sources.find((s) => /^shared[\\/]runtime\.ts$/.test(s.path))?.text ?? '';
        const wraps = [...runtime.matchAll(/new (Cosmos\w+)\(([^)]*)\)/g)].filter((m) => m[1] === audit.adapter);
        expect({ adapter: audit.adapter, built: wraps.length }).toEqual({ adapter: audit.adapter, built: 1 });
        const handedTo = [...runtime.matchAll(/new (\w+)\(([^)]*)\)/g)].filter((m) => m[2]?.trim() === wraps[0]?.[2]?.trim()).map((m) => m[1]);
        expect({ container: wraps[0]?.[2], handedTo }).toEqual({ container: wraps[0]?.[2], handedTo: [audit.adapter] });
      } else {
        expect(role.roleDefinitionId.endsWith(`/sqlRoleDefinitions/${COSMOS_BUILT_IN_DATA_CONTRIBUTOR}`)).toBe(true);
      }
    }
  });
});

describe('infra/azuredeploy.json: storage and roles', () => {
  test('given the role IDs the template uses, then each is the built-in role it claims to be', () => {
    const roles = template.variables.roles as Record<string, string>;
    const expected: Record<string, string> = {
      storageBlobDataReader: BUILT_IN_ROLES['Storage Blob Data Reader'] as string,
      storageBlobDataContributor: BUILT_IN_ROLES['Storage Blob Data Contributor'] as string,
      storageBlobDataOwner: BUILT_IN_ROLES['Storage Blob Data Owner'] as string,
      storageQueueDataContributor: BUILT_IN_ROLES['Storage Queue Data Contributor'] as string,
      keyVaultSecretsUser: BUILT_IN_ROLES['Key Vault Secrets User'] as string,
      eventGridDataSender: BUILT_IN_ROLES['EventGrid Data Sender'] as string,
    };
    expect(roles).toEqual(expected);
    expect(template.variables.cosmosBuiltInDataContributor).toBe(COSMOS_BUILT_IN_DATA_CONTRIBUTOR);
    for (const a of roleAssignments(WITH_ANQ)) expect(Object.values(BUILT_IN_ROLES)).toContain(a.roleId);
  });

  test.each([['blob landing only', BLOB_ONLY], ['with the ANQ source', WITH_ANQ]] as const)('given the containers the settings name (%s), then each exists on the account its connection names, with the role the code needs', (_l, ctx) => {
    const env = appSettings(ctx);
    const s = loadSettings(env);
    const containers = blobContainerIds(ctx);
    const source = storageAccountByEndpoint(ctx, s.sourceStorage.kind === 'identity' ? s.sourceStorage.blobServiceUri : '');
    const research = storageAccountByEndpoint(ctx, s.researchStorage.kind === 'identity' ? s.researchStorage.blobServiceUri : '');
    // Research copies carry a blob index tag and are found by it: that needs tags/write and filter (Owner).
    const researchNeedsTags = filesUsing(/findBlobsByTags|\btags\b\s*[,}]/, sources).length > 0;
    const needs: [string, (string | undefined)[]][] = [
      ...s.sourceContainers.map((c) => [containerId(ctx, source, c), BLOB_READERS] as [string, (string | undefined)[]]),
      // Quarantine copies stay in the source account (they hold what the source holds).
      [containerId(ctx, source, s.quarantineContainer), BLOB_WRITERS],
      [containerId(ctx, research, s.researchContainer), researchNeedsTags ? BLOB_TAG_WRITERS : BLOB_WRITERS],
    ];
    // Every other blob container named by a setting (exports, the watcher checkpoint, ...): on some account, writable.
    const facts = settingsRead(sources);
    for (const f of facts.values()) {
      if (!/_CONTAINERS?$/.test(f.name) || /^COSMOS_/.test(f.name) || ['SOURCE_CONTAINERS', 'RESEARCH_CONTAINER', 'QUARANTINE_CONTAINER'].includes(f.name)) continue;
      const value = env[f.name] || f.fallback?.replace(/^'|'$/g, '');
      if (!value) throw new Error(`${f.name} has no value in the template and no literal default in the code`);
      if (f.name.startsWith('ANQ_') && !env.ANQ_S3_ENDPOINT) continue;
      const account = f.name.startsWith('ANQ_CHECKPOINT') ? storageAccountByEndpoint(ctx, env.ANQ_CHECKPOINT_STORAGE__blobServiceUri ?? '') : undefined;
      const candidates = account ? [containerId(ctx, account, value)] : [...containers].filter((id) => id.endsWith(`/containers/${value}`));
      expect({ setting: f.name, found: candidates.length > 0 }).toEqual({ setting: f.name, found: true });
      needs.push([candidates[0] as string, BLOB_WRITERS]);
    }
    for (const [id, roles] of needs) {
      expect({ container: id, defined: containers.has(id) }).toEqual({ container: id, defined: true });
      expect({ container: id, granted: granted(ctx, id, roles) }).toEqual({ container: id, granted: true });
    }
    // Least privilege: the source containers are read-only to the function.
    for (const c of s.sourceContainers) expect(granted(ctx, containerId(ctx, source, c), BLOB_WRITERS)).toBe(false);
  });

  test('given queue settings or a queue client in the code, then each queue exists and the identity may use it', () => {
    const facts = [...settingsRead(sources).values()].filter((f) => /_QUEUE(_NAME)?$/.test(f.name));
    const usesQueues = filesUsing(/@azure\/storage-queue/, sources).length > 0;
    const queues = byType(WITH_ANQ, 'Microsoft.Storage/storageAccounts/queueServices/queues').map((q) => idOfResource(WITH_ANQ, q));
    const env = appSettings(WITH_ANQ);
    for (const f of facts) {
      const value = env[f.name] || f.fallback?.replace(/^'|'$/g, '');
      const q = queues.find((id) => id.endsWith(`/queues/${value}`));
      expect({ setting: f.name, queue: q !== undefined }).toEqual({ setting: f.name, queue: true });
      expect(granted(WITH_ANQ, q as string, [BUILT_IN_ROLES['Storage Queue Data Contributor']])).toBe(true);
      // The trigger moves a message to <queue>-poison after maxDequeueCount deliveries (host.json).
      expect({ setting: f.name, poison: queues.some((id) => id === `${q}-poison`) }).toEqual({ setting: f.name, poison: true });
      // The connection the code sends with and the trigger reads from resolves, by identity, to the account holding the queue.
      const service = queueServiceFor(EXPORT_QUEUE_CONNECTION, env);
      const account = (q as string).replace(/\/queueServices\/default\/queues\/[^/]+$/, '');
      const endpoint = evaluate(WITH_ANQ, `[reference('${account}', '2023-05-01').primaryEndpoints.queue]`) as string;
      expect(service.url.replace(/\/+$/, '')).toBe(endpoint.replace(/\/+$/, ''));
      expect(env[EXPORT_QUEUE_CONNECTION]).toBeUndefined();
    }
    if (usesQueues) expect(facts.length).toBeGreaterThan(0);
  });

  test('given the Functions host storage (identity-based AzureWebJobsStorage), then the identity has Blob Data Owner and Queue Data Contributor on it', () => {
    const env = appSettings(BLOB_ONLY);
    const host = byType(BLOB_ONLY, 'Microsoft.Storage/storageAccounts').find((a) => nameOf(BLOB_ONLY, a) === env.AzureWebJobsStorage__accountName) as Resource;
    expect(host).toBeDefined();
    expect(granted(BLOB_ONLY, idOfResource(BLOB_ONLY, host), [BUILT_IN_ROLES['Storage Blob Data Owner']])).toBe(true);
    expect(granted(BLOB_ONLY, idOfResource(BLOB_ONLY, host), [BUILT_IN_ROLES['Storage Queue Data Contributor']])).toBe(true);
  });

  test('given every Key Vault reference in the app settings, then the identity may read that secret (Key Vault Secrets User)', () => {
    for (const ctx of [BLOB_ONLY, WITH_ANQ, WITH_SAS]) {
      const vault = byType(ctx, 'Microsoft.KeyVault/vaults')[0] as Resource;
      for (const { secret } of keyVaultReferences(ctx)) {
        expect({ secret, granted: granted(ctx, `${idOfResource(ctx, vault)}/secrets/${secret}`, [BUILT_IN_ROLES['Key Vault Secrets User']]) }).toEqual({ secret, granted: true });
      }
    }
  });

  test('given every topic endpoint setting the code publishes to, then the topic exists with the schema the code sends and the identity has EventGrid Data Sender on it', () => {
    const ctx = WITH_ANQ;
    const env = appSettings(ctx);
    const publishers = filesUsing(/new EventGridPublisherClient\(/, sources);
    expect(publishers.length).toBeGreaterThan(0);
    // The schema each publisher sends, from its `new EventGridPublisherClient(endpoint, '<schema>'` call.
    const schemaOf = (file: string) => /new EventGridPublisherClient\([^,]+,\s*'(\w+)'/.exec(sources.find((s) => s.path === file)?.text ?? '')?.[1];
    const topicSettings = [...settingsRead(sources).values()].filter((f) => /_TOPIC_ENDPOINT$/.test(f.name)).map((f) => f.name);
    expect(topicSettings.length).toBeGreaterThanOrEqual(2);
    const expectedSchema: Record<string, string | undefined> = {
      EVENTGRID_TOPIC_ENDPOINT: schemaOf(publishers.find((p) => /events[\\/]publisher\.ts$/.test(p)) ?? ''),
      ANQ_EVENTS_TOPIC_ENDPOINT: schemaOf(publishers.find((p) => /anq[\\/]watcherAdapters\.ts$/.test(p)) ?? ''),
    };
    for (const name of topicSettings) {
      const endpoint = env[name];
      const topic = byType(ctx, 'Microsoft.EventGrid/topics').find((t) => (evaluate(ctx, `[reference('${idOfResource(ctx, t)}', '2022-06-15').endpoint]`) as string) === endpoint);
      expect({ setting: name, topic: topic !== undefined }).toEqual({ setting: name, topic: true });
      const schema = (evaluate(ctx, topic?.properties) as { inputSchema: string }).inputSchema;
      expect({ setting: name, schema }).toEqual({ setting: name, schema: expectedSchema[name] === 'CloudEvent' ? 'CloudEventSchemaV1_0' : 'EventGridSchema' });
      expect(granted(ctx, idOfResource(ctx, topic as Resource), [BUILT_IN_ROLES['EventGrid Data Sender']])).toBe(true);
    }
  });

  test('given the data accounts, then shared keys are off, blob and container soft delete on, and exports immutable for the audit period', () => {
    const ctx = BLOB_ONLY;
    for (const a of byType(ctx, 'Microsoft.Storage/storageAccounts')) expect((evaluate(ctx, a.properties) as { allowSharedKeyAccess: boolean }).allowSharedKeyAccess).toBe(false);
    const services = byType(ctx, 'Microsoft.Storage/storageAccounts/blobServices');
    expect(services.length).toBeGreaterThanOrEqual(3);
    for (const svc of services) {
      const p = evaluate(ctx, svc.properties) as { deleteRetentionPolicy: { enabled: boolean; days: number }; containerDeleteRetentionPolicy: { enabled: boolean } };
      expect(p.deleteRetentionPolicy.enabled && p.deleteRetentionPolicy.days >= 7 && p.containerDeleteRetentionPolicy.enabled).toBe(true);
    }
    const immutable = byType(ctx, 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies').map((p) => nameOf(ctx, p).split('/')[2]);
    expect(immutable).toEqual([evaluate(ctx, "[parameters('exportsContainerName')]")]);
  });

  test('given partner SAS on, then the one account with shared keys is the one SharingStorage names: apart from the research account, holding no container of the template, with soft delete', () => {
    const ctx = WITH_SAS;
    const s = loadSettings(appSettings(ctx));
    // The code signs the sas destinations' SAS with the key of the account settings.sharing.storage names (shared/sharing/destination.ts).
    expect(s.sharing.storage.kind).toBe('connectionString');
    const share = storageAccountByEndpoint(ctx, s.sharing.storage.kind === 'connectionString' ? s.sharing.storage.blobEndpoint : '');
    const withKeys = byType(ctx, 'Microsoft.Storage/storageAccounts').filter((a) => (evaluate(ctx, a.properties) as { allowSharedKeyAccess: boolean }).allowSharedKeyAccess !== false);
    expect(withKeys.map((a) => idOfResource(ctx, a))).toEqual([idOfResource(ctx, share)]);
    expect(s.researchStorage.kind).toBe('identity');
    expect(idOfResource(ctx, share)).not.toBe(idOfResource(ctx, storageAccountByEndpoint(ctx, s.researchStorage.kind === 'identity' ? s.researchStorage.blobServiceUri : '')));
    expect([...blobContainerIds(ctx)].filter((id) => id.startsWith(`${idOfResource(ctx, share)}/`))).toEqual([]);
    expect(byType(ctx, 'Microsoft.Storage/storageAccounts/blobServices').some((b) => nameOf(ctx, b) === `${nameOf(ctx, share)}/default`)).toBe(true);
    // Off (the default): no such account, and the sas destinations fall back to the research account (identity, no SAS).
    expect(byType(BLOB_ONLY, 'Microsoft.Storage/storageAccounts').filter((a) => (evaluate(BLOB_ONLY, a.properties) as { allowSharedKeyAccess: boolean }).allowSharedKeyAccess !== false)).toEqual([]);
    expect(loadSettings(appSettings(BLOB_ONLY)).sharing.storage.kind).toBe('identity');
  });
});

describe('infra/azuredeploy.json: events, network, monitoring', () => {
  const ingestFunction = [...sources.map((s) => s.text).join('\n').matchAll(/app\.eventGrid\(\s*'([A-Za-z0-9_-]+)'/g)].map((m) => m[1]);

  test('given the event types the ingestion function handles, then the subscriptions deliver each to it, one event a batch, with retries and a dead-letter container', () => {
    const ctx = BLOB_ONLY;
    const handled = handledEventTypes(sources);
    expect(handled).toEqual(expect.arrayContaining(['Microsoft.Storage.BlobCreated', 'Microsoft.Storage.BlobDeleted', 'VNA.Archive.FileReplicated']));
    const subs = [...byType(ctx, 'Microsoft.EventGrid/systemTopics/eventSubscriptions'), ...byType(ctx, 'Microsoft.EventGrid/topics/eventSubscriptions')];
    const delivered = new Set<string>();
    const containers = blobContainerIds(ctx);
    const settings = loadSettings(appSettings(ctx));
    for (const sub of subs) {
      const p = evaluate(ctx, sub.properties) as {
        destination: { endpointType: string; properties: { resourceId: string; maxEventsPerBatch: number } };
        filter: { includedEventTypes: string[]; subjectBeginsWith?: string };
        retryPolicy: { maxDeliveryAttempts: number; eventTimeToLiveInMinutes: number };
        deadLetterWithResourceIdentity: { deadLetterDestination: { properties: { resourceId: string; blobContainerName: string } } };
      };
      expect(p.destination.endpointType).toBe('AzureFunction');
      expect(ingestFunction).toContain(p.destination.properties.resourceId.split('/').pop());
      expect(p.destination.properties.maxEventsPerBatch).toBe(1);
      expect(p.retryPolicy.maxDeliveryAttempts).toBeGreaterThanOrEqual(10);
      const dl = p.deadLetterWithResourceIdentity.deadLetterDestination.properties;
      expect(containers.has(`${dl.resourceId}/blobServices/default/containers/${dl.blobContainerName}`)).toBe(true);
      if (p.filter.subjectBeginsWith !== undefined) expect(settings.sourceContainers.map((c) => `/blobServices/default/containers/${c}/`)).toContain(p.filter.subjectBeginsWith);
      for (const t of p.filter.includedEventTypes) delivered.add(t);
    }
    expect(handled.filter((t) => !delivered.has(t))).toEqual([]);
    // Event Grid's identities write the dead letters.
    for (const t of [...byType(ctx, 'Microsoft.EventGrid/systemTopics'), ...byType(ctx, 'Microsoft.EventGrid/topics').filter((x) => subs.some((s) => nameOf(ctx, s).startsWith(`${nameOf(ctx, x)}/`)))]) {
      const principal = evaluate(ctx, `[reference('${idOfResource(ctx, t)}', '2022-06-15', 'Full').identity.principalId]`) as string;
      const sub = subs.find((s) => nameOf(ctx, s).startsWith(`${nameOf(ctx, t)}/`)) as Resource;
      const dl = (evaluate(ctx, sub.properties) as { deadLetterWithResourceIdentity: { deadLetterDestination: { properties: { resourceId: string; blobContainerName: string } } } }).deadLetterWithResourceIdentity.deadLetterDestination.properties;
      expect(granted(ctx, `${dl.resourceId}/blobServices/default/containers/${dl.blobContainerName}`, BLOB_WRITERS, principal)).toBe(true);
    }
  });

  test.each([['blob landing only', BLOB_ONLY], ['with partner SAS', WITH_SAS]] as const)('given private networking (%s), then the Function App is VNet-integrated and every account, vault and topic that closes its public endpoint has a private endpoint and DNS zone', (_l, ctx) => {
    const site = evaluate(ctx, siteResource().properties) as { virtualNetworkSubnetId: string | null };
    expect(site.virtualNetworkSubnetId).toMatch(/\/subnets\/functions$/);
    const vnet = byType(ctx, 'Microsoft.Network/virtualNetworks')[0] as Resource;
    const fnSubnet = (evaluate(ctx, vnet.properties) as { subnets: { name: string; properties: { delegations?: { properties: { serviceName: string } }[] } }[] }).subnets.find((s) => s.name === 'functions');
    expect(fnSubnet?.properties.delegations?.[0]?.properties.serviceName).toBe('Microsoft.App/environments');
    const closed = deployed(ctx).filter((r) => (evaluate(ctx, r.properties) as { publicNetworkAccess?: string } | undefined)?.publicNetworkAccess === 'Disabled').map((r) => idOfResource(ctx, r));
    expect(closed.length).toBeGreaterThanOrEqual(5);
    const pes = byType(ctx, 'Microsoft.Network/privateEndpoints').map((pe) => evaluate(ctx, pe.properties) as { privateLinkServiceConnections: { properties: { privateLinkServiceId: string } }[] });
    const targets = new Set(pes.flatMap((p) => p.privateLinkServiceConnections.map((c) => c.properties.privateLinkServiceId)));
    expect(closed.filter((id) => !targets.has(id))).toEqual([]);
    expect(byType(ctx, 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups')).toHaveLength(pes.length);
    // Without private networking nothing is closed, so nothing is left unreachable.
    const open = deployed(PUBLIC_NETWORK).filter((r) => (evaluate(PUBLIC_NETWORK, r.properties) as { publicNetworkAccess?: string } | undefined)?.publicNetworkAccess === 'Disabled');
    expect(open).toEqual([]);
    expect((evaluate(PUBLIC_NETWORK, siteResource().properties) as { virtualNetworkSubnetId: unknown }).virtualNetworkSubnetId).toBeNull();
  });

  test('given the telemetry the code sends, then the alert queries and the workbook read its event names, properties and status values', () => {
    const telemetry = sources.find((s) => /telemetry[\\/]telemetry\.ts$/.test(s.path))?.text ?? '';
    const eventNames = [...telemetry.matchAll(/trackEvent\(\{\s*name:\s*'(\w+)'/g)].map((m) => m[1]);
    expect(eventNames).toEqual(expect.arrayContaining(['Ingestion', 'Failure']));
    const ingestion = /name: 'Ingestion',\s*properties: \{([^}]*)\},\s*measurements: \{([^}]*)\}/.exec(telemetry);
    const props = [...(ingestion?.[1] ?? '').matchAll(/(\w+):/g)].map((m) => m[1]);
    const measures = [...(ingestion?.[2] ?? '').matchAll(/(\w+):/g)].map((m) => m[1]);
    const statuses = new Set([...sources.filter((s) => s.path.includes('ingest')).map((s) => s.text).join('\n').matchAll(/status: (?:\w+ \? )?'(\w+)'(?: : '(\w+)')?/g)].flatMap((m) => [m[1], m[2]]).filter(Boolean));
    const alerts = byType(BLOB_ONLY, 'Microsoft.Insights/scheduledQueryRules').map((r) => ({ name: nameOf(BLOB_ONLY, r), query: (evaluate(BLOB_ONLY, r.properties) as { criteria: { allOf: { query: string }[] } }).criteria.allOf[0]?.query ?? '' }));
    const workbook = JSON.parse(String(evaluate(BLOB_ONLY, template.variables.workbookData))) as { items: { content: { query?: string } }[] };
    const queries = [...alerts.map((a) => a.query), ...workbook.items.map((i) => i.content.query ?? '').filter(Boolean)];
    for (const q of queries) {
      for (const m of q.matchAll(/name == '(\w+)'/g)) expect(eventNames).toContain(m[1]);
      for (const m of q.matchAll(/customDimensions\.(\w+)/g)) expect([...props, 'code', 'operation']).toContain(m[1]);
      for (const m of q.matchAll(/customMeasurements\.(\w+)/g)) expect(measures).toContain(m[1]);
      for (const m of q.matchAll(/status\) == '(\w+)'/g)) expect([...statuses]).toContain(m[1]);
    }
    expect(alerts.map((a) => a.name.replace(/^.*-alert-/, '')).sort()).toEqual(['failure-rate', 'latency-p95', 'quarantine-rate']);
    expect(alerts.find((a) => a.name.endsWith('latency-p95'))?.query).toMatch(/percentile\(todouble\(customMeasurements\.durationMs\), 95\)/);
    // Dead letters: a metric alert on every topic that has a subscription.
    const deadLetterScopes = byType(BLOB_ONLY, 'Microsoft.Insights/metricAlerts').flatMap((a) => {
      const p = evaluate(BLOB_ONLY, a.properties) as { scopes: string[]; criteria: { allOf: { metricName: string }[] } };
      return p.criteria.allOf.some((c) => c.metricName === 'DeadLetteredCount') ? p.scopes : [];
    });
    const subscribedTopics = [...byType(BLOB_ONLY, 'Microsoft.EventGrid/systemTopics'), ...byType(BLOB_ONLY, 'Microsoft.EventGrid/topics')]
      .filter((t) => [...byType(BLOB_ONLY, 'Microsoft.EventGrid/systemTopics/eventSubscriptions'), ...byType(BLOB_ONLY, 'Microsoft.EventGrid/topics/eventSubscriptions')].some((s) => nameOf(BLOB_ONLY, s).startsWith(`${nameOf(BLOB_ONLY, t)}/`)));
    expect(subscribedTopics.map((t) => idOfResource(BLOB_ONLY, t)).filter((id) => !deadLetterScopes.includes(id))).toEqual([]);
  });

  test('given the outputs, then the deploy script finds the endpoints, the viewer and the dashboard', () => {
    const out = evaluate(BLOB_ONLY, template.outputs) as Record<string, { value: string }>;
    for (const k of ['functionAppName', 'apiBaseUrl', 'healthUrl', 'dicomwebUrl', 'viewerUrl', 'dashboardUrl', 'viewerStorageAccount', 'landingStorageAccount', 'deadLetterContainer']) expect(out).toHaveProperty([k, 'value']);
    expect(out.healthUrl?.value).toMatch(/^https:\/\/.+\.azurewebsites\.net\/api\/health$/);
    expect(out.dashboardUrl?.value).toBe(`${out.viewerUrl?.value}dashboard/`);
  });
});
