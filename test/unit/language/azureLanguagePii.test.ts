/**
 * The free-text detector's cloud option (issue 11 item 1): Azure AI Language PII detection in
 * its PHI domain behind the CloudPhiRecognizer interface, off by default. The service is played
 * by a loopback stand-in (languageStandIn.ts) that speaks the documented REST contract; the
 * DICOM side runs the real core on the real MR fixture (pydicom MR_small, provenance in
 * test/fixtures/dicom/MANIFEST.tsv).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { loadFreeTextCloudSettings } from '../../../shared/config/settings';
import { bufferReader } from '../../../shared/dicom/byteReader';
import { DicomDataset } from '../../../shared/dicom/dataset';
import { cloudAssistedDetector, CloudPhiRecognizer, findCloudPhi, gatherTexts } from '../../../shared/dicom/deid/freeText/cloud';
import { localDetector, TextSpan } from '../../../shared/dicom/deid/freeText/detector';
import { NO_SOURCE_NAMES } from '../../../shared/dicom/deid/freeText/names';
import { builtInProfile, Profile } from '../../../shared/dicom/deid/profile';
import { verifyDeidentified } from '../../../shared/dicom/deid/verify';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { isPipelineError } from '../../../shared/errors';
import { prepareDeidentifiedInstance, PreparedInstance } from '../../../shared/ingest/deidentifyInstance';
import { API_VERSION, AzureLanguagePiiRecognizer, createCloudPhiRecognizer, MAX_DOCUMENTS_PER_REQUEST, packDocuments } from '../../../shared/language/azureLanguagePii';
import { dataset, el, seq, tagOf } from '../dicom/deid/helpers';
import { encodeWithDataset } from '../ingest/coreHelpers';
import { KnownEntity, StandIn, startLanguageStandIn } from './languageStandIn';

const FIXTURE = join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');
const key = Buffer.from('cloud free-text option key, 32 b');
const noSleep = async () => undefined;

/** Identifying text the local detector does not find (checked below): places below the state and an unknown surname. */
const PLANTED = {
  comments: 'Referred from Mercy Springfield clinic, Greenfield',
  history: 'Patient lives in Wellington; CT for Zorblatt follow-up',
};
const KNOWN: KnownEntity[] = [
  { text: 'Mercy Springfield clinic', category: 'Organization' },
  { text: 'Greenfield', category: 'Address' },
  { text: 'Wellington', category: 'Address' },
  { text: 'Zorblatt', category: 'Person' },
  // Neither is redacted: a role, not a person; and a finding below the confidence threshold.
  { text: 'Patient', category: 'PersonType' },
  { text: 'CT', category: 'Organization', confidenceScore: 0.3 },
];
const IDENTIFYING = ['Springfield', 'Greenfield', 'Wellington', 'Zorblatt'];

function profile(name: string): Profile {
  const p = builtInProfile(name);
  if (!p) throw new Error(`no built-in profile ${name}`);
  return p;
}

function recognizer(standIn: StandIn, extra: Partial<{ key: string; minConfidence: number }> = {}): AzureLanguagePiiRecognizer {
  return new AzureLanguagePiiRecognizer({ endpoint: standIn.endpoint, key: 'test-key', language: 'en', minConfidence: 0.6, ...extra }, { sleep: noSleep });
}

async function plantedSource(): Promise<Buffer> {
  const src = await parseDicomBuffer(readFileSync(FIXTURE));
  const ds: DicomDataset = new Map(src.dataset);
  ds.set(tagOf('ImageComments'), el('ImageComments', PLANTED.comments));
  ds.set(tagOf('AdditionalPatientHistory'), el('AdditionalPatientHistory', PLANTED.history));
  return encodeWithDataset(src, ds);
}

/** The planted file through the core under research-default, with the cloud option when given a recognizer. */
async function prepare(source: Buffer, cloudPhi?: CloudPhiRecognizer): Promise<PreparedInstance> {
  return prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile: profile('research-default'), key, keyId: 'cloud', ...(cloudPhi ? { cloudPhi } : {}) },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'quarantine' },
  });
}

