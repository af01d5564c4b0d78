/**
 * Azure AI Language PII detection in its PHI domain, as a CloudPhiRecognizer (the free-text
 * detector's cloud option: shared/dicom/deid/freeText/cloud.ts). Calls the service's REST API
 * (`POST {endpoint}/language/:analyze-text?api-version=2023-04-01`, task kind
 * PiiEntityRecognition, `domain: "phi"`, offsets in UTF-16 code units) over Node's fetch.
 *
 * The texts of one file are packed into documents of at most MAX_DOCUMENT_CHARS characters
 * (one text per line; a longer text is cut into overlapping windows) and sent
 * MAX_DOCUMENTS_PER_REQUEST documents per request, the synchronous API's limits. The texts are
 * PHI: they are never logged, and errors carry the service's error code, never its message
 * (which may quote the text).
 */
import { DefaultAzureCredential, ManagedIdentityCredential, TokenCredential } from '@azure/identity';

import type { FreeTextCloudSettings } from '../config/settings';
import type { CloudPhiRecognizer, CloudSpan } from '../dicom/deid/freeText/cloud';
import type { TextKind } from '../dicom/deid/freeText/detector';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';

export const API_VERSION = '2023-04-01';
/** Characters of one document (the synchronous API's limit is 5,120 text elements). */
export const MAX_DOCUMENT_CHARS = 5000;
/** Documents of one request (the synchronous API's limit for PII detection). */
export const MAX_DOCUMENTS_PER_REQUEST = 5;
/** A long text's windows overlap by this much, so that no entity is cut in two. */
const WINDOW_OVERLAP = 200;
const REQUEST_TIMEOUT_MS = 30_000;
const TRIES = 3;
const SCOPE = 'https://cognitiveservices.azure.com/.default';

/**
 * The service's PHI-domain categories and the kind each is counted as. What is not listed
 * (PersonType such as "patient" or "doctor", Age, Quantity, and the like) is not redacted:
 * ages are the age rules' concern (hipaa.ts), and the rest is not identifying.
 */
const KIND_OF_CATEGORY: Readonly<Record<string, TextKind>> = {
  Person: 'name',
  PhoneNumber: 'phone',
  Email: 'email',
  URL: 'url',
  IPAddress: 'ip',
  Address: 'address',
  Date: 'date',
  DateTime: 'date',
  USSocialSecurityNumber: 'ssn',
  Organization: 'organization',
  USDriversLicenseNumber: 'identifier',
  USUKPassportNumber: 'identifier',
  DrugEnforcementAgencyNumber: 'identifier',
  USIndividualTaxpayerIdentification: 'identifier',
  InternationalBankingAccountNumber: 'identifier',
  CreditCardNumber: 'identifier',
  USBankAccountNumber: 'identifier',
  ABARoutingNumber: 'identifier',
  SWIFTCode: 'identifier',
};

interface Segment {
  /** Index of the text in the batch. */
  text: number;
  /** Where the segment starts in its document, and in its text. */
  docOffset: number;
  textOffset: number;
  length: number;
}

interface PackedDocument {
  id: string;
  text: string;
  segments: Segment[];
}

/** The texts packed into documents of at most `max` characters; a text longer than `max` is cut into overlapping windows. */
export function packDocuments(texts: readonly string[], max = MAX_DOCUMENT_CHARS): PackedDocument[] {
  const docs: PackedDocument[] = [];
  let current: PackedDocument | undefined;
  const add = (text: number, textOffset: number, part: string) => {
    if (!current || current.text.length + 1 + part.length > max) {
      current = { id: String(docs.length), text: '', segments: [] };
      docs.push(current);
    }
    if (current.text.length > 0) current.text += '\n';
    current.segments.push({ text, docOffset: current.text.length, textOffset, length: part.length });
    current.text += part;
  };
  texts.forEach((t, i) => {
    if (t.length <= max) return add(i, 0, t);
    for (let at = 0; at < t.length; at += max - WINDOW_OVERLAP) {
      add(i, at, t.slice(at, at + max));
      if (at + max >= t.length) break;
    }
  });
  return docs;
}

interface PiiEntity {
  text?: string;
  category?: string;
  offset?: number;
  length?: number;
  confidenceScore?: number;
}

interface AnalyzeTextResponse {
  results?: {
    documents?: { id: string; entities?: PiiEntity[] }[];
    errors?: { id: string; error?: { code?: string; innererror?: { code?: string } } }[];
  };
}

export interface AzureLanguageOptions {
  /** Authenticates when no key is set (managed identity). */
  credential?: TokenCredential;
  /** For tests: the fetch to use. */
  fetchImpl?: typeof fetch;
  /** For tests: how a retry waits. */
  sleep?: (ms: number) => Promise<void>;
}

