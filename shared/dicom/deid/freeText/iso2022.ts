/**
 * Redaction inside a value written with ISO 2022 escapes (Japanese, Korean and other multi-byte
 * sets): the encoder (charset.ts encodeText) writes no escapes, so the value is cut at character
 * boundaries in its own bytes and the placeholder written in ASCII, with the escape that was in
 * force put back before the kept text that follows. The result is decoded again and compared
 * with the redacted text; anything else gives undefined (the caller then empties the value).
 */
import { decodeText } from '../../charset';

const ESC = 0x1b;
/** Values longer than this are not cut (each character boundary costs one decode of a prefix). */
const MAX_BYTES = 4096;
const TO_ASCII = [ESC, 0x28, 0x42];

/** The G0 designation in force before each byte (the escape's bytes; undefined: the initial set). */
function g0States(bytes: Uint8Array): (number[] | undefined)[] {
  const states: (number[] | undefined)[] = [];
  let g0: number[] | undefined;
  for (let i = 0; i < bytes.length; i++) {
    states.push(g0);
    const b = bytes[i]!;
    if (b === ESC) {
      let j = i + 1;
      while (j < bytes.length && bytes[j]! >= 0x20 && bytes[j]! <= 0x2f) j++;
      const seq = [...bytes.subarray(i, Math.min(j + 1, bytes.length))];
      const inter = seq.slice(1, -1);
      // ESC ( F, ESC $ F, ESC $ ( F designate G0; ESC ) F, ESC $ ) F, ESC - F designate G1.
      const isG0 = (inter.length === 1 && (inter[0] === 0x28 || inter[0] === 0x24)) || (inter.length === 2 && inter[0] === 0x24 && inter[1] === 0x28);
      if (isG0) g0 = seq[seq.length - 1] === 0x42 && inter[0] === 0x28 ? undefined : seq;
      for (let k = i + 1; k < seq.length && k < bytes.length; k++) states.push(g0);
      i += seq.length - 1;
    } else if (b < 0x20) {
      g0 = undefined; // control characters return to the initial set (PS3.5 6.1.2.5.3)
    }
  }
  states.push(g0);
  return states;
}

/**
 * The value's bytes with each span of its decoded text (UTF-16 offsets) replaced by the ASCII
 * `replacement` of the span; undefined when the value cannot be cut safely.
 */
export function redactIso2022(
  bytes: Uint8Array,
  charsets: string[],
  vr: string,
  spans: readonly { start: number; end: number }[],
  replacement: (start: number, end: number) => string,
): Uint8Array | undefined {
  if (bytes.length > MAX_BYTES) return undefined;
  const text = decodeText(bytes, charsets, vr);
  // boundary[i]: the byte offset where character i starts (escapes before it included).
  const boundary: number[] = [0];
  let k = 0;
  for (let i = 1; i <= text.length; i++) {
    while (k < bytes.length) {
      k++;
      const prefix = decodeText(bytes.subarray(0, k), charsets, vr);
      if (prefix.length >= i && prefix.slice(0, i) === text.slice(0, i)) break;
    }
    boundary.push(k);
  }
  if (boundary.length !== text.length + 1) return undefined;
  const states = g0States(bytes);
  const parts: number[] = [];
  let at = 0;
  let expected = '';
  for (const s of spans) {
    if (s.start < at || s.end > text.length) return undefined;
    const from = boundary[s.start]!;
    const to = boundary[s.end]!;
    parts.push(...bytes.subarray(boundary[at]!, from));
    if (states[from] !== undefined) parts.push(...TO_ASCII);
    const r = replacement(s.start, s.end);
    if (!/^[\x20-\x7e]*$/.test(r)) return undefined;
    parts.push(...Buffer.from(r, 'latin1'));
    const after = states[to];
    if (after !== undefined && to < bytes.length && bytes[to] !== ESC) parts.push(...after);
    expected += text.slice(at, s.start) + r;
    at = s.end;
  }
  parts.push(...bytes.subarray(boundary[at]!));
  expected += text.slice(at);
  const out = new Uint8Array(parts);
  return decodeText(out, charsets, vr) === expected ? out : undefined;
}