async function outputOf(prepared: PreparedInstance): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const c of prepared.output()) parts.push(c);
  return Buffer.concat(parts).toString('latin1');
}

let standIn: StandIn;
beforeEach(async () => {
  standIn = await startLanguageStandIn(KNOWN);
});
afterEach(async () => {
  await standIn.close();
});

describe('the local detector alone (the reason for the cloud option)', () => {
  it('given the planted texts, then it finds none of the places or the unknown surname', () => {
    for (const text of Object.values(PLANTED)) expect(localDetector.detect(text, { names: NO_SOURCE_NAMES })).toEqual([]);
  });
});

describe('AzureLanguagePiiRecognizer over the REST contract', () => {
  it('given texts, then it posts one PiiEntityRecognition task in the PHI domain with UTF-16 offsets and the key, and maps entities back to each text', async () => {
    const texts = ['nothing here', PLANTED.comments, PLANTED.history];
    const spans = await recognizer(standIn).recognize(texts);
    expect(standIn.requests).toHaveLength(1);
    const [req] = standIn.requests;
    expect(req!.method).toBe('POST');
    expect(req!.url).toBe(`/language/:analyze-text?api-version=${API_VERSION}`);
    expect(req!.headers['ocp-apim-subscription-key']).toBe('test-key');
    expect(req!.body.kind).toBe('PiiEntityRecognition');
    expect(req!.body.parameters).toMatchObject({ domain: 'phi', stringIndexType: 'Utf16CodeUnit' });
    expect(req!.body.analysisInput.documents.every((d) => d.language === 'en')).toBe(true);
    const found = (i: number) => spans[i]!.map((s: TextSpan) => [texts[i]!.slice(s.start, s.end), s.kind]);
    expect(found(0)).toEqual([]);
    expect(found(1)).toEqual([['Mercy Springfield clinic', 'organization'], ['Greenfield', 'address']]);
    // PersonType and the low-confidence finding are not redactions.
    expect(found(2)).toEqual([['Wellington', 'address'], ['Zorblatt', 'name']]);
  });

  it('given more text than one request holds, then documents of at most 5,000 characters go 5 to a request and offsets still land in the right text', async () => {
    const texts = Array.from({ length: 40 }, (_, i) => `${'x'.repeat(900)} row ${i} Zorblatt`);
    const spans = await recognizer(standIn).recognize(texts);
    const docs = standIn.requests.flatMap((r) => r.body.analysisInput.documents);
    expect(standIn.requests.length).toBeGreaterThan(1);
    expect(standIn.requests.every((r) => r.body.analysisInput.documents.length <= MAX_DOCUMENTS_PER_REQUEST)).toBe(true);
    expect(docs.every((d) => d.text.length <= 5000)).toBe(true);
    spans.forEach((s, i) => expect(s.map((x) => texts[i]!.slice(x.start, x.end))).toEqual(['Zorblatt']));
  });

  it('given one text longer than a document, then it is sent in overlapping windows and an entity at a window edge is still found', () => {
    const long = `${'a '.repeat(2490)}Zorblatt${' b'.repeat(2600)}`;
    const docs = packDocuments([long]);
    expect(docs.length).toBeGreaterThan(1);
    expect(docs.some((d) => d.text.includes('Zorblatt'))).toBe(true);
  });

  it('given a 429 with Retry-After and then success, then the request is sent again and succeeds', async () => {
    standIn.failNext({ status: 429, retryAfter: 1 });
    const spans = await recognizer(standIn).recognize([PLANTED.history]);
    expect(standIn.requests).toHaveLength(2);
    expect(spans[0]).toHaveLength(2);
  });

  it('given 503 on every try, then a transient SERVICE_UNAVAILABLE goes up (the file is retried), after 3 tries', async () => {
    standIn.failNext({ status: 503 }, { status: 503 }, { status: 503 }, { status: 503 });
    const error = await recognizer(standIn).recognize([PLANTED.history]).catch((e: unknown) => e);
    expect(isPipelineError(error, 'SERVICE_UNAVAILABLE')).toBe(true);
    expect((error as { transient: boolean }).transient).toBe(true);
    expect(standIn.requests).toHaveLength(3);
  });

  it('given a 400, then a permanent error goes up at once, without the text in its message', async () => {
    standIn.failNext({ status: 400 });
    const error = await recognizer(standIn).recognize([PLANTED.history]).catch((e: unknown) => e);
    expect(isPipelineError(error, 'INTERNAL')).toBe(true);
    expect(standIn.requests).toHaveLength(1);
    expect(String((error as Error).message)).not.toMatch(/Zorblatt|Wellington/);
  });

  it('given documents the service did not analyze, then it fails closed (INTERNAL with the service error code, no text)', async () => {
    standIn.failNext({ documentError: 'InvalidDocument' });
    const error = await recognizer(standIn).recognize([PLANTED.history]).catch((e: unknown) => e);
    expect(isPipelineError(error, 'INTERNAL')).toBe(true);
    expect((error as Error).message).toContain('InvalidDocument');
    expect((error as Error).message).not.toMatch(/Zorblatt|Wellington/);
  });

  it('given no key, then it authenticates with a bearer token for the Cognitive Services scope', async () => {
    const scopes: string[] = [];
    const r = new AzureLanguagePiiRecognizer(
      { endpoint: standIn.endpoint, language: 'en', minConfidence: 0.6 },
      { sleep: noSleep, credential: { getToken: async (scope) => { scopes.push(String(scope)); return { token: 'tok', expiresOnTimestamp: Date.now() + 60_000 }; } } },
    );
    await r.recognize([PLANTED.history]);
    expect(scopes).toEqual(['https://cognitiveservices.azure.com/.default']);
    expect(standIn.requests[0]!.headers.authorization).toBe('Bearer tok');
    expect(standIn.requests[0]!.headers['ocp-apim-subscription-key']).toBeUndefined();
  });
});

