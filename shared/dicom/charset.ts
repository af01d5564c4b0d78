/**
 * Text decoding and encoding by Specific Character Set (0008,0005), per DICOM PS3.3
 * C.12.1.1.2 and PS3.5 6.1. Values arrive as raw bytes (see dataset.ts) and are decoded
 * here rather than by dcmjs, whose ISO 2022 handling loses the G0/G1 state rules.
 *
 * Two families of terms:
 * - stand-alone variable-length codes (ISO_IR 192, GB18030, GBK): decoded whole by
 *   TextDecoder, since their trail bytes may look like delimiters (0x5C in GBK);
 * - everything else (default, the ISO 8859 sets, JIS X 0201, TIS 620 and all ISO 2022
 *   terms): an ISO 2022 state machine over G0 (GL bytes) and G1 (GR bytes) that honours
 *   escape sequences even in single-valued data, because real files carry escapes
 *   under single-valued terms often enough that refusing them would only lose text.
 */

import { TextDecoder } from 'util';

import { CHARSET_VRS, TEXT_VRS } from './dataset';

export const utf8Charset = 'ISO_IR 192';

const ESC = 0x1b;

/** A graphic character set that can be designated to G0 or G1. */
interface CodeSet {
  /** Bytes after ESC that designate it (PS3.3 Tables C.12-3, C.12-4; PS3.5 Annex H). */
  escape: string;
  element: 'G0' | 'G1';
  kind: 'ascii' | 'table' | 'katakana' | 'double';
  /** For 'table': WHATWG label whose upper half (0xA0..0xFF) is the G1 set. */
  label?: string;
  /** For 'double': the EUC decoder that the 7-bit/8-bit pairs are mapped into. */
  euc?: 'euc-jp' | 'euc-kr' | 'gbk';
  /** For 'double': a single-shift prefix in that EUC form (JIS X 0212 in EUC-JP). */
  prefix?: number;
  /** For 'double': 7-bit row/cell codes whose EUC decoder result is not the standard's. */
  overrides?: ReadonlyMap<number, string>;
}

const ASCII: CodeSet = { escape: '(B', element: 'G0', kind: 'ascii' };
// ISO-IR 14 differs from ASCII only at 0x5C (yen) and 0x7E (overline); decoding them as
// ASCII keeps 0x5C usable as the value delimiter, as the WHATWG Shift_JIS decoder does.
const JIS_ROMAN: CodeSet = { escape: '(J', element: 'G0', kind: 'ascii' };
const JIS_KATAKANA: CodeSet = { escape: ')I', element: 'G1', kind: 'katakana' };

function latinSet(final: string, label: string): CodeSet {
  return { escape: `-${final}`, element: 'G1', kind: 'table', label };
}

const IR100 = latinSet('A', 'iso-8859-1');
const IR101 = latinSet('B', 'iso-8859-2');
const IR109 = latinSet('C', 'iso-8859-3');
const IR110 = latinSet('D', 'iso-8859-4');
const IR126 = latinSet('F', 'iso-8859-7');
const IR127 = latinSet('G', 'iso-8859-6');
const IR138 = latinSet('H', 'iso-8859-8');
const IR144 = latinSet('L', 'iso-8859-5');
const IR148 = latinSet('M', 'iso-8859-9');
// TIS 620 is the upper half of windows-874 (the latter only adds 0x80..0x9F).
const IR166 = latinSet('T', 'windows-874');
const IR203 = latinSet('b', 'iso-8859-15');
// ICU's EUC tables follow the Microsoft code pages for a few characters; these restore
// the JIS X 0208 / JIS X 0212 / KS X 1001:1998 mappings (Unicode's JIS0208.TXT etc.),
// which is what iconv (dcmtk) and Python (pydicom) produce.
const IR87: CodeSet = {
  escape: '$B',
  element: 'G0',
  kind: 'double',
  euc: 'euc-jp',
  overrides: new Map([
    [0x2141, '\u301c'],
    [0x2142, '\u2016'],
    [0x215d, '\u2212'],
    [0x2171, '\u00a2'],
    [0x2172, '\u00a3'],
    [0x224c, '\u00ac'],
  ]),
};
const IR159: CodeSet = {
  escape: '$(D',
  element: 'G0',
  kind: 'double',
  euc: 'euc-jp',
  prefix: 0x8f,
  overrides: new Map([[0x2237, '~']]),
};
const IR149: CodeSet = {
  escape: '$)C',
  element: 'G1',
  kind: 'double',
  euc: 'euc-kr',
  overrides: new Map([
    [0x2266, '\u20ac'],
    [0x2267, '\u00ae'],
  ]),
};
// GB 2312 in EUC form is a subset of GBK, so the GBK decoder reads it exactly.
const IR58: CodeSet = { escape: '$)A', element: 'G1', kind: 'double', euc: 'gbk' };

