/**
 * Dates in free text, in any common spelling: chrono-node's parsers for English and the other
 * languages it supports ("4 Mar 1961", "March 4, 2019", "3/4/19", "4. März 2019",
 * "2019年3月4日"), plus the DICOM form YYYYMMDD. A match counts when it names a calendar day or
 * month (day and month, or month and year): a bare year, a time of day or a weekday is left.
 */
import * as chrono from 'chrono-node';

import type { TextSpan } from './detector';

type Parser = { parse(text: string): chrono.ParsedResult[] };

/** English first; the others only see text that has letters outside English month names' reach (see detect). */
const ENGLISH: Parser = chrono.en.strict;
const OTHER_LANGUAGES: readonly Parser[] = [chrono.de, chrono.fr, chrono.es, chrono.it, chrono.nl, chrono.pt, chrono.ja, chrono.zh, chrono.sv, chrono.fi].map(
  (l) => ('strict' in l ? (l as { strict: Parser }).strict : (l as Parser)),
);

/** YYYYMMDD of the last two centuries, alone (not inside a longer number). */
const DICOM_DATE = /(?<![\p{L}\p{N}])(?:1[89]|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?![\p{L}\p{N}])/gu;

function isCalendarDate(r: chrono.ParsedResult): boolean {
  const c = r.start;
  return c.isCertain('month') && (c.isCertain('day') || c.isCertain('year'));
}

function spansOf(parser: Parser, text: string, out: TextSpan[]): void {
  for (const r of parser.parse(text)) if (isCalendarDate(r)) out.push({ start: r.index, end: r.index + r.text.length, kind: 'date' });
}

export function findDates(text: string): TextSpan[] {
  // Every spelling a parser reads as a calendar day holds a digit (numeral or day number).
  if (!/\d/.test(text)) return [];
  const spans: TextSpan[] = [];
  for (const m of text.matchAll(DICOM_DATE)) spans.push({ start: m.index ?? 0, end: (m.index ?? 0) + m[0].length, kind: 'date' });
  spansOf(ENGLISH, text, spans);
  // Other languages need a word or a CJK date sign next to the digits ("4. März", "3月4日").
  if (/[\p{L}]{3,}|[年月日]/u.test(text)) for (const p of OTHER_LANGUAGES) spansOf(p, text, spans);
  return spans;
}