describe('FREE_TEXT_CLOUD settings', () => {
  it('given nothing set, then the option is off and no recognizer is made', () => {
    expect(loadFreeTextCloudSettings({})).toBeUndefined();
    expect(createCloudPhiRecognizer(loadFreeTextCloudSettings({}))).toBeUndefined();
  });

  it('given azure-language with an https endpoint and a key, then the settings are read', () => {
    expect(loadFreeTextCloudSettings({ FREE_TEXT_CLOUD: 'azure-language', AZURE_LANGUAGE_ENDPOINT: 'https://lang.example.com/', AZURE_LANGUAGE_KEY: 'k' })).toEqual({
      endpoint: 'https://lang.example.com',
      key: 'k',
      clientId: undefined,
      language: 'en',
      minConfidence: 0.6,
    });
  });

  it.each([
    [{ FREE_TEXT_CLOUD: 'aws' }, /FREE_TEXT_CLOUD must be/],
    [{ FREE_TEXT_CLOUD: 'azure-language' }, /AZURE_LANGUAGE_ENDPOINT is required/],
    [{ FREE_TEXT_CLOUD: 'azure-language', AZURE_LANGUAGE_ENDPOINT: 'http://lang.example.com' }, /must use https/],
    [{ FREE_TEXT_CLOUD: 'azure-language', AZURE_LANGUAGE_ENDPOINT: 'https://x.example.com', AZURE_LANGUAGE_MIN_CONFIDENCE: '2' }, /MIN_CONFIDENCE/],
  ])('given %j, then CONFIG_INVALID names the problem', (env, message) => {
    expect(() => loadFreeTextCloudSettings(env)).toThrow(message);
  });
});

