/** The fragments of an encapsulated pixel data value as a test reads them (the basic offset table left out). */
export function fragments(value: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + 8 <= value.length;) {
    const element = value.readUInt16LE(i + 2);
    const length = value.readUInt32LE(i + 4);
    i += 8;
    if (element === 0xe0dd) break;
    out.push(value.subarray(i, i + length));
    i += length;
  }
  return out.slice(1);
}
