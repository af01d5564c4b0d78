/**
 * Accept negotiation of the WADO-RS resources (PS3.18 8.7.3). The service sends what it
 * stores and never transcodes: a transfer syntax is acceptable when the request asks for
 * none, for `*`, or for exactly the stored one. Anything else is NOT_ACCEPTABLE (406).
 */
import { ErrorCodes, PipelineError } from '../errors';

/** One media range of an Accept header. */
export interface MediaRange {
  /** "type/subtype", lower case. */
  mediaType: string;
  /** Parameters by lower-case name, quotes removed (`type`, `transfer-syntax`, ...). */
  params: Map<string, string>;
  q: number;
}

/** Splits on `sep` outside double quotes. */
function splitOutsideQuotes(text: string, sep: string): string[] {
  if (!text.includes('"')) return text.split(sep);
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') quoted = !quoted;
    else if (ch === sep && !quoted) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

/**
 * The media ranges of an Accept header, most preferred first (by q, then by order); an
 * absent or empty header is `*\/*`. Ranges with q=0 are dropped. Throws QUERY_INVALID for a
 * range that is not `type/subtype`. Pure.
 */
export function parseAccept(header: string | null | undefined): MediaRange[] {
  if (!header || header.trim() === '') return [{ mediaType: '*/*', params: new Map(), q: 1 }];
  const ranges: MediaRange[] = [];
  for (const item of splitOutsideQuotes(header, ',')) {
    if (item.trim() === '') continue;
    const [type, ...rawParams] = splitOutsideQuotes(item, ';').map((s) => s.trim());
    const mediaType = (type ?? '').toLowerCase();
    if (!/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+*-]+$/.test(mediaType) && mediaType !== '*/*') {
      throw new PipelineError(ErrorCodes.QUERY_INVALID, 'the Accept header holds a media range that is not type/subtype');
    }
    const params = new Map<string, string>();
    for (const p of rawParams) {
      const eq = p.indexOf('=');
      if (eq <= 0) continue;
      params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
    }
    const q = params.has('q') ? Number(params.get('q')) : 1;
    params.delete('q');
    if (Number.isFinite(q) && q > 0) ranges.push({ mediaType, params, q });
  }
  return ranges.map((r, i) => ({ r, i })).sort((a, b) => b.r.q - a.r.q || a.i - b.i).map(({ r }) => r);
}

/** True when `range` (which may hold wild cards) covers `mediaType`. */
function covers(range: string, mediaType: string): boolean {
  if (range === '*/*' || range === mediaType) return true;
  const [type, sub] = range.split('/');
  return sub === '*' && mediaType.startsWith(`${type}/`);
}

/** The transfer-syntax parameter allows sending the stored syntax of every instance. */
function syntaxAllowed(range: MediaRange, stored: readonly string[]): boolean {
  const asked = range.params.get('transfer-syntax');
  return asked === undefined || asked === '*' || stored.every((ts) => ts === asked);
}

function notAcceptable(what: string): PipelineError {
  return new PipelineError(
    ErrorCodes.NOT_ACCEPTABLE,
    `the Accept header asks for no form of the ${what} this service gives: it sends the stored transfer syntax (transfer-syntax=* or none asked) and does not transcode`,
  );
}

/**
 * How to send instances (study, series or instance retrieve): multipart/related of
 * application/dicom parts, or one bare application/dicom body when `single` allows it (one
 * instance) and the client takes only that. Throws NOT_ACCEPTABLE (406). Pure.
 */
export function negotiateInstances(ranges: MediaRange[], stored: readonly string[], single: boolean): { multipart: boolean } {
  for (const r of ranges) {
    if (!syntaxAllowed(r, stored)) continue;
    if (covers(r.mediaType, 'multipart/related')) {
      const type = r.params.get('type');
      if (type === undefined || covers(type.toLowerCase(), 'application/dicom')) return { multipart: true };
    } else if (single && covers(r.mediaType, 'application/dicom')) {
      return { multipart: false };
    }
  }
  throw notAcceptable('instances');
}

/** PS3.18 Table 8.7.3-5: the media type of a frame in an encapsulated transfer syntax. */
const FRAME_MEDIA_TYPES: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2.4.50': 'image/jpeg',
  '1.2.840.10008.1.2.4.51': 'image/jpeg',
  '1.2.840.10008.1.2.4.57': 'image/jpeg',
  '1.2.840.10008.1.2.4.70': 'image/jpeg',
  '1.2.840.10008.1.2.4.80': 'image/jls',
  '1.2.840.10008.1.2.4.81': 'image/jls',
  '1.2.840.10008.1.2.4.90': 'image/jp2',
  '1.2.840.10008.1.2.4.91': 'image/jp2',
  '1.2.840.10008.1.2.4.92': 'image/jpx',
  '1.2.840.10008.1.2.4.93': 'image/jpx',
  '1.2.840.10008.1.2.4.201': 'image/jphc',
  '1.2.840.10008.1.2.4.202': 'image/jphc',
  '1.2.840.10008.1.2.4.203': 'image/jphc',
  '1.2.840.10008.1.2.5': 'image/dicom-rle',
};

/** The media type frames of this transfer syntax are sent as: application/octet-stream for native (and unknown) syntaxes. */
export function frameMediaType(transferSyntaxUid: string): string {
  return FRAME_MEDIA_TYPES[transferSyntaxUid] ?? 'application/octet-stream';
}

/**
 * The media type of each frame part: the stored syntax's own (frameMediaType), or
 * application/octet-stream when the client asks for that with `transfer-syntax=*` (or the
 * stored syntax, or none), as OHIF does. Throws NOT_ACCEPTABLE (406). Pure.
 */
export function negotiateFrames(ranges: MediaRange[], stored: string): { partType: string } {
  const natural = frameMediaType(stored);
  for (const r of ranges) {
    if (!syntaxAllowed(r, [stored])) continue;
    if (!covers(r.mediaType, 'multipart/related')) continue;
    const type = r.params.get('type')?.toLowerCase();
    if (type === undefined || covers(type, natural)) return { partType: natural };
    if (type === 'application/octet-stream') return { partType: type };
  }
  throw notAcceptable('frames');
}

/**
 * How to send a bulk data value: one application/octet-stream body (Range applies) or a
 * multipart/related of one such part. Throws NOT_ACCEPTABLE (406). Pure.
 */
export function negotiateBulkData(ranges: MediaRange[]): { multipart: boolean } {
  for (const r of ranges) {
    if (r.mediaType !== '*/*' && covers(r.mediaType, 'multipart/related')) {
      const type = r.params.get('type')?.toLowerCase();
      if (type === undefined || covers(type, 'application/octet-stream')) return { multipart: true };
    } else if (covers(r.mediaType, 'application/octet-stream')) {
      return { multipart: false };
    }
  }
  throw notAcceptable('bulk data');
}

/** Metadata is DICOM JSON: application/dicom+json (or application/json). Throws NOT_ACCEPTABLE (406). Pure. */
export function negotiateMetadata(ranges: MediaRange[]): void {
  if (ranges.some((r) => covers(r.mediaType, 'application/dicom+json') || covers(r.mediaType, 'application/json'))) return;
  throw notAcceptable('metadata (application/dicom+json)');
}
