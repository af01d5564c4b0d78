import { readFileSync } from 'fs';
import { join } from 'path';

import {
  decodeText,
  encodeText,
  isAsciiOnly,
  parseSpecificCharacterSet,
  unsupportedCharsets,
  utf8Charset,
} from '../../../shared/dicom/charset';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb');
const ESC = 0x1b;

const bytes = (...parts: (number | string)[]): Uint8Array =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === 'number' ? [p] : Array.from(Buffer.from(p, 'latin1')))));

/**
 * Finds an explicit VR little endian element with a 2-byte length by its tag and VR bytes.
 * Enough for these small fixtures and keeps the test independent of the parser.
 */
function findElement(buf: Buffer, tag: number, vr: string, before = buf.length): { at: number; value: Uint8Array } | undefined {
  const pattern = Buffer.alloc(6);
  pattern.writeUInt16LE(tag >>> 16, 0);
  pattern.writeUInt16LE(tag & 0xffff, 2);
  pattern.write(vr, 4, 'latin1');
  const at = buf.lastIndexOf(pattern, before - 1);
  if (at < 0) return undefined;
  const len = buf.readUInt16LE(at + 6);
  return { at, value: new Uint8Array(buf.subarray(at + 8, at + 8 + len)) };
}

/** The PN value and the Specific Character Set in force for it (the nearest one before it). */
function fixtureValue(name: string, tag = 0x00100010): { value: Uint8Array; charsets: string[] } {
  const buf = readFileSync(join(FIXTURES, `charset_files__${name}.dcm`));
  // These fixtures are Explicit VR Little Endian (1.2.840.10008.1.2.1).
  expect(buf.includes(Buffer.from('1.2.840.10008.1.2.1\0', 'latin1'))).toBe(true);
  const pn = findElement(buf, tag, 'PN');
  if (!pn) throw new Error(`no PN ${tag.toString(16)} in ${name}`);
  const cs = findElement(buf, 0x00080005, 'CS', pn.at);
  const csText = cs ? Buffer.from(cs.value).toString('latin1') : undefined;
  return { value: pn.value, charsets: parseSpecificCharacterSet(csText) };
}

describe('parseSpecificCharacterSet', () => {
  it('returns no terms for an absent or blank attribute', () => {
    expect(parseSpecificCharacterSet(undefined)).toEqual([]);
    expect(parseSpecificCharacterSet('')).toEqual([]);
    expect(parseSpecificCharacterSet('  ')).toEqual([]);
  });

  it('splits on backslash and trims padding, keeping an empty value 1 as the default repertoire', () => {
    expect(parseSpecificCharacterSet('ISO_IR 100 ')).toEqual(['ISO_IR 100']);
    expect(parseSpecificCharacterSet('\\ISO 2022 IR 87 ')).toEqual(['', 'ISO 2022 IR 87']);
    expect(parseSpecificCharacterSet('ISO 2022 IR 13\\ISO 2022 IR 87\0')).toEqual(['ISO 2022 IR 13', 'ISO 2022 IR 87']);
  });

  it('keeps unknown terms, which unsupportedCharsets reports', () => {
    const terms = parseSpecificCharacterSet('ISO_IR 999\\ISO 2022 IR 149');
    expect(terms).toEqual(['ISO_IR 999', 'ISO 2022 IR 149']);
    expect(unsupportedCharsets(terms)).toEqual(['ISO_IR 999']);
    expect(unsupportedCharsets(['', 'ISO_IR 192', 'GB18030', 'GBK', 'ISO 2022 IR 58', 'ISO_IR 203'])).toEqual([]);
  });
});

