/**
 * `npm start`: the whole pipeline on embedded local services, with both sources: the Azure
 * Native Qumulo stand-ins over .local-data/anq (the replication target; their state is in
 * .local-data/anq-state) and the blob landing container. On the first start the bundled sample
 * files go through the ANQ path: copied into the replication target and snapshotted, found by
 * the snapshot watcher (a timer function the local host fires), published to the host's Event
 * Grid webhook, read through the S3 stand-in. LOCAL_SOURCE=blob uploads them into the landing
 * container instead (BlobCreated events, as before). On a later start the files are still there
 * but the Cosmos DB server starts empty, so the watcher's checkpoint is reset (every snapshot is
 * diffed again) and a reconciliation scan re-emits the landing container's blobs. Ctrl+C stops.
 *
 * The OHIF viewer (local/viewer.ts) is served on http://127.0.0.1:7072 (LOCAL_VIEWER_PORT) with
 * the development token of the Research.Read role, and the summary ends with a link that opens
 * the first cataloged study in it.
 *
 * The console gets a summary by status and error code, the URLs to try and the development
 * tokens; every log line, one per file among them, goes to .local-data/host.log. Warnings on
 * the console are for what is unexpected (local/startSummary.ts).
 */
import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as path from 'path';

import { placeAndSnapshot } from './anqIngest';
import { DEV_CALLERS } from './devIssuer';
import { COSMOS_EMULATOR_KEY } from './emulators';
import { LocalStack, startStack } from './stack';
import { type IngestionOutcome, isConsoleWorthy, type QidoStudy, summarizeIngestions, viewerStudy } from './startSummary';
import { listFolder, uploadFiles } from './upload';
import { ensureViewerBuild, startViewer, type ViewerServer } from './viewer';

const projectRoot = path.resolve(__dirname, '..', '..');
const dataDir = path.join(projectRoot, '.local-data');
const logFile = path.join(dataDir, 'host.log');
const samplesDir = path.join(projectRoot, 'test', 'fixtures', 'dicom');
const anqTargetDir = path.join(dataDir, 'anq');
const anqStateDir = path.join(dataDir, 'anq-state');
/** What `npm run ingest` reads to reach the ANQ stand-ins of the running stack. */
const LOCAL_ANQ_FILE = 'anq.json';
const interactive = process.stdout.isTTY === true;
const notSample = (rel: string) => rel === 'MANIFEST.tsv' || rel.endsWith('README.md');

/** LOCAL_SOURCE: where the bundled samples go on a first start. */
function localSource(): 'anq' | 'blob' {
  const v = (process.env.LOCAL_SOURCE ?? 'anq').trim().toLowerCase() || 'anq';
  if (v !== 'anq' && v !== 'blob') throw new Error(`LOCAL_SOURCE must be "anq" or "blob", got "${v}"`);
  return v;
}

/** Files of the replication target (the stand-in skips dot files too). */
function countTargetFiles(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let n = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) n += countTargetFiles(path.join(dir, entry.name));
    else if (entry.isFile()) n += 1;
  }
  return n;
}

function status(line: string, final = false): void {
  if (interactive) process.stdout.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
  else if (final) process.stdout.write(`${line}\n`);
}

function warn(line: string): void {
  if (interactive) process.stdout.write('\r\x1b[2K');
  process.stdout.write(`warning: ${line}\n`);
}

/** Final ingestion records in the index (a status other than processing), or undefined when it cannot be read. */
async function countFinished(stack: LocalStack): Promise<number | undefined> {
  const client = new CosmosClient({ endpoint: stack.cosmosEndpoint, key: COSMOS_EMULATOR_KEY, connectionPolicy: { enableEndpointDiscovery: false } });
  try {
    const container = client.database(stack.settings.cosmosDatabase).container(stack.settings.indexContainer);
    const { resources } = await container.items.query<number>("SELECT VALUE COUNT(1) FROM c WHERE c.status != 'processing'").fetchAll();
    return resources[0] ?? 0;
  } catch {
    return undefined;
  } finally {
    client.dispose();
  }
}

/**
 * Waits until the blob events are delivered and, for files that come through the ANQ watcher
 * (whose events go to the host directly), until `expectedRecords` ingestions have ended. Gives
 * up on the latter when nothing ends for LOCAL_START_STALL_MS (default 3 minutes), with a warning.
 */