export class AzureLanguagePiiRecognizer implements CloudPhiRecognizer {
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly settings: FreeTextCloudSettings, private readonly options: AzureLanguageOptions = {}) {
    if (!settings.key && !options.credential) {
      throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'the Azure AI Language recognizer needs AZURE_LANGUAGE_KEY or a managed identity');
    }
    this.fetchImpl = options.fetchImpl ?? fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  async recognize(texts: readonly string[], options: { abortSignal?: AbortSignal } = {}): Promise<CloudSpan[][]> {
    const out: CloudSpan[][] = texts.map(() => []);
    const docs = packDocuments(texts);
    for (let i = 0; i < docs.length; i += MAX_DOCUMENTS_PER_REQUEST) {
      const batch = docs.slice(i, i + MAX_DOCUMENTS_PER_REQUEST);
      const response = await this.send(batch, options.abortSignal);
      const failed = response.results?.errors ?? [];
      if (failed.length > 0) {
        // Fail closed: a text the service did not analyze is not published as if it had been.
        const code = failed[0]?.error?.innererror?.code ?? failed[0]?.error?.code ?? 'unknown';
        throw new PipelineError(ErrorCodes.INTERNAL, `free-text recognizer: ${failed.length} document(s) not analyzed (${code})`);
      }
      const byId = new Map(batch.map((d) => [d.id, d]));
      for (const result of response.results?.documents ?? []) {
        const doc = byId.get(result.id);
        if (!doc) continue;
        for (const entity of result.entities ?? []) this.place(entity, doc, out);
      }
    }
    return out;
  }

  /** An entity of a packed document, as a span of the text it falls in. */
  private place(entity: PiiEntity, doc: PackedDocument, out: CloudSpan[][]): void {
    const kind = KIND_OF_CATEGORY[entity.category ?? ''];
    if (!kind || (entity.confidenceScore ?? 0) < this.settings.minConfidence) return;
    const start = entity.offset ?? -1;
    const end = start + (entity.length ?? 0);
    const segment = doc.segments.find((s) => start >= s.docOffset && start < s.docOffset + s.length);
    if (!segment || end <= start) return;
    const from = segment.textOffset + (start - segment.docOffset);
    const to = segment.textOffset + Math.min(end, segment.docOffset + segment.length) - segment.docOffset;
    out[segment.text]?.push({ start: from, end: to, kind });
  }

  private async send(batch: PackedDocument[], abortSignal?: AbortSignal): Promise<AnalyzeTextResponse> {
    const body = JSON.stringify({
      kind: 'PiiEntityRecognition',
      parameters: { modelVersion: 'latest', domain: 'phi', stringIndexType: 'Utf16CodeUnit', loggingOptOut: true },
      analysisInput: { documents: batch.map((d) => ({ id: d.id, language: this.settings.language, text: d.text })) },
    });
    const url = `${this.settings.endpoint}/language/:analyze-text?api-version=${API_VERSION}`;
    for (let attempt = 1; ; attempt++) {
      let status: number | undefined;
      let retryAfterMs = 0;
      try {
        const headers: Record<string, string> = { 'content-type': 'application/json', ...(await this.authHeader()) };
        const signal = abortSignal ? AbortSignal.any([abortSignal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) : AbortSignal.timeout(REQUEST_TIMEOUT_MS);
        const res = await this.fetchImpl(url, { method: 'POST', headers, body, signal });
        if (res.ok) return (await res.json()) as AnalyzeTextResponse;
        status = res.status;
        retryAfterMs = Math.min(10_000, 1000 * Number(res.headers.get('retry-after') ?? 0) || 0);
        await res.body?.cancel();
        const error = Object.assign(new Error(`HTTP ${status}`), { statusCode: status });
        if (attempt >= TRIES || !(status === 429 || status === 408 || status >= 500)) throw error;
      } catch (e) {
        if (abortSignal?.aborted) throw fromServiceError(e, 'free-text recognizer');
        const wrapped = fromServiceError(e, 'free-text recognizer');
        if (attempt >= TRIES || !wrapped.transient) throw wrapped;
      }
      await this.sleep(Math.max(retryAfterMs, 200 * 2 ** (attempt - 1)));
    }
  }

  private async authHeader(): Promise<Record<string, string>> {
    if (this.settings.key) return { 'Ocp-Apim-Subscription-Key': this.settings.key };
    const token = await this.options.credential!.getToken(SCOPE);
    if (!token) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'free-text recognizer: no token for the Language resource');
    return { authorization: `Bearer ${token.token}` };
  }
}

/** The recognizer FREE_TEXT_CLOUD asks for (config/settings.ts loadFreeTextCloudSettings); undefined when the option is off. */
export function createCloudPhiRecognizer(settings: FreeTextCloudSettings | undefined): CloudPhiRecognizer | undefined {
  if (!settings) return undefined;
  if (settings.key) return new AzureLanguagePiiRecognizer(settings);
  const credential = settings.clientId ? new ManagedIdentityCredential({ clientId: settings.clientId }) : new DefaultAzureCredential();
  return new AzureLanguagePiiRecognizer(settings, { credential });
}
