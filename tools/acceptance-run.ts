/**
 * Pushes a folder of DICOM files through a fresh local stack (Azurite, the Cosmos server, the
 * local host, the Event Grid stand-in) and checks the outcome the way the acceptance of the
 * ingestion asks: every file cataloged, failed with a code or quarantined (none lost); metadata
 * of every kept instance equal to dcmdump's reading of its source (Modality, SOP Class, Rows,
 * Columns, NumberOfFrames, instances per study); dcmdump reads every research copy whose source
 * it reads; no identifying value of a source in its research copy or documents.
 *
 * Usage: npm run build && node dist/tools/acceptance-run.js <folder> [--policy quarantine|allow]
 * Prints counts only (no values of the files). Exits 1 when a check fails.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { startStack } from '../local/stack';
import { listFolder, uploadFiles } from '../local/upload';
import { createCosmosClient } from '../shared/catalog/cosmosCatalog';
import type { IngestionDocument, InstanceDocument, StudyDocument } from '../shared/catalog/documents';
import { asciiValue } from '../shared/dicom/dataset';
import { jsonKey } from '../shared/dicom/json';
import { parseDicomBuffer } from '../shared/dicom/parser';
import { type TagKeyword, Tags } from '../shared/dicom/tags';

function dcmdump(file: string): string | undefined {
  try {
    return execFileSync('dcmdump', ['-q', '-Un', '+L', file], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 << 20 });
  } catch {
    return undefined;
  }
}

/** A top-level attribute as dcmdump prints it; undefined when absent or shown as UN bytes. */
function dumped(dump: string, tag: string): string | undefined {
  const line = dump.split('\n').find((l) => l.startsWith(`(${tag})`));
  if (!line || line.slice(11, 15).includes('UN')) return undefined;
  const m = /\[([^\]]*)\]/.exec(line);
  if (m) return m[1]!.trim();
  if (line.includes('(no value available)')) return '';
  return /^\([0-9a-f,]+\) [A-Z]{2} ([0-9.\\-]+)/.exec(line)?.[1];
}