async function waitForProcessing(stack: LocalStack, uploading: () => string | undefined, expectedRecords?: number): Promise<void> {
  const stallMs = Number(process.env.LOCAL_START_STALL_MS ?? '') || 180_000;
  let finished = 0;
  let lastProgress = Date.now();
  const line = (s: ReturnType<LocalStack['events']['stats']>) =>
    `${expectedRecords !== undefined ? `ingested ${finished}/${expectedRecords}, ` : ''}processed ${s.delivered + s.deadLettered}/${s.emitted} blob events (retries ${s.retried}, dead-lettered ${s.deadLettered})`;
  for (;;) {
    const s = stack.events.stats();
    const upload = uploading();
    if (expectedRecords !== undefined && !upload) {
      const n = (await countFinished(stack)) ?? finished;
      if (n !== finished) lastProgress = Date.now();
      finished = n;
    }
    status(`${upload ? `${upload}, ` : ''}${line(s)}`);
    const recordsDone = expectedRecords === undefined || finished >= expectedRecords;
    if (!upload && s.pending === 0 && recordsDone) break;
    if (!upload && s.pending === 0 && Date.now() - lastProgress > stallMs) {
      status(line(s), true);
      warn(`stopped waiting: no ingestion ended for ${Math.round(stallMs / 1000)} s (see ${path.relative(process.cwd(), logFile)})`);
      return;
    }
    await new Promise((r) => setTimeout(r, interactive ? 250 : 2000));
  }
  status(line(stack.events.stats()), true);
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

/**
 * Starts the OHIF viewer on the research API, with a fresh Research.Read token in each
 * app-config.js. Without the build (npm cannot fetch it) the pipeline still starts: warns instead.
 */
async function startLocalViewer(stack: LocalStack): Promise<ViewerServer | undefined> {
  try {
    const distDir = await ensureViewerBuild(projectRoot, (line) => status(line, true));
    const research = DEV_CALLERS.research;
    return await startViewer({
      distDir,
      dicomWebRoot: `${stack.hostUrl}/api/dicomweb`,
      token: () => stack.devIssuer.sign({ subject: research.oid, roles: [research.role], claims: { scp: 'access_as_user', idtyp: 'user' } }),
    });
  } catch (err) {
    warn(`the viewer is not served: ${(err as Error).message}`);
    return undefined;
  }
}

/** The research study the viewer link opens (startSummary.viewerStudy), asked of QIDO-RS as the viewer would. */
async function firstStudy(stack: LocalStack): Promise<string | undefined> {
  try {
    const res = await fetch(`${stack.hostUrl}/api/dicomweb/studies?limit=100`, { headers: { authorization: `Bearer ${stack.devIssuer.tokens.research}`, accept: 'application/dicom+json' } });
    if (res.status === 204) return undefined;
    if (!res.ok) throw new Error(`QIDO-RS answered ${res.status}`);
    return viewerStudy((await res.json()) as QidoStudy[]);
  } catch (err) {
    warn(`could not find a study for the viewer link: ${(err as Error).message}`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const source = localSource();
  fs.mkdirSync(dataDir, { recursive: true });
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  const stack = await startStack({
    projectRoot,
    dataDir,
    persistence: { location: path.join(dataDir, 'azurite') },
    anq: { targetDir: anqTargetDir, stateDir: anqStateDir },
    liveSharing: true,
    logSink: (level, functionName, message) => {
      const line = `${new Date().toISOString()} [${level}] ${functionName || 'host'}: ${message}`;
      log.write(`${line}\n`);
      if (isConsoleWorthy(level, functionName)) {
        if (interactive) process.stdout.write('\r\x1b[2K');
        process.stdout.write(`${line}\n`);
      }
    },
  });

  const viewer = await startLocalViewer(stack);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    status(`${signal}: stopping...`, true);
    await viewer?.stop();
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
  const anq = stack.anq;
  if (!anq) throw new Error('the ANQ stand-ins did not start');
  console.log(`ANQ S3 (s3rver)             ${anq.standIn.s3Endpoint} (bucket ${anq.bucket}, export ${anq.exportPath})`);
  console.log(`ANQ REST (Qumulo stand-in)  ${anq.standIn.restEndpoint}`);
  console.log(`ANQ replication target      ${path.relative(process.cwd(), anq.targetDir)} (snapshot watcher on "${stack.env.ANQ_WATCH_SCHEDULE}")`);
  if (viewer) console.log(`OHIF viewer                 ${viewer.url} (research archive at ${stack.hostUrl}/api/dicomweb, Research.Read token)`);
  if (viewer) console.log(`statistics dashboard        ${viewer.dashboardUrl} (GET ${stack.hostUrl}/api/statistics)`);
  // For `npm run ingest` (another process): where to copy files and whom to ask for a snapshot.
  const anqFile = path.join(dataDir, LOCAL_ANQ_FILE);
  fs.writeFileSync(
    anqFile,
    JSON.stringify({ targetDir: anq.targetDir, prefix: anq.prefix, restEndpoint: anq.standIn.restEndpoint, restToken: anq.restToken, cluster: anq.cluster, exportPath: anq.exportPath }, null, 2),
    { mode: 0o600 },
  );

  const landingName = stack.settings.sourceContainers[0] as string;
  const landing = BlobServiceClient.fromConnectionString(stack.env.SourceStorage as string).getContainerClient(landingName);
  let hasBlobs = false;
  for await (const _blob of landing.listBlobsFlat()) {
    hasBlobs = true;
    break;
  }

  const targetFiles = countTargetFiles(anq.targetDir);
  let what: string;
  let expectedRecords: number;
  if (!hasBlobs && targetFiles === 0) {
    const files = listFolder(samplesDir, notSample);
    what = 'samples';
    if (source === 'anq') {
      console.log(`\nfirst start: placing the ${files.length} bundled sample files in the ANQ replication target and taking a snapshot`);
      console.log('  some are quarantined or fail on purpose (burned-in text, no UIDs, DICOMDIRs, not DICOM)');
      const placed = await placeAndSnapshot({
        folder: samplesDir,
        targetDir: path.join(anq.targetDir, ...anq.prefix.split('/').filter(Boolean)),
        prefix: 'samples/',
        restEndpoint: anq.standIn.restEndpoint,
        restToken: anq.restToken,
        nameSuffix: 'samples',
        exclude: notSample,
      });
      console.log(`  snapshot ${placed.snapshot.id} (${placed.snapshot.name}): the watcher publishes a FileReplicated event per file on its next tick`);
      await waitForProcessing(stack, () => undefined, placed.files);
      expectedRecords = placed.files;
    } else {
      console.log(`\nfirst start: uploading the ${files.length} bundled sample files into ${landingName} (LOCAL_SOURCE=blob)`);
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
      expectedRecords = files.length - (await upload);
    }
  } else {
    what = 'files';
    const n = hasBlobs ? await stack.reconcile() : 0;
    if (n > 0) console.log(`\n${landingName} already holds ${n} blob(s): re-emitting BlobCreated for each (the Cosmos DB server starts empty)`);
    if (targetFiles > 0) {
      // The catalog starts empty: the watcher diffs every snapshot again, from the oldest one.
      const checkpoints = BlobServiceClient.fromConnectionString(stack.env.AzureWebJobsStorage as string).getContainerClient(anq.checkpoint.container);
      await checkpoints.getBlobClient(anq.checkpoint.blobName).deleteIfExists();
      console.log(`\nthe ANQ replication target already holds ${targetFiles} file(s): the watcher's checkpoint is reset, so every snapshot is diffed and published again (the Cosmos DB server starts empty)`);
    }
    expectedRecords = n + targetFiles;
    await waitForProcessing(stack, () => undefined, targetFiles > 0 ? expectedRecords : undefined);
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
  console.log(`  npm run ingest -- <folder>          (copies into the ANQ replication target and takes a snapshot)`);
  console.log(`  npm run ingest -- <folder> --blob   (uploads into ${landingName})`);
  if (viewer) {
    const study = await firstStudy(stack);
    console.log(study ? `\nopen the first cataloged study in the viewer:\n  ${viewer.studyUrl(study)}` : `\nthe viewer's study list (no study is cataloged yet): ${viewer.url}/`);
  }
  console.log('\nserving; Ctrl+C stops');
}

main().catch((err: unknown) => {
  console.error(`\nnpm start failed: ${(err as Error).message}`);
  process.exit(1);
});
