/**
 * Dates in free text, in any common spelling: chrono-node's parsers for English and the other
 * languages it supports ("4 Mar 1961", "March 4, 2019", "3/4/19", "4. März 2019",
 * "2019年3月4日"), plus the DICOM form YYYYMMDD. A match counts when it names a calendar day or
 * month (day and month, or month and year; all-digit forms need the year: "5/5mm" is a ratio):
 * a bare year, a time of day or a weekday is left.
 */
import * as chrono from 'chrono-node';

import { Lru } from '../../../lru';
import type { TextSpan } from './detector';

type Parser = { parse(text: string): chrono.ParsedResult[] };

/** English for every text with a digit; the others only where a month name of theirs may be (OTHER_MONTHS). */
// Casual, not strict: strict misses month and year ("March 2019"); the filter below drops the
// relative words casual adds ("today", "Tuesday").
const ENGLISH: Parser = chrono.casual;
const OTHER_LANGUAGES: readonly Parser[] = [chrono.de, chrono.fr, chrono.es, chrono.it, chrono.nl, chrono.pt, chrono.ja, chrono.zh, chrono.sv, chrono.fi].map(
  (l) => ('strict' in l ? (l as { strict: Parser }).strict : (l as Parser)),
);

/**
 * The first letters of the month names (and their abbreviations) of the other languages, and
 * the CJK date signs: a text without any cannot hold a date that only they would read.
 */
const OTHER_MONTHS =
  /(?<!\p{L})(?:jan|feb|fév|fev|mär|mar|maa|apr|avr|abr|mai|may|mag|mei|maj|jun|jui|giu|jul|lug|aug|aoû|ago|sep|set|okt|oct|ott|out|nov|dez|dec|déc|dic|gen|ene|tam|hel|huh|tou|kes|hei|elo|syy|lok|jou)|[年月日]/iu;

/** YYYYMMDD of the last two centuries, alone (not inside a longer number). */
const DICOM_DATE = /(?<![\p{L}\p{N}])(?:1[89]|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?![\p{L}\p{N}])/gu;

function isCalendarDate(r: chrono.ParsedResult): boolean {
  const c = r.start;
  if (!c.isCertain('month') || !(c.isCertain('day') || c.isCertain('year'))) return false;
  // "5/5" without a year is more often a ratio or a fraction ("5/5mm") than a date.
  return c.isCertain('year') || /\p{L}/u.test(r.text);
}

function spansOf(parser: Parser, text: string, out: TextSpan[]): void {
  for (const r of parser.parse(text)) {
    if (!isCalendarDate(r)) continue;
    // A time zone read into the date ("May 2019 CT": Central Time) is the modality: it stays.
    const zone = r.start.isCertain('timezoneOffset') ? /\s+[A-Z]{2,5}$/.exec(r.text) : null;
    out.push({ start: r.index, end: r.index + r.text.length - (zone ? zone[0].length : 0), kind: 'date' });
  }
}

/**
 * The dates found in texts seen lately, by text: a series repeats its descriptions and comments
 * in every instance, and the gate reads the engine's output again, so most texts come back. The
 * parses are the costly part of the free-text check (0.2-0.3 ms of an instance's CPU in the stack
 * bench's CT slices). Texts up to REMEMBERED_TEXT_MAX characters, REMEMBERED_TEXT_TOTAL in all;
 * each caller gets its own copy of the spans, so none can change what another gets. Like every value the engine
 * handles, the texts stay in this process's memory and are never logged.
 */
const REMEMBERED_TEXT_MAX = 1024;
const REMEMBERED_TEXT_TOTAL = 1 << 20;
const remembered = new Lru<{ text: string; spans: readonly TextSpan[] }>(REMEMBERED_TEXT_TOTAL, (e) => e.text.length + 64);

export function findDates(text: string): TextSpan[] {
  // Every spelling a parser reads as a calendar day holds a digit (numeral or day number).
  if (!/\d/.test(text)) return [];
  if (text.length > REMEMBERED_TEXT_MAX) return parseDates(text);
  const known = remembered.get(text);
  if (known) return known.spans.map((span) => ({ ...span }));
  const spans = parseDates(text);
  remembered.set(text, { text, spans: spans.map((span) => Object.freeze({ ...span })) });
  return spans;
}

function parseDates(text: string): TextSpan[] {
  const spans: TextSpan[] = [];
  for (const m of text.matchAll(DICOM_DATE)) spans.push({ start: m.index ?? 0, end: (m.index ?? 0) + m[0].length, kind: 'date' });
  spansOf(ENGLISH, text, spans);
  // The other languages cost ten parses: only for text holding one of their month names'
  // first letters or a CJK date sign ("4. März", "le 4 mars", "3月4日").
  if (OTHER_MONTHS.test(text)) for (const p of OTHER_LANGUAGES) spansOf(p, text, spans);
  return spans;
}