const ALL_SETS: readonly CodeSet[] = [
  ASCII, JIS_ROMAN, JIS_KATAKANA, IR100, IR101, IR109, IR110, IR126, IR127, IR138, IR144, IR148, IR166, IR203,
  IR87, IR159, IR149, IR58,
];
const SET_BY_ESCAPE = new Map(ALL_SETS.map((s) => [s.escape, s]));

/** What a defined term designates initially (value 1) or makes available (value 2..n). */
interface TermDef {
  g0?: CodeSet;
  g1?: CodeSet;
}

/** Stand-alone terms: PS3.5 6.1.2.5.4 d, no code extension allowed. */
const STAND_ALONE: ReadonlyMap<string, string> = new Map([
  ['ISO IR 192', 'utf-8'],
  ['GB18030', 'gb18030'],
  ['GBK', 'gbk'],
]);

const ISO2022_TERMS: ReadonlyMap<string, TermDef> = new Map<string, TermDef>([
  ['', { g0: ASCII }],
  ['IR 6', { g0: ASCII }],
  ['IR 13', { g0: JIS_ROMAN, g1: JIS_KATAKANA }],
  ['IR 100', { g0: ASCII, g1: IR100 }],
  ['IR 101', { g0: ASCII, g1: IR101 }],
  ['IR 109', { g0: ASCII, g1: IR109 }],
  ['IR 110', { g0: ASCII, g1: IR110 }],
  ['IR 126', { g0: ASCII, g1: IR126 }],
  ['IR 127', { g0: ASCII, g1: IR127 }],
  ['IR 138', { g0: ASCII, g1: IR138 }],
  ['IR 144', { g0: ASCII, g1: IR144 }],
  ['IR 148', { g0: ASCII, g1: IR148 }],
  ['IR 166', { g0: ASCII, g1: IR166 }],
  ['IR 203', { g0: ASCII, g1: IR203 }],
  ['IR 87', { g0: IR87 }],
  ['IR 159', { g0: IR159 }],
  ['IR 149', { g1: IR149 }],
  ['IR 58', { g1: IR58 }],
]);

/**
 * Canonical key for a term. Files in the wild write 'ISO-IR 100', 'iso_ir 100' or
 * 'ISO 2022 IR 100' where a single-valued 'ISO_IR 100' is meant, so the ISO_IR / ISO 2022
 * distinction is dropped: the decoder honours escapes either way.
 */
function termKey(term: string): string {
  const t = term.trim().toUpperCase().replace(/[_-]/g, ' ').replace(/\s+/g, ' ');
  const m = /^ISO (?:2022 )?IR ?(\d+)$/.exec(t);
  if (m) return m[1] === '192' ? 'ISO IR 192' : `IR ${m[1]}`;
  return t;
}

/**
 * Splits a Specific Character Set value into its terms. An empty value 1 (as in
 * '\ISO 2022 IR 87') stays '' and, like an absent attribute ([]), means ISO-IR 6.
 */
export function parseSpecificCharacterSet(value: string | undefined): string[] {
  if (value === undefined) return [];
  const cleaned = value.replace(/\0/g, '');
  if (cleaned.trim() === '') return [];
  return cleaned.split('\\').map((t) => t.trim());
}

/** Terms this module does not know; the decoder treats them as the default repertoire. */
export function unsupportedCharsets(charsets: string[]): string[] {
  return charsets.filter((t) => {
    const k = termKey(t);
    return !STAND_ALONE.has(k) && !ISO2022_TERMS.has(k);
  });
}

/** True when every byte is 7-bit and not ESC (an escape means code extension is in use). */
export function isAsciiOnly(bytes: Uint8Array): boolean {
  // An indexed loop: the array iterator of `for...of` is several times slower until optimized.
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b >= 0x80 || b === ESC) return false;
  }
  return true;
}

const REPLACEMENT = '\ufffd';

const decoders = new Map<string, TextDecoder>();
function decoder(label: string): TextDecoder {
  let d = decoders.get(label);
  if (!d) {
    d = new TextDecoder(label, { fatal: false });
    decoders.set(label, d);
  }
  return d;
}

/**
 * Upper halves (0xA0..0xFF) of the ISO 8859 style sets. Built from TextDecoder, whose
 * WHATWG labels may alias windows-125x; the windows pages agree with ISO 8859 from 0xA0
 * up, and 0x80..0x9F are C1 controls in ISO 8859, so only the upper half is taken.
 */
