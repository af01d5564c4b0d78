/**
 * multipart/related bodies (RFC 2387, PS3.18 8.7.3.3) written as a stream: each part's bytes
 * are read only when the client has taken the previous ones, so a response of any size holds
 * one chunk in memory at a time.
 */
import { randomBytes } from 'node:crypto';

/** One part: its headers and, opened only when it is its turn, its bytes. */
export interface Part {
  contentType: string;
  /** Content-Location of the part (the resource it is), when useful to the client. */
  location?: string;
  /** Bytes of the part, when known up front (sent as Content-Length). */
  length?: number;
  open(): Promise<AsyncIterable<Uint8Array>>;
}

/** A boundary that cannot occur by chance in the parts (random, 32 hex digits). */
export function newBoundary(): string {
  return randomBytes(16).toString('hex');
}

/** The Content-Type of a multipart/related answer whose root parts are `type`. */
export function multipartContentType(type: string, boundary: string): string {
  return `multipart/related; type="${type}"; boundary=${boundary}`;
}

/** A part's delimiter and headers, up to the blank line before its bytes. */
function partHead(part: Part, boundary: string): Buffer {
  const headers = [`--${boundary}`, `Content-Type: ${part.contentType}`];
  if (part.length !== undefined) headers.push(`Content-Length: ${part.length}`);
  if (part.location) headers.push(`Content-Location: ${part.location}`);
  return Buffer.from(`${headers.join('\r\n')}\r\n\r\n`, 'latin1');
}

const CRLF = Buffer.from('\r\n', 'latin1');
const closeDelimiter = (boundary: string) => Buffer.from(`--${boundary}--\r\n`, 'latin1');

/** Parts of at most this many bytes, known up front (frames, bulk data values), have their pieces gathered (see multipartBody). */
const GATHERED_PART_MAX = 4 * 1024 * 1024;

/** Gathered pieces go out once they reach this many bytes. */
const GATHER_BYTES = 64 * 1024;

/**
 * The body's length in bytes when every part's length is known up front (frames, bulk data),
 * else undefined. Sent as Content-Length, it spares each hop the chunked framing (two more
 * small writes per chunk), and lets a client see a truncated answer for what it is.
 */
export function multipartLength(parts: readonly Part[], boundary: string): number | undefined {
  let total = closeDelimiter(boundary).length;
  for (const part of parts) {
    if (part.length === undefined) return undefined;
    total += partHead(part, boundary).length + part.length + CRLF.length;
  }
  return total;
}

/**
 * The body: for each part its delimiter and headers, then its bytes as they stream, then the
 * close delimiter. Parts are opened one after the other, lazily. A failure while a part
 * streams ends the body with that error (the client sees a truncated answer, not a wrong one).
 *
 * The pieces of parts whose length is known and at most GATHERED_PART_MAX (frames, bulk data
 * values) are gathered with their framing and go out once they reach GATHER_BYTES: a frame's
 * headers go out with its first piece, and many small frames share a write, but a frame is not
 * held whole. (Up to 0.10.7 each such part went out joined in one chunk: one write per hop, but a
 * fresh buffer of up to 4 MiB per request in flight.) Pieces of 64 KiB, as the storage client
 * gives them from a socket, pass uncopied. The pieces of larger or unknown parts (instances) pass
 * as they come: joining them (tried in 0.9.0) cost a copy of every byte and took whole-instance
 * retrieval from 0.92x to about 0.6x a plain download.
 */
export async function* multipartBody(parts: Iterable<Part> | AsyncIterable<Part>, boundary: string): AsyncGenerator<Uint8Array> {
  const gathered = new Gathered();
  for await (const part of parts) {
    if (part.length !== undefined && part.length <= GATHERED_PART_MAX) {
      gathered.add(partHead(part, boundary));
      for await (const chunk of await part.open()) {
        gathered.add(chunk);
        if (gathered.bytes >= GATHER_BYTES) yield gathered.take();
      }
      gathered.add(CRLF);
      continue;
    }
    if (gathered.bytes > 0) yield gathered.take();
    yield partHead(part, boundary);
    for await (const chunk of await part.open()) yield chunk;
    yield CRLF;
  }
  gathered.add(closeDelimiter(boundary));
  yield gathered.take();
}

/** Chunks held to go out as one (one held alone goes out as it is, uncopied). */
class Gathered {
  private chunks: Uint8Array[] = [];
  bytes = 0;

  add(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  take(): Uint8Array {
    const one = this.chunks.length === 1 ? (this.chunks[0] as Uint8Array) : Buffer.concat(this.chunks, this.bytes);
    this.chunks = [];
    this.bytes = 0;
    return one;
  }
}

/** Concatenates streams opened one after the other (the pieces of a fragmented frame). */
export async function* concatenated(openers: Iterable<() => Promise<AsyncIterable<Uint8Array>>>): AsyncGenerator<Uint8Array> {
  for (const open of openers) for await (const chunk of await open()) yield chunk;
}

/**
 * `first` (already opened) then the pieces `rest` opens, one after the other. Ending it early,
 * even before reading it, ends `first` too, so that a read opened but never taken is released.
 */
export function afterOpened(first: AsyncIterable<Uint8Array>, rest: Iterable<() => Promise<AsyncIterable<Uint8Array>>>): AsyncIterable<Uint8Array> {
  const all = concatenated([async () => first, ...rest]);
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => all.next(),
      return: async () => {
        await first[Symbol.asyncIterator]().return?.();
        return all.return(undefined);
      },
    }),
  };
}