async function main(): Promise<void> {
  const folder = process.argv[2];
  if (!folder) throw new Error('usage: node dist/tools/acceptance-run.js <folder> [--policy quarantine|allow]');
  const policyAt = process.argv.indexOf('--policy');
  const policy = policyAt > 0 ? (process.argv[policyAt + 1] ?? 'quarantine') : 'quarantine';
  const work = mkdtempSync(join(tmpdir(), 'vna-acceptance-'));
  const started = Date.now();
  const stack = await startStack({
    projectRoot: resolve(__dirname, '..', '..'),
    ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 },
    persistence: { inMemory: true },
    localSettings: false,
    dataDir: work,
    deidKey: 'acceptance-run-key-0123456789abcdefghij',
    deidKeyId: 'acceptance',
    env: { BURNED_IN_POLICY: policy, TELEMETRY_CAPTURE_FILE: join(work, 'telemetry.jsonl') },
    logSink: (level, fn, message) => writeFileSync(join(work, 'host.log'), `[${level}] ${fn}: ${message}\n`, { flag: 'a' }),
  });
  const failures: string[] = [];
  try {
    const blobs = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!);
    const landing = blobs.getContainerClient(stack.settings.sourceContainers[0]!);
    const research = blobs.getContainerClient(stack.settings.researchContainer);
    const files = listFolder(folder, (rel) => /(^|\/)(MANIFEST\.tsv|README\.md)$/.test(rel));
    const upload = await uploadFiles(landing, files, { concurrency: 8 });
    if (upload.failures.length) failures.push(`${upload.failures.length} uploads failed`);
    await stack.events.idle();
    const db = createCosmosClient(stack.settings.cosmos).database(stack.settings.cosmosDatabase);
    const index = (await db.container(stack.settings.indexContainer).items.query<IngestionDocument>('SELECT * FROM c').fetchAll()).resources;
    const catalog = db.container(stack.settings.researchCatalogContainer);
    const byName = new Map(index.map((d) => [d.blobName, d]));

    const counts: Record<string, number> = {};
    for (const f of files) {
      const d = byName.get(f.relative);
      const key = !d ? 'LOST' : d.status === 'cataloged' ? 'cataloged' : `${d.status} ${d.errorCode ?? '(no code)'}`;
      counts[key] = (counts[key] ?? 0) + 1;
      if (!d || !['cataloged', 'failed', 'quarantined'].includes(d.status) || (d.status !== 'cataloged' && !d.errorCode)) failures.push(`${f.relative}: ${key}`);
    }

    let compared = 0;
    let copiesRead = 0;
    let leakChecks = 0;
    const perStudy = new Map<string, { expected: number; research: string }>();
    for (const f of files) {
      const d = byName.get(f.relative);
      if (d?.status !== 'cataloged' || !d.research) continue;
      const { resource: inst } = await catalog.item(`instance:${d.research.sopInstanceUid}`, d.research.studyInstanceUid).read<InstanceDocument>();
      if (!inst) {
        failures.push(`${f.relative}: cataloged but no instance document`);
        continue;
      }
      if (inst.sourceRank !== d.sourceRank) continue; // another file of the same instance is kept
      const study = d.original?.studyInstanceUid ?? '';
      const entry = perStudy.get(study) ?? { expected: 0, research: d.research.studyInstanceUid };
      entry.expected++;
      perStudy.set(study, entry);
      const dump = dcmdump(f.file);
      if (!dump) continue;
      const first = (keyword: TagKeyword) => {
        const v = inst.dicom[jsonKey(keyword)]?.Value?.[0];
        return v === undefined || v === null ? undefined : String(v);
      };
      for (const [tag, ours] of [
        ['0008,0060', first('Modality')],
        ['0008,0016', inst.sopClassUid],
        ['0028,0010', first('Rows')],
        ['0028,0011', first('Columns')],
      ] as const) {
        const theirs = dumped(dump, tag);
        if (theirs !== undefined && theirs !== (ours ?? '')) failures.push(`${f.relative}: (${tag}) differs from dcmdump`);
      }
      const frames = dumped(dump, '0028,0008');
      const ourFrames = first('NumberOfFrames');
      if (frames !== undefined && frames !== '' && frames !== ourFrames && Number(frames) !== Number(ourFrames)) failures.push(`${f.relative}: NumberOfFrames differs from dcmdump`);
      compared++;
      const copy = join(work, 'copy.dcm');
      const bytes = await research.getBlobClient(d.research.blob).downloadToBuffer();
      writeFileSync(copy, bytes);
      if (!dcmdump(copy)) failures.push(`${f.relative}: dcmdump cannot read the research copy`);
      else copiesRead++;
      // The source's own identifiers must not be in its copy or its document.
      const source = await parseDicomBuffer(readFileSync(f.file)).catch(() => undefined);
      if (source) {
        const text = `${bytes.toString('latin1')}\n${JSON.stringify(inst)}`;
        for (const tag of [Tags.StudyInstanceUID, Tags.SeriesInstanceUID, Tags.SOPInstanceUID, Tags.PatientID, Tags.PatientName, Tags.PatientBirthDate]) {
          const v = asciiValue(source.dataset.get(tag));
          // Short values ("M", "1") and digits that equal counts occur by chance; the gate checks those by attribute.
          if (!v || v.length < 8 || /^(anonymi[sz]ed|anonymous)$/i.test(v)) continue;
          leakChecks++;
          if (text.includes(v)) failures.push(`${f.relative}: a source identifier (${tag.toString(16)}) is in its research copy or document`);
        }
      }
    }
    for (const [, s] of perStudy) {
      const { resource } = await catalog.item(`study:${s.research}`, s.research).read<StudyDocument>();
      if (resource?.numberOfStudyRelatedInstances !== s.expected) failures.push(`a study holds ${resource?.numberOfStudyRelatedInstances} instances, ${s.expected} expected`);
    }
    const stats = stack.events.stats();
    console.log(`files: ${files.length}; uploaded: ${upload.done}; events: ${JSON.stringify(stats)}`);
    if (process.env.ACCEPTANCE_LIST) for (const f of files) console.log(`  ${byName.get(f.relative)?.status ?? 'LOST'} ${byName.get(f.relative)?.errorCode ?? ''} ${f.relative}`);
    console.log(`outcome by status and code: ${JSON.stringify(Object.fromEntries(Object.entries(counts).sort()))}`);
    console.log(`kept instances compared with dcmdump: ${compared}; research copies read by dcmdump: ${copiesRead}; studies checked: ${perStudy.size}; identifier checks: ${leakChecks}`);
    console.log(`seconds: ${((Date.now() - started) / 1000).toFixed(1)}`);
    console.log(failures.length ? `FAILED (${failures.length}):\n  ${failures.slice(0, 40).join('\n  ')}` : 'all checks passed');
  } finally {
    await stack.stop();
    rmSync(work, { recursive: true, force: true });
  }
  process.exit(failures.length ? 1 : 0);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
