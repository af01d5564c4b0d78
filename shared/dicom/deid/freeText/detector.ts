/**
 * The free-text detector: finds identifying spans (names, dates, identifiers) in a text value
 * the profile keeps, so the engine can redact them and keep the rest, and the verification
 * gate can refuse an output where one is left. One interface, several recognizers (local
 * libraries by default, a cloud service as an option), each finding spans of one or more kinds.
 * Spans are positions in the text: the detector never logs, and its callers count kinds, never
 * values.
 */
import { findDates } from './dates';
import { findIdentifiers } from './identifiers';
import { findNames, SourceNames } from './names';

/** What a redacted span was. Audit counts are keyed by attribute and kind. `organization` and `identifier` (another ID number) come from the cloud option only. */
export type TextKind = 'name' | 'date' | 'ssn' | 'phone' | 'email' | 'url' | 'ip' | 'address' | 'zip' | 'mrn' | 'uid' | 'organization' | 'identifier';

export interface TextSpan {
  /** UTF-16 offsets in the text, end exclusive. */
  start: number;
  end: number;
  kind: TextKind;
}

export interface DetectContext {
  /** The source's own names, in every spelling the detector knows (see names.ts sourceNames). */
  names: SourceNames;
  /**
   * UIDs in text that are not a finding: the gate skips the research UIDs the engine wrote
   * there itself (2.25 form). Absent: every non-standard UID is one.
   */
  isAllowedUid?: (uid: string) => boolean;
}

/**
 * Finds identifying spans in one text value. Pure and synchronous; idempotent on its own
 * redactions (the replacement text "[removed]" and research UIDs, with isAllowedUid, are
 * never found again). Does not throw for content.
 */
export interface FreeTextDetector {
  detect(text: string, context: DetectContext): TextSpan[];
}

/** The local detector: chrono-node dates, patterns and libphonenumber-js identifiers, names (the source's own and compromise's). */
export const localDetector: FreeTextDetector = {
  detect(text: string, context: DetectContext): TextSpan[] {
    if (!/[\p{L}\p{N}]/u.test(text)) return [];
    const spans = [...findIdentifiers(text, context), ...findDates(text), ...findNames(text, context.names)];
    return mergeSpans(spans);
  },
};

/**
 * Overlapping or touching spans merged into one, sorted; a merged span keeps the kind of its
 * longest part (a UID inside a URL is a URL: it goes with the URL).
 */
export function mergeSpans(spans: readonly TextSpan[]): TextSpan[] {
  const sorted = [...spans].filter((s) => s.end > s.start).sort((a, b) => a.start - b.start || b.end - a.end);
  const out: TextSpan[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start < last.end) {
      if (s.end - s.start > last.end - last.start) last.kind = s.kind;
      last.end = Math.max(last.end, s.end);
    } else {
      out.push({ ...s });
    }
  }
  return out;
}

export const REDACTED = '[removed]';

/**
 * The text with each span replaced (by `replacement(span, spanText)`, "[removed]" by default);
 * adjacent placeholders collapse into one.
 */
export function redactSpans(text: string, spans: readonly TextSpan[], replacement: (span: TextSpan, spanText: string) => string = () => REDACTED): string {
  let out = '';
  let at = 0;
  for (const s of spans) {
    out += text.slice(at, s.start) + replacement(s, text.slice(s.start, s.end));
    at = s.end;
  }
  out += text.slice(at);
  return out.replace(/\[removed\](?:[\s,;:^/-]*\[removed\])+/g, REDACTED);
}