const upperHalves = new Map<string, string[]>();
function upperHalf(label: string): string[] {
  let table = upperHalves.get(label);
  if (!table) {
    const d = decoder(label);
    table = [];
    for (let b = 0xa0; b <= 0xff; b++) {
      const ch = d.decode(Uint8Array.of(b));
      // ICU fills the holes of windows-874 (undefined in TIS 620) with private-use code points.
      table.push(/[\ue000-\uf8ff]/.test(ch) ? REPLACEMENT : ch);
    }
    upperHalves.set(label, table);
  }
  return table;
}

/** Accumulates output, batching runs of EUC-form bytes so each run is decoded once. */
class Output {
  private parts: string[] = [];
  private pending: number[] = [];
  private pendingLabel = '';

  text(s: string): void {
    this.flush();
    this.parts.push(s);
  }

  euc(label: string, ...bytes: number[]): void {
    if (label !== this.pendingLabel) this.flush();
    this.pendingLabel = label;
    this.pending.push(...bytes);
  }

  flush(): void {
    if (this.pending.length > 0) this.parts.push(decoder(this.pendingLabel).decode(Uint8Array.from(this.pending)));
    this.pending = [];
    this.pendingLabel = '';
  }

  toString(): string {
    this.flush();
    return this.parts.join('');
  }
}

/** VRs holding one value, in which 0x5C is an ordinary character rather than a delimiter. */
const SINGLE_VALUED_TEXT_VRS: ReadonlySet<string> = new Set(['LT', 'ST', 'UT']);

interface InitialState {
  g0: CodeSet;
  g1?: CodeSet;
  /** Reads GR bytes while no G1 is designated (lenient; see initialState). */
  fallbackG1?: CodeSet;
}

/**
 * PS3.5 6.1.2.5.4: value 1 is designated initially (ISO-IR 6 with no G1 when empty).
 * A multi-byte G0 set as value 1 is a labelling mistake (Table C.12-4 sets belong in
 * values 2..n); designating it would turn ASCII into JIS pairs, so G0 stays ASCII then.
 * Writers that omit the escape before a multi-byte G1 set (seen with Korean data) are
 * met by reading undesignated GR bytes with the first G1 set the term list offers.
 */
function initialState(charsets: string[]): InitialState {
  const def = ISO2022_TERMS.get(termKey(charsets[0] ?? ''));
  const g0 = def?.g0 && def.g0.kind !== 'double' ? def.g0 : ASCII;
  const fallbackG1 = charsets
    .slice(1)
    .map((t) => ISO2022_TERMS.get(termKey(t))?.g1)
    .find((s) => s !== undefined);
  return { g0, g1: def?.g1, fallbackG1 };
}

function decodeIso2022(bytes: Uint8Array, initial: InitialState, vr: string): string {
  const out = new Output();
  let g0 = initial.g0;
  let g1 = initial.g1;
  const reset = (): void => {
    g0 = initial.g0;
    g1 = initial.g1;
  };
  const isPN = vr === 'PN';
  const backslashDelimits = !SINGLE_VALUED_TEXT_VRS.has(vr);

  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;

    if (b === ESC) {
      // ESC, intermediates 0x20..0x2F, one final byte 0x30..0x7E (ISO 2022 13.1).
      let j = i + 1;
      while (j < bytes.length && (bytes[j] as number) >= 0x20 && (bytes[j] as number) <= 0x2f) j++;
      const final = bytes[j];
      if (final === undefined || final < 0x30 || final > 0x7e) {
        out.text(REPLACEMENT);
        i = j;
        continue;
      }
      const set = SET_BY_ESCAPE.get(String.fromCharCode(...bytes.subarray(i + 1, j + 1)));
      if (set?.element === 'G0') g0 = set;
      else if (set) g1 = set;
      else out.text(REPLACEMENT);
      i = j + 1;
      continue;
    }

    if (b < 0x20 || b === 0x7f) {
      // PS3.5 6.1.2.5.3: value 1's sets are active again before any control but ESC.
      out.text(String.fromCharCode(b));
      reset();
      i++;
      continue;
    }

    if (b < 0x80) {
      if (g0.kind === 'double' && b !== 0x20) {
        const b2 = bytes[i + 1];
        if (b2 !== undefined && b2 >= 0x21 && b2 <= 0x7e) {
          const euc = g0.euc ?? 'euc-jp';
          const fixed = g0.overrides?.get((b << 8) | b2);
          if (fixed !== undefined) out.text(fixed);
          else if (g0.prefix !== undefined) out.euc(euc, g0.prefix, b | 0x80, b2 | 0x80);
          else out.euc(euc, b | 0x80, b2 | 0x80);
          i += 2;
        } else {
          out.text(REPLACEMENT);
          i++;
        }
        continue;
      }
      out.text(String.fromCharCode(b));
      // Delimiters only exist while G0 is single-byte; inside a JIS X 0208 run these
      // bytes are halves of characters.
      if ((b === 0x5c && backslashDelimits) || (isPN && (b === 0x5e || b === 0x3d))) reset();
      i++;
      continue;
    }

    // GR (and C1) bytes: interpreted by G1.
    const g1Now = g1 ?? initial.fallbackG1;
    if (!g1Now) {
      // No G1 in the default repertoire; latin1 keeps stray 8-bit bytes visible.
      out.text(String.fromCharCode(b));
      i++;
    } else if (g1Now.kind === 'table') {
      out.text(b >= 0xa0 ? (upperHalf(g1Now.label ?? 'iso-8859-1')[b - 0xa0] as string) : String.fromCharCode(b));
      i++;
    } else if (g1Now.kind === 'katakana') {
      // JIS X 0201 katakana 0xA1..0xDF are U+FF61..U+FF9F in order.
      out.text(b >= 0xa1 && b <= 0xdf ? String.fromCharCode(0xff61 + b - 0xa1) : REPLACEMENT);
      i++;
    } else if (g1Now.kind === 'double') {
      const b2 = bytes[i + 1];
      if (b >= 0xa1 && b <= 0xfe && b2 !== undefined && b2 >= 0xa1 && b2 <= 0xfe) {
        const fixed = g1Now.overrides?.get(((b & 0x7f) << 8) | (b2 & 0x7f));
        if (fixed !== undefined) out.text(fixed);
        else out.euc(g1Now.euc ?? 'euc-kr', b, b2);
        i += 2;
      } else {
        out.text(REPLACEMENT);
        i++;
      }
    } else {
      out.text(String.fromCharCode(b));
      i++;
    }
  }
  return out.toString();
}