describe('decodeText with the pydicom charset fixtures', () => {
  // Expected names: pydicom 2.3 (Debian) decodes these files to the same strings, and they
  // are the PS3.5 Annex H (Japanese) and Annex I (Korean) examples.
  const cases: [string, string[], string][] = [
    ['chrFren', ['ISO_IR 100'], 'Buc^Jérôme'],
    ['chrFrenMulti', ['ISO_IR 100'], 'Buc^Jérôme'],
    ['chrGerm', ['ISO_IR 100'], 'Äneas^Rüdiger'],
    ['chrGreek', ['ISO_IR 126'], 'Διονυσιος'],
    // The Latin c, e, y, p in this name are really ASCII in the file.
    ['chrRuss', ['ISO_IR 144'], '\u041b\u044e\u043ace\u043c\u0431yp\u0433'],
    ['chrH31', ['', 'ISO 2022 IR 87'], 'Yamada^Tarou=山田^太郎=やまだ^たろう'],
    ['chrI2', ['', 'ISO 2022 IR 149'], 'Hong^Gildong=洪^吉洞=홍^길동'],
    ['chrX1', ['ISO_IR 192'], 'Wang^XiaoDong=王^小東='],
    ['chrSQEncoding', ['ISO 2022 IR 13', 'ISO 2022 IR 87'], 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう'],
  ];

  it.each(cases)('decodes the PatientName of %s with its Specific Character Set %j', (name, expectedCharsets, expected) => {
    const { value, charsets } = fixtureValue(name);
    expect(charsets).toEqual(expectedCharsets);
    expect(decodeText(value, charsets, 'PN').trimEnd()).toBe(expected);
  });

  it('keeps the value delimiter between the values of a multi-valued PN (chrFrenMulti OtherPatientNames)', () => {
    const { value, charsets } = fixtureValue('chrFrenMulti', 0x00101001);
    expect(decodeText(value, charsets, 'PN').trimEnd()).toBe('Buc^Jérôme\\Buc^Jérôme');
  });
});

describe('decodeText, single-byte character sets', () => {
  it('reads the default repertoire as ASCII and stray 8-bit bytes as latin1 instead of failing', () => {
    expect(decodeText(bytes('Doe^John'), [], 'PN')).toBe('Doe^John');
    expect(decodeText(bytes('caf', 0xe9), [''], 'LO')).toBe('café');
    expect(decodeText(bytes('caf', 0xe9), ['ISO_IR 6'], 'LO')).toBe('café');
  });

  const singleByte: [string, number, string][] = [
    ['ISO_IR 100', 0xe9, '\u00e9'],
    ['ISO_IR 101', 0xb1, '\u0105'],
    ['ISO_IR 109', 0xa1, '\u0126'],
    ['ISO_IR 110', 0xa2, '\u0138'],
    ['ISO_IR 144', 0xb0, '\u0410'],
    ['ISO_IR 127', 0xc7, '\u0627'],
    ['ISO_IR 126', 0xc4, '\u0394'],
    ['ISO_IR 138', 0xe0, '\u05d0'],
    ['ISO_IR 148', 0xd0, '\u011e'],
    ['ISO_IR 148', 0xfd, '\u0131'],
    ['ISO_IR 203', 0xa4, '\u20ac'],
    ['ISO_IR 166', 0xa1, '\u0e01'],
    ['ISO_IR 13', 0xb1, '\uff71'],
  ];

  it.each(singleByte)('decodes %s byte 0x%s to its ISO 8859 / TIS 620 / JIS X 0201 character', (term, byte, expected) => {
    expect(decodeText(bytes('A', byte, 'z'), [term], 'LO')).toBe(`A${expected}z`);
  });

  it('decodes the ISO 2022 form of a single-byte term like the plain one', () => {
    expect(decodeText(bytes(0xc4), ['ISO 2022 IR 126'], 'LO')).toBe('Δ');
  });

  it('accepts common misspellings of the defined terms', () => {
    expect(decodeText(bytes(0xe9), ['ISO-IR 100'], 'LO')).toBe('é');
    expect(decodeText(bytes(0xe9), ['iso_ir 100'], 'LO')).toBe('é');
    expect(decodeText(bytes(0xe7, 0x8e, 0x8b), ['ISO-IR 192'], 'LO')).toBe('王');
  });

  it('keeps ISO 8859 C1 positions as C1 controls rather than windows-125x characters', () => {
    expect(decodeText(bytes(0x80, 0x93), ['ISO_IR 100'], 'LT')).toBe('\u0080\u0093');
  });

  it('replaces code points TIS 620 leaves undefined', () => {
    expect(decodeText(bytes(0xdb, 0xfc), ['ISO_IR 166'], 'LO')).toBe('\ufffd\ufffd');
  });

  it('decodes 8-bit JIS X 0201 (ISO_IR 13): romaji in GL, half-width katakana in GR', () => {
    expect(decodeText(bytes(0xd4, 0xcf, 0xc0, 0xde, '^', 0xc0, 0xdb, 0xb3), ['ISO_IR 13'], 'PN')).toBe('ﾔﾏﾀﾞ^ﾀﾛｳ');
  });

  it('falls back to the default repertoire for an unknown term', () => {
    expect(decodeText(bytes('x', 0xe9), ['ISO_IR 999'], 'LO')).toBe('xé');
  });

  it('decodes VRs outside the Specific Character Set scope (CS, UI, ...) in the default repertoire', () => {
    expect(decodeText(bytes('ORIGINAL\\PRIMARY'), ['ISO_IR 144'], 'CS')).toBe('ORIGINAL\\PRIMARY');
    expect(decodeText(bytes(0xb0), ['ISO_IR 144'], 'CS')).toBe('\u00b0');
  });
});

describe('decodeText, stand-alone multi-byte character sets', () => {
  it('decodes ISO_IR 192 as UTF-8 and replaces malformed sequences', () => {
    expect(decodeText(bytes(0xe7, 0x8e, 0x8b, '^', 0xe5, 0xb0, 0x8f, 0xe6, 0x9d, 0xb1), [utf8Charset], 'PN')).toBe('王^小東');
    expect(decodeText(bytes('a', 0xff, 'b'), ['ISO_IR 192'], 'LO')).toBe('a\ufffdb');
  });

  it('decodes GB18030 including its four-byte sequences', () => {
    expect(decodeText(bytes(0xcd, 0xf5, 0xa2, 0xe3, 0x94, 0x39, 0xfc, 0x36), ['GB18030'], 'LO')).toBe('王€😀');
  });

  it('does not mistake a GBK trail byte 0x5C for the value delimiter', () => {
    expect(decodeText(bytes(0x95, 0x5c, '\\', 0xcd, 0xf5), ['GBK'], 'LO')).toBe('昞\\王');
    expect(decodeText(bytes(0x95, 0x5c), ['GB18030'], 'LO')).toBe('昞');
  });
});

describe('decodeText, ISO 2022 code extensions', () => {
  const toJis = (s: string): number[] => [ESC, 0x24, 0x42, ...Buffer.from(s, 'latin1'), ESC, 0x28, 0x42];

  it('decodes JIS X 0208 (ISO 2022 IR 87) in each PN component group (PS3.5 H.3.1)', () => {
    const pn = bytes('Yamada^Tarou=', ...toJis(';3ED'), '^', ...toJis('B@O:'), '=', ...toJis('$d$^$@'), '^', ...toJis('$?$m$&'));
    expect(decodeText(pn, ['', 'ISO 2022 IR 87'], 'PN')).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
  });

  it('maps JIS X 0208 punctuation to the JIS standard code points, not the Microsoft ones', () => {
    expect(decodeText(bytes(...toJis('!A!]')), ['', 'ISO 2022 IR 87'], 'LO')).toBe('\u301c\u2212');
  });

  it('decodes JIS X 0212 (ISO 2022 IR 159) via the EUC-JP 0x8F single shift', () => {
    expect(decodeText(bytes(ESC, 0x24, 0x28, 0x44, 0x30, 0x21, ESC, 0x28, 0x42, 'a'), ['', 'ISO 2022 IR 159'], 'LO')).toBe('丂a');
  });

  it('decodes JIS X 0201 katakana designated to G1 by ESC ) I with ISO 2022 IR 13', () => {
    expect(decodeText(bytes(ESC, 0x29, 0x49, 0xb1), ['', 'ISO 2022 IR 13'], 'LO')).toBe('ｱ');
  });

  it('decodes KS X 1001 (ISO 2022 IR 149) in G1 mixed with ASCII on one line (PS3.5 I.3)', () => {
    expect(decodeText(bytes(ESC, 0x24, 0x29, 0x43, 'line ', 0xc7, 0xd1, 0xb1, 0xdb, ' .'), ['', 'ISO 2022 IR 149'], 'LT')).toBe(
      'line 한글 .',
    );
  });

  it('reads KS X 1001 bytes written without the escape when the term list offers it', () => {
    expect(decodeText(bytes(0xc7, 0xd1), ['', 'ISO 2022 IR 149'], 'LO')).toBe('한');
  });

  it('decodes GB 2312 (ISO 2022 IR 58) lines, each starting in the default set (PS3.5 K.3)', () => {
    const line = [ESC, 0x24, 0x29, 0x41, 0xb5, 0xda, 0xd2, 0xbb, 0xd0, 0xd0, 0xce, 0xc4, 0xd7, 0xd6, 0xa1, 0xa3, 0x0d, 0x0a];
    expect(decodeText(bytes('1.', ...line, '2.', ...line), ['', 'ISO 2022 IR 58'], 'LT')).toBe('1.第一行文字。\r\n2.第一行文字。\r\n');
  });

  it('switches between single-byte G1 sets with escapes', () => {
    const v = bytes(0xc4, ESC, 0x2d, 0x46, 0xc4, ESC, 0x2d, 0x4c, 0xb0, ESC, 0x2d, 0x41, 0xc4);
    expect(decodeText(v, ['ISO 2022 IR 100', 'ISO 2022 IR 126', 'ISO 2022 IR 144'], 'LO')).toBe('ÄΔАÄ');
  });

  it('treats a multi-byte value 1 as a mislabel and keeps ASCII in G0 until an escape', () => {
    expect(decodeText(bytes('Yamada=', ...toJis(';3ED')), ['ISO 2022 IR 87'], 'PN')).toBe('Yamada=山田');
  });

  it('honours escapes even under a single-valued term', () => {
    expect(decodeText(bytes(ESC, 0x2d, 0x46, 0xc4), ['ISO_IR 100'], 'LO')).toBe('Δ');
  });
});

describe('decodeText, reset to the initial character sets (PS3.5 6.1.2.5.3)', () => {
  const charsets = ['ISO 2022 IR 100', 'ISO 2022 IR 126'];
  const greek = [ESC, 0x2d, 0x46, 0xc4];

  it('resets at each value delimiter of a multi-valued VR', () => {
    expect(decodeText(bytes(...greek, '\\', 0xc4), charsets, 'LO')).toBe('Δ\\Ä');
  });

  it('does not treat backslash as a delimiter in LT, ST and UT', () => {
    for (const vr of ['LT', 'ST', 'UT']) expect(decodeText(bytes(...greek, '\\', 0xc4), charsets, vr)).toBe('Δ\\Δ');
  });

  it('resets at PN component (^) and component group (=) delimiters', () => {
    expect(decodeText(bytes(...greek, '^', 0xc4), charsets, 'PN')).toBe('Δ^Ä');
    expect(decodeText(bytes(...greek, '=', 0xc4), charsets, 'PN')).toBe('Δ=Ä');
  });

  it('does not reset at ^ or = outside PN', () => {
    expect(decodeText(bytes(...greek, '^=', 0xc4), charsets, 'LO')).toBe('Δ^=Δ');
  });

  it('resets at CR, LF, FF and TAB in text', () => {
    for (const ctl of [0x0d, 0x0a, 0x0c, 0x09]) {
      expect(decodeText(bytes(...greek, ctl, 0xc4), charsets, 'LT')).toBe(`Δ${String.fromCharCode(ctl)}Ä`);
    }
  });

  it('resets a multi-byte G0 (JIS X 0208) left active before a control character', () => {
    // Inside a JIS X 0208 run 0x5C, ^ and = are halves of characters, so only controls can reset.
    expect(decodeText(bytes(ESC, 0x24, 0x42, ';3', 0x0d, 'ab'), ['', 'ISO 2022 IR 87'], 'LT')).toBe('山\rab');
  });
});

describe('decodeText never throws on bad bytes', () => {
  it('replaces unknown or truncated escapes and lone halves of double-byte characters', () => {
    expect(decodeText(bytes('a', ESC, 0x28, 0x5a, 'b'), ['', 'ISO 2022 IR 87'], 'LO')).toBe('a\ufffdb');
    expect(decodeText(bytes('a', ESC, 0x24), ['', 'ISO 2022 IR 87'], 'LO')).toBe('a\ufffd');
    expect(decodeText(bytes(ESC, 0x24, 0x42, ';'), ['', 'ISO 2022 IR 87'], 'LO')).toBe('\ufffd');
    expect(decodeText(bytes(ESC, 0x24, 0x29, 0x43, 0xc7), ['', 'ISO 2022 IR 149'], 'LO')).toBe('\ufffd');
    expect(decodeText(bytes(ESC, 0x29, 0x49, 0xe5), ['ISO 2022 IR 13'], 'LO')).toBe('\ufffd');
  });

  it('survives pseudo-random bytes under every term', () => {
    const terms = [
      '', 'ISO_IR 100', 'ISO_IR 166', 'ISO_IR 13', 'ISO_IR 192', 'GB18030', 'GBK', 'ISO 2022 IR 87',
      'ISO 2022 IR 159', 'ISO 2022 IR 149', 'ISO 2022 IR 58', 'nonsense',
    ];
    let seed = 12345;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    for (let n = 0; n < 200; n++) {
      // Bias toward ESC so that escape parsing gets exercised.
      const v = Uint8Array.from({ length: 1 + (n % 40) }, () => (next() < 24 ? ESC : next()));
      for (const t of terms) {
        for (const vr of ['PN', 'LO', 'LT']) expect(typeof decodeText(v, ['', t], vr)).toBe('string');
        expect(typeof decodeText(v, [t], 'PN')).toBe('string');
      }
    }
  });

  it('decodes trailing padding (space or NUL) without disturbing the value', () => {
    expect(decodeText(bytes(...[ESC, 0x24, 0x42], ';3', ESC, 0x28, 0x42, ' '), ['', 'ISO 2022 IR 87'], 'PN')).toBe('山 ');
    expect(decodeText(bytes(0xe7, 0x8e, 0x8b, 0), ['ISO_IR 192'], 'PN')).toBe('王\0');
  });
});

describe('encodeText', () => {
  it('writes ASCII text as ASCII under any character set', () => {
    for (const cs of [[], [''], ['ISO_IR 100'], ['GB18030'], ['', 'ISO 2022 IR 87'], ['ISO_IR 192']]) {
      expect(encodeText('Doe^John', cs)).toEqual(bytes('Doe^John'));
    }
  });

  it('encodes in the single-byte set of value 1', () => {
    expect(encodeText('Buc^Jérôme', ['ISO_IR 100'])).toEqual(bytes('Buc^J', 0xe9, 'r', 0xf4, 'me'));
    expect(encodeText('\u0410', ['ISO_IR 144'])).toEqual(bytes(0xb0));
    expect(encodeText('€', ['ISO 2022 IR 203', 'ISO 2022 IR 87'])).toEqual(bytes(0xa4));
    expect(encodeText('ﾔﾏﾀﾞ', ['ISO_IR 13'])).toEqual(bytes(0xd4, 0xcf, 0xc0, 0xde));
  });

  it('encodes ISO_IR 192 as UTF-8', () => {
    expect(encodeText('王^小東', [utf8Charset])).toEqual(bytes(0xe7, 0x8e, 0x8b, '^', 0xe5, 0xb0, 0x8f, 0xe6, 0x9d, 0xb1));
  });

  it('returns undefined when the text does not fit the character set without escapes', () => {
    expect(encodeText('Δ', ['ISO_IR 100'])).toBeUndefined();
    expect(encodeText('é', [])).toBeUndefined();
    expect(encodeText('é', [''])).toBeUndefined();
    expect(encodeText('山田', ['', 'ISO 2022 IR 87'])).toBeUndefined();
    expect(encodeText('홍', ['', 'ISO 2022 IR 149'])).toBeUndefined();
    expect(encodeText('王', ['GB18030'])).toBeUndefined();
    expect(encodeText('王', ['GBK'])).toBeUndefined();
    expect(encodeText('é', ['ISO_IR 999'])).toBeUndefined();
    expect(encodeText('a\x1bb', ['ISO_IR 100'])).toBeUndefined();
  });

  it.each(['ISO_IR 100', 'ISO_IR 101', 'ISO_IR 109', 'ISO_IR 110', 'ISO_IR 126', 'ISO_IR 127', 'ISO_IR 138', 'ISO_IR 144', 'ISO_IR 148', 'ISO_IR 166', 'ISO_IR 203', 'ISO_IR 13'])(
    'round-trips every defined 8-bit character of %s',
    (term) => {
      for (let b = 0xa0; b <= 0xff; b++) {
        const text = decodeText(Uint8Array.of(b), [term], 'LO');
        if (text === '\ufffd') continue;
        expect(encodeText(text, [term])).toEqual(Uint8Array.of(b));
      }
    },
  );
});

describe('isAsciiOnly', () => {
  it('is true only for 7-bit bytes without ESC', () => {
    expect(isAsciiOnly(bytes('Doe^John\\x'))).toBe(true);
    expect(isAsciiOnly(new Uint8Array())).toBe(true);
    expect(isAsciiOnly(bytes(0xe9))).toBe(false);
    expect(isAsciiOnly(bytes(ESC, 0x28, 0x42))).toBe(false);
  });
});
