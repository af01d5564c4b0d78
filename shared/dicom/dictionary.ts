import dictionaryData from './data/dictionary.json';

/** A PS3.6 dictionary entry. */
export interface DictionaryEntry {
  keyword: string;
  vr: string;
  vm: string;
  retired: boolean;
}

type RawEntry = [string, string, string, number];
const raw = dictionaryData as unknown as Record<string, RawEntry>;

const byTag = new Map<number, DictionaryEntry>();
const masked: { mask: TagMask; entry: DictionaryEntry }[] = [];
const byKeyword = new Map<string, number>();

for (const [key, [keyword, vr, vm, retired]] of Object.entries(raw)) {
  const entry: DictionaryEntry = { keyword, vr, vm, retired: retired === 1 };
  const mask = parseTagMask(key);
  if (mask) {
    masked.push({ mask, entry });
  } else {
    const tag = parseInt(key, 16) >>> 0;
    byTag.set(tag, entry);
    byKeyword.set(keyword, tag);
  }
}

/**
 * A tag pattern as PS3.6 and PS3.15 write repeating groups, with `x` for any hex digit
 * ("60xx3000", "50xxxxxx"): a tag matches when its other digits are equal.
 */
export interface TagMask {
  readonly mask: number;
  readonly value: number;
}

/** Parses "GGGGEEEE" holding at least one x (either case); undefined for anything else, a plain tag included. */
export function parseTagMask(text: string): TagMask | undefined {
  if (!/^[0-9A-Fa-fxX]{8}$/.test(text) || !/[xX]/.test(text)) return undefined;
  return {
    mask: parseInt(text.replace(/[0-9A-Fa-f]/g, 'F').replace(/[xX]/g, '0'), 16) >>> 0,
    value: parseInt(text.replace(/[xX]/g, '0'), 16) >>> 0,
  };
}

export function matchesTagMask(tag: number, m: TagMask): boolean {
  return ((tag & m.mask) >>> 0) === m.value;
}

/** Looks up a tag, including repeating groups such as (60xx,3000). Undefined for private and unknown tags. */
export function lookupTag(tag: number): DictionaryEntry | undefined {
  const exact = byTag.get(tag);
  if (exact) return exact;
  if (isPrivateTag(tag)) return undefined;
  for (const m of masked) if (matchesTagMask(tag, m.mask)) return m.entry;
  // Group length (gggg,0000) is UL for every group.
  if ((tag & 0xffff) === 0) return { keyword: 'GroupLength', vr: 'UL', vm: '1', retired: false };
  return undefined;
}

/** The tag of a keyword (`PatientName` -> 0x00100010), or undefined. */
export function tagOfKeyword(keyword: string): number | undefined {
  return byKeyword.get(keyword);
}

export function isPrivateTag(tag: number): boolean {
  return ((tag >>> 16) & 1) === 1;
}

/** Private creator elements are (gggg,0010-00FF) in an odd group. */
export function isPrivateCreatorTag(tag: number): boolean {
  const el = tag & 0xffff;
  return isPrivateTag(tag) && el >= 0x0010 && el <= 0x00ff;
}

/** Tags formatted so far: a header names the same few hundred tags again and again. */
const hexOfTag = new Map<number, string>();
const HEX_CACHE_MAX = 8192;

/** "GGGGEEEE", upper case, as DICOM JSON keys tags. */
export function tagToHex(tag: number): string {
  const t = tag >>> 0;
  let hex = hexOfTag.get(t);
  if (hex === undefined) {
    hex = t.toString(16).toUpperCase().padStart(8, '0');
    if (hexOfTag.size < HEX_CACHE_MAX) hexOfTag.set(t, hex);
  }
  return hex;
}

/** "(GGGG,EEEE)", as people write tags. */
export function tagToString(tag: number): string {
  const h = tagToHex(tag);
  return `(${h.slice(0, 4)},${h.slice(4)})`;
}

/** Parses "00100010", "(0010,0010)", "0010,0010" or a keyword into a tag; undefined when it is neither. */
export function parseTagOrKeyword(text: string): number | undefined {
  const hex = text.replace(/[(),\s]/g, '');
  if (/^[0-9A-Fa-f]{8}$/.test(hex)) return parseInt(hex, 16) >>> 0;
  return tagOfKeyword(text);
}
