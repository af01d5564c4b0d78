/**
 * Identifiers in free text: SSNs, phone and fax numbers (libphonenumber-js), emails, URLs, IP
 * addresses, street addresses and ZIP codes, long digit runs (record and accession numbers)
 * and UIDs. Patterns are anchored on digits or on "@" and "://", so a text without them costs
 * one test.
 */
import { findPhoneNumbersInText } from 'libphonenumber-js';

import type { DetectContext, TextKind, TextSpan } from './detector';

interface Pattern {
  kind: TextKind;
  re: RegExp;
  /** The capture group that is the span (the whole match when absent). */
  group?: number;
  keep?: (match: string) => boolean;
  /** A character the text must hold for the pattern to be tried. */
  needs?: string;
}

/** Street suffixes, capitalised as in an address ("12 Main St", "4 ELM STREET"). */
const STREET_SUFFIX =
  'Street|STREET|St|ST|Avenue|AVENUE|Ave|AVE|Road|ROAD|Rd|RD|Boulevard|BOULEVARD|Blvd|BLVD|Lane|LANE|Ln|Drive|DRIVE|Court|COURT|Way|WAY|Place|PLACE|Terrace|Parkway|Pkwy|Highway|Hwy|Square';
const US_STATE =
  'AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY';

function isIpv4(s: string): boolean {
  return s.split('.').every((p) => Number(p) <= 255 && !/^0\d/.test(p));
}

const PATTERNS: readonly Pattern[] = [
  { kind: 'email', needs: '@', re: /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)+/gu },
  { kind: 'url', needs: '/', re: /\b(?:https?|ftp|dicomweb|wado|file):\/\/[^\s<>"]+|\bwww\.[^\s<>"]+/giu },
  { kind: 'ssn', re: /(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])/g },
  { kind: 'ssn', re: /\b(?:SSN|SS#|social security(?: number| no\.?)?)\s*[:#]?\s*(\d{9})\b/giu, group: 1 },
  // A dotted number of four parts each below 256 is an address; longer ones are UIDs (below).
  { kind: 'ip', re: /(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])/g, keep: isIpv4 },
  { kind: 'ip', re: /(?<![\p{L}\p{N}:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![\p{L}\p{N}:])/giu },
  { kind: 'address', re: new RegExp(`(?<![\\p{L}\\p{N}])\\d{1,5}[A-Za-z]?\\s+(?:\\p{Lu}[\\p{L}'.-]*\\s+){1,4}(?:${STREET_SUFFIX})\\b\\.?`, 'gu') },
  // German-style compounds, number after the street: "Hauptstraße 5", "Lindenweg 12a".
  { kind: 'address', re: /(?<![\p{L}\p{N}])\p{Lu}[\p{L}-]*(?:straße|strasse|str\.|weg|gasse|allee|platz)\s+\d{1,4}[a-z]?(?![\p{L}\p{N}])/gu },
  { kind: 'address', re: /\b(?:P\.?\s?O\.?\s?Box|Postfach)\s+\d+/giu },
  { kind: 'zip', re: new RegExp(`\\b(?:${US_STATE})\\s+\\d{5}(?:-\\d{4})?(?!\\d)`, 'g') },
  { kind: 'zip', re: /(?<![\d-])\d{5}-\d{4}(?![\d-])/g },
  { kind: 'zip', re: /\b(?:ZIP|postcode|postal code|PLZ)\s*[:#]?\s*([A-Z0-9][A-Z0-9 -]{2,9}[A-Z0-9])\b/giu, group: 1 },
  // A labelled number: the label says what it is, whatever its length.
  {
    kind: 'mrn',
    re: /\b(?:MRN|MR#|MR No\.?|medical record(?: number| no\.?)?|patient ID|PID|accession(?: number| no\.?)?|acc(?:ession)?#|case(?: no\.?| number)|chart(?: no\.?| number))\s*[:#]?\s*([A-Z]{0,4}[-]?\d[\dA-Z-]{2,})/giu,
    group: 1,
  },
  // Long digit runs (with an optional short letter prefix or suffix): record, accession and
  // account numbers. Six digits or more, not part of a decimal or dotted number.
  { kind: 'mrn', re: /(?<![\p{L}\p{N}.,])[A-Z]{0,3}\d{6,}[A-Z]?(?![\p{L}\p{N}]|[.,]\d)/gu },
];

/** A dotted number of 4 or more parts, 10 characters or more: a UID written into text. */
const UID_IN_TEXT = /(?<![\d.])[0-2](?:\.(?:0|[1-9]\d*)){3,}(?![\d.]*\d)/g;

const PHONE_SHAPE = /\+\s?\d|\d\)?[\s./-]\d{2,4}[\s.-]\d{2,4}/;

export function findIdentifiers(text: string, context: DetectContext): TextSpan[] {
  const hasDigit = /\d/.test(text);
  if (!hasDigit && !text.includes('@') && !text.includes('://') && !/www\./i.test(text)) return [];
  const spans: TextSpan[] = [];
  for (const p of PATTERNS) {
    if (p.needs !== undefined ? !text.includes(p.needs) && !/www\./i.test(text) : !hasDigit) continue;
    p.re.lastIndex = 0;
    for (const m of text.matchAll(p.re)) {
      const whole = m[0];
      if (p.keep && !p.keep(whole)) continue;
      const part = p.group === undefined ? whole : m[p.group];
      if (part === undefined) continue;
      const start = (m.index ?? 0) + (p.group === undefined ? 0 : whole.indexOf(part));
      spans.push({ start, end: start + part.length, kind: p.kind });
    }
  }
  if (hasDigit) {
    for (const m of text.matchAll(UID_IN_TEXT)) {
      const uid = m[0];
      if (uid.length < 10 || (uid.split('.').length === 4 && isIpv4(uid))) continue;
      if (uid.startsWith('1.2.840.10008.') || context.isAllowedUid?.(uid)) continue;
      spans.push({ start: m.index ?? 0, end: (m.index ?? 0) + uid.length, kind: 'uid' });
    }
    // libphonenumber-js costs 0.1-1 ms a text: it sees only text with digit groups the way
    // phone numbers are written ("617-555-0142", "(617) 555 0142", "+44 20 ..."); a bare run of
    // digits is found above as a long number.
    if (PHONE_SHAPE.test(text) && (text.match(/\d/g)?.length ?? 0) >= 7) {
      for (const p of findPhoneNumbersInText(text, { defaultCountry: 'US' })) {
        const raw = text.slice(p.startsAt, p.endsAt);
        // A dotted number or a date is not a phone number; those have their own kinds.
        if (/^\d+(?:\.\d+){2,}$/.test(raw)) continue;
        // Digits of a longer number (a UID, a long run) are not a phone number either.
        if (/[\d.]$/.test(text.slice(0, p.startsAt)) || /^\.?\d/.test(text.slice(p.endsAt))) continue;
        spans.push({ start: p.startsAt, end: p.endsAt, kind: 'phone' });
      }
    }
  }
  return spans;
}
