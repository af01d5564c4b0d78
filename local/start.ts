/**
 * `npm start`: the whole pipeline on embedded local services. On the first start the bundled
 * sample files are uploaded into the landing container (so that events flow as in Azure); on a
 * later start the blobs are still there (Azurite keeps them in .local-data/azurite) but the
 * Cosmos DB server starts empty, so a reconciliation scan re-emits them. Ctrl+C stops cleanly.
 *
 * The console gets a summary by status and error code, the URLs to try and the development
 * tokens; every log line, one per file among them, goes to .local-data/host.log. Warnings on
 * the console are for what is unexpected (local/startSummary.ts).
 */
import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as path from 'path';

import { COSMOS_EMULATOR_KEY } from './emulators';
import { LocalStack, startStack } from './stack';
import { type IngestionOutcome, isConsoleWorthy, summarizeIngestions } from './startSummary';
import { listFolder, uploadFiles } from './upload';

const projectRoot = path.resolve(__dirname, '..', '..');
const dataDir = path.join(projectRoot, '.local-data');
const logFile = path.join(dataDir, 'host.log');
const samplesDir = path.join(projectRoot, 'test', 'fixtures', 'dicom');
const interactive = process.stdout.isTTY === true;

function status(line: string, final = false): void {
  if (interactive) process.stdout.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
  else if (final) process.stdout.write(`${line}\n`);
}

function warn(line: string): void {
  if (interactive) process.stdout.write('\r\x1b[2K');
  process.stdout.write(`warning: ${line}\n`);
}

async function waitForProcessing(stack: LocalStack, uploading: () => string | undefined): Promise<void> {
  for (;;) {
    const s = stack.events.stats();
    const upload = uploading();
    status(`${upload ? `${upload}, ` : ''}processed ${s.delivered + s.deadLettered}/${s.emitted} events (retries ${s.retried}, dead-lettered ${s.deadLettered})`);
    if (!upload && s.pending === 0) break;
    await new Promise((r) => setTimeout(r, interactive ? 250 : 2000));
  }
  const s = stack.events.stats();
  status(`processed ${s.delivered + s.deadLettered}/${s.emitted} events (retries ${s.retried}, dead-lettered ${s.deadLettered})`, true);
}

/** The ingestion records (status, code, modality), or undefined when the index cannot be read. */
async function readIngestions(stack: LocalStack): Promise<(IngestionOutcome & { sourceUrl?: string })[] | undefined> {
  const client = new CosmosClient({ endpoint: stack.cosmosEndpoint, key: COSMOS_EMULATOR_KEY, connectionPolicy: { enableEndpointDiscovery: false } });
  try {
    const container = client.database(stack.settings.cosmosDatabase).container(stack.settings.indexContainer);
    const { resources } = await container.items
      .query<IngestionOutcome & { sourceUrl?: string }>('SELECT c.status, c.errorCode, c.modality, c.sourceUrl FROM c')
      .fetchAll();
    return resources;
  } catch (err) {
    const code = (err as { code?: number }).code;
    warn(code === 404 ? 'no ingestions index in Cosmos DB (the catalog was not created)' : `could not read the ingestions index: ${(err as Error).message}`);
    return undefined;
  } finally {
    client.dispose();
  }
}

/** Prints the summary and warns about what did not end as designed; returns a source to show in the examples. */
async function printSummary(stack: LocalStack, what: string, expectedRecords: number): Promise<string | undefined> {
  const records = await readIngestions(stack);
  const deadLettered = stack.events.stats().deadLettered;
  const logPath = path.relative(process.cwd(), logFile);
  if (records) {
    const summary = summarizeIngestions(records, what);
    console.log(`\n${summary.lines.join('\n')}`);
    console.log(`  one line per file in ${logPath}`);
    if (summary.unexpected.length > 0) warn(`some ${what} did not end as designed: ${summary.unexpected.join(', ')} (see ${logPath})`);
    if (records.length < expectedRecords) warn(`${expectedRecords - records.length} of ${expectedRecords} ${what} have no ingestion record (see ${logPath})`);
  }
  if (deadLettered > 0) {
    warn(`${deadLettered} event(s) were dead-lettered after every retry: ${path.relative(process.cwd(), stack.deadLetterFile)}`);
  }
  return records?.find((r) => r.status === 'cataloged')?.sourceUrl ?? records?.[0]?.sourceUrl;
}