describe('cloudAssistedDetector and gatherTexts', () => {
  const detector = cloudAssistedDetector(localDetector, [
    { text: 'Zorblatt', kind: 'name' },
    { text: 'Ann', kind: 'name' },
    { text: '王小东', kind: 'name' },
  ]);
  const found = (t: string) => detector.detect(t, { names: NO_SOURCE_NAMES }).map((s) => t.slice(s.start, s.end));

  it('given a finding, then every occurrence is found in any text, case-insensitive, not inside a longer word', () => {
    expect(found('zorblatt and ZORBLATT again')).toEqual(['zorblatt', 'ZORBLATT']);
    expect(found('Annual review by Ann')).toEqual(['Ann']);
  });

  it('given a finding in a script written without spaces, then it is found inside the run of text', () => {
    expect(found('患者王小东复查')).toEqual(['王小东']);
  });

  it('given the local detector finds a span too, then both are kept, merged', () => {
    expect(found('Zorblatt, call 617-555-0134')).toEqual(['Zorblatt', '617-555-0134']);
  });

  it('given a data set with text in nested sequences and private elements, then each distinct public text value of the free-text VRs is gathered once, private ones not', () => {
    const ds = dataset(
      el('ImageComments', PLANTED.comments),
      el('StudyDescription', PLANTED.comments),
      el('PatientID', 'ID12345'),
      seq('ReferencedStudySequence', [dataset(el('DerivationDescription', 'nested Wellington'))]),
      { tag: 0x00091010, vr: 'LO', value: Buffer.from('private text') },
    );
    expect(gatherTexts(ds).texts.sort()).toEqual([PLANTED.comments, 'ID12345', 'nested Wellington'].sort());
    expect(gatherTexts(ds).truncated).toBe(false);
  });
});

describe('the cloud option through the core (engine and verification gate)', () => {
  it('given the option on, then the research copy keeps the text around the findings and holds none of them, and the audit counts them by kind', async () => {
    const source = await plantedSource();
    const prepared = await prepare(source, recognizer(standIn));
    const out = await outputOf(prepared);
    for (const value of IDENTIFYING) expect(out).not.toContain(value);
    expect(out).toContain('Referred from [removed]');
    expect(out).toContain('follow-up');
    expect(standIn.requests).toHaveLength(1);
    expect(prepared.report.textRedactions).toMatchObject({ 'ImageComments:organization': 1, 'ImageComments:address': 1, 'AdditionalPatientHistory:name': 1, 'AdditionalPatientHistory:address': 1 });
  });

  it('given the option off, then the same file keeps the places and the surname (what the option adds)', async () => {
    const source = await plantedSource();
    expect(await outputOf(await prepare(source))).toContain('Zorblatt');
    expect(standIn.requests).toHaveLength(0);
  });

  it('given an output that still holds a finding, then the gate with the same detector refuses it, and the local one alone would pass it', async () => {
    const source = await plantedSource();
    const prepared = await prepare(source);
    const { findings } = await findCloudPhi((await parseDicomBuffer(source)).dataset, recognizer(standIn));
    const assisted = cloudAssistedDetector(localDetector, findings);
    const local = await verifyDeidentified(prepared.dataset, prepared.report, profile('research-default'));
    const withCloud = await verifyDeidentified(prepared.dataset, prepared.report, profile('research-default'), { detector: assisted });
    expect(local.passed).toBe(true);
    expect(withCloud.passed).toBe(false);
    expect(withCloud.findings.join('\n')).toMatch(/AdditionalPatientHistory.*free-text detector/);
  });

  it('given the service unavailable, then the file is not written: a transient error goes up before any output', async () => {
    standIn.failNext({ status: 503 }, { status: 503 }, { status: 503 });
    const source = await plantedSource();
    const error = await prepare(source, recognizer(standIn)).catch((e: unknown) => e);
    expect(isPipelineError(error, 'SERVICE_UNAVAILABLE')).toBe(true);
  });
});
