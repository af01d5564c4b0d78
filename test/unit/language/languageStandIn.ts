/**
 * A stand-in for the Azure AI Language text analysis endpoint, for unit tests only (the service
 * cannot be reached from here): a real HTTP server on a loopback port that answers
 * `POST /language/:analyze-text` as the REST API (2023-04-01) documents, finding the strings
 * it was told about and returning them as PiiEntityRecognition entities with UTF-16 offsets.
 * It records each request, and can answer with scripted failures first.
 */
import { createServer, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface KnownEntity {
  text: string;
  category: string;
  confidenceScore?: number;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: {
    kind: string;
    parameters: Record<string, unknown>;
    analysisInput: { documents: { id: string; language: string; text: string }[] };
  };
}

export interface StandIn {
  endpoint: string;
  requests: RecordedRequest[];
  /** Answers to send before the normal ones: a status (with Retry-After seconds), or document errors for every document. */
  failNext(...answers: ({ status: number; retryAfter?: number } | { documentError: string })[]): void;
  close(): Promise<void>;
}

export async function startLanguageStandIn(known: KnownEntity[]): Promise<StandIn> {
  const requests: RecordedRequest[] = [];
  const scripted: ({ status: number; retryAfter?: number } | { documentError: string })[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RecordedRequest['body'];
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const answer = scripted.shift();
      if (answer && 'status' in answer) {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...(answer.retryAfter !== undefined ? { 'retry-after': String(answer.retryAfter) } : {}) });
        res.end(JSON.stringify({ error: { code: 'TooManyRequests', message: 'scripted failure' } }));
        return;
      }
      const docs = body.analysisInput.documents;
      const errors = answer ? docs.map((d) => ({ id: d.id, error: { code: 'InvalidArgument', message: 'scripted', innererror: { code: answer.documentError } } })) : [];
      const documents = answer ? [] : docs.map((d) => ({
        id: d.id,
        warnings: [],
        entities: known.flatMap((k) => {
          const found: object[] = [];
          for (let at = d.text.indexOf(k.text); at >= 0; at = d.text.indexOf(k.text, at + 1)) {
            found.push({ text: k.text, category: k.category, offset: at, length: k.text.length, confidenceScore: k.confidenceScore ?? 0.9 });
          }
          return found;
        }),
      }));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'PiiEntityRecognitionResults', results: { documents, errors, modelVersion: '2023-09-01' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    failNext: (...answers) => scripted.push(...answers),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