/**
 * Decodes one raw text value (possibly multi-valued; backslashes are kept) to Unicode.
 * Never throws: undecodable bytes become U+FFFD, unknown terms fall back to ISO-IR 6
 * with 8-bit bytes read as latin1 (see unsupportedCharsets to report them).
 */
export function decodeText(bytes: Uint8Array, charsets: string[], vr: string): string {
  // Seven-bit text without escapes reads the same in every DICOM character set (G0 is ASCII
  // unless an escape changes it): the common case, and a cheap one.
  if (isAsciiOnly(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  // PS3.5 6.1.2.3: AE, CS, DA, UI etc. use the default repertoire whatever the data set says.
  if (TEXT_VRS.has(vr) && !CHARSET_VRS.has(vr)) return decodeIso2022(bytes, { g0: ASCII }, vr);
  const standAlone = STAND_ALONE.get(termKey(charsets[0] ?? ''));
  if (standAlone) return decoder(standAlone).decode(bytes);
  return decodeIso2022(bytes, initialState(charsets), vr);
}

const reverseTables = new Map<string, Map<number, number>>();
function reverseUpperHalf(label: string): Map<number, number> {
  let rev = reverseTables.get(label);
  if (!rev) {
    rev = new Map();
    upperHalf(label).forEach((ch, idx) => {
      if (ch !== REPLACEMENT && ch.length === 1) rev?.set(ch.charCodeAt(0), 0xa0 + idx);
    });
    reverseTables.set(label, rev);
  }
  return rev;
}

/**
 * Encodes text in the data set's character set without escape sequences: ASCII, the
 * single-byte sets of value 1 (initially designated, so no escape is needed), JIS X 0201
 * katakana, or UTF-8. Returns undefined when that is not possible (a character outside
 * the set, GB18030/GBK, which TextEncoder cannot write, or text that would need ISO 2022
 * multi-byte escapes), so the caller can move the data set to ISO_IR 192.
 */
export function encodeText(text: string, charsets: string[]): Uint8Array | undefined {
  const key = termKey(charsets[0] ?? '');
  if (STAND_ALONE.get(key) === 'utf-8') return new Uint8Array(Buffer.from(text, 'utf8'));

  const out = new Uint8Array(text.length);
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) ascii = false;
    out[i] = c;
  }
  // 7-bit text reads the same in every supported set, ESC aside: it would start an escape.
  if (ascii) return text.includes('\x1b') ? undefined : out;

  const g1 = ISO2022_TERMS.get(key)?.g1;
  if (!g1) return undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    let byte: number | undefined;
    if (g1.kind === 'table') {
      byte = c < 0xa0 ? c : reverseUpperHalf(g1.label ?? 'iso-8859-1').get(c);
    } else if (g1.kind === 'katakana' && c >= 0xff61 && c <= 0xff9f) {
      byte = 0xa1 + c - 0xff61;
    }
    if (byte === undefined) return undefined;
    out[i] = byte;
  }
  return out;
}