async function main(): Promise<void> {
  fs.mkdirSync(dataDir, { recursive: true });
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  const stack = await startStack({
    projectRoot,
    dataDir,
    persistence: { location: path.join(dataDir, 'azurite') },
    logSink: (level, functionName, message) => {
      const line = `${new Date().toISOString()} [${level}] ${functionName || 'host'}: ${message}`;
      log.write(`${line}\n`);
      if (isConsoleWorthy(level, functionName)) {
        if (interactive) process.stdout.write('\r\x1b[2K');
        process.stdout.write(`${line}\n`);
      }
    },
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    status(`${signal}: stopping...`, true);
    await stack.stop();
    log.end();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  console.log(`blob (Azurite, with events) ${stack.blobEndpoint}`);
  console.log(`queue (Azurite)             http://127.0.0.1:${stack.queuePort}/devstoreaccount1`);
  console.log(`Cosmos DB emulator server   ${stack.cosmosEndpoint}`);
  console.log(`function host               ${stack.hostUrl} (${stack.host.functions.map((f) => f.name).join(', ') || 'no functions'})`);
  console.log(`host log                    ${path.relative(process.cwd(), logFile)}`);
  console.log(`token issuer (development)  ${stack.devIssuer.url}`);

  const landingName = stack.settings.sourceContainers[0] as string;
  const landing = BlobServiceClient.fromConnectionString(stack.env.SourceStorage as string).getContainerClient(landingName);
  let hasBlobs = false;
  for await (const _blob of landing.listBlobsFlat()) {
    hasBlobs = true;
    break;
  }

  let what: string;
  let expectedRecords: number;
  if (!hasBlobs) {
    const files = listFolder(samplesDir, (rel) => rel === 'MANIFEST.tsv' || rel.endsWith('README.md'));
    console.log(`\nfirst start: uploading the ${files.length} bundled sample files into ${landingName}`);
    console.log('  some are quarantined or fail on purpose (burned-in text, no UIDs, DICOMDIRs, not DICOM)');
    let uploaded = 0;
    let failed = 0;
    let uploadDone = false;
    const upload = uploadFiles(landing, files, {
      prefix: 'samples/',
      onProgress: (p) => {
        uploaded = p.done;
        failed = p.failed;
      },
    }).then((r) => {
      uploadDone = true;
      for (const f of r.failures) warn(`upload failed: ${f.relative}: ${f.message}`);
      return r.failures.length;
    });
    await waitForProcessing(stack, () => (uploadDone ? undefined : `uploaded ${uploaded + failed}/${files.length}`));
    what = 'samples';
    expectedRecords = files.length - (await upload);
  } else {
    const n = await stack.reconcile();
    console.log(`\n${landingName} already holds ${n} blob(s): re-emitting BlobCreated for each (the Cosmos DB server starts empty)`);
    await waitForProcessing(stack, () => undefined);
    what = 'files';
    expectedRecords = n;
  }

  const example = await printSummary(stack, what, expectedRecords);
  const tokens = stack.devIssuer.tokens;
  console.log(`\ndevelopment tokens (valid 12 h, made again at every start; also in ${path.relative(process.cwd(), stack.devIssuer.tokensFile)}):`);
  console.log(`  research   (Research.Read)   ${tokens.research}`);
  console.log(`  sharing    (Sharing.Manage)  ${tokens.sharing}`);
  console.log(`  operations (Operations.Read) ${tokens.operations}`);
  console.log(`issuer ${stack.devIssuer.issuer} (keys ${stack.devIssuer.jwksUri}), audience ${stack.devIssuer.audience}`);
  const tokensPath = path.relative(process.cwd(), stack.devIssuer.tokensFile);
  const tokenFor = (role: string) => `TOKEN=$(node -p 'require("./${tokensPath}").${role}')`;
  const bearer = '-H "Authorization: Bearer $TOKEN"';
  console.log('\ntry (every route but /api/health needs a bearer token with the route\'s app role):');
  console.log(`  curl ${stack.hostUrl}/api/health`);
  console.log(`  ${tokenFor('research')}`);
  console.log(`  curl ${bearer} '${stack.hostUrl}/api/dicomweb/studies?ModalitiesInStudy=CT&includefield=all'`);
  console.log(`  ${tokenFor('operations')}`);
  console.log(`  curl ${bearer} '${stack.hostUrl}/api/ingestions?source=${encodeURIComponent(example ?? `${stack.blobEndpoint}/${landingName}/<blob>`)}'`);
  console.log(`  curl ${bearer} '${stack.hostUrl}/api/audit?caller=local-researcher'`);
  console.log(`  npm run ingest -- <folder>   (uploads into ${landingName})`);
  console.log('\nserving; Ctrl+C stops');
}

main().catch((err: unknown) => {
  console.error(`\nnpm start failed: ${(err as Error).message}`);
  process.exit(1);
});
