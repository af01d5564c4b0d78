/**
 * Regenerates shared/dicom/data/ from the machine-readable DICOM standard tables
 * (innolitics/dicom-standard, MIT; see shared/dicom/data/README.md for provenance).
 * Usage: node dist/tools/gen-dicom-data.js <folder holding attributes.json and confidentiality_profile_attributes.json>
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Attribute {
  id: string;
  keyword: string;
  valueRepresentation: string;
  valueMultiplicity: string;
  retired: string;
}

const src = process.argv[2];
if (!src) {
  console.error('usage: node dist/tools/gen-dicom-data.js <dicom-standard folder>');
  process.exit(2);
}
const out = join(__dirname, '..', '..', 'shared', 'dicom', 'data');
const attributes = JSON.parse(readFileSync(join(src, 'attributes.json'), 'utf8')) as Attribute[];

// Compact dictionary: "GGGGEEEE" (upper case, x for mask digits) -> [keyword, VR, VM, retired]
const dictionary: Record<string, [string, string, string, number]> = {};
for (const a of attributes) {
  if (!a.keyword) continue;
  let vr = a.valueRepresentation;
  if (vr === 'US or SS' || vr === 'US or SS or OW' || vr === 'US or OW') vr = 'US';
  else if (vr === 'OB or OW') vr = 'OW';
  else if (!/^[A-Z]{2}$/.test(vr)) vr = 'UN';
  dictionary[a.id.toUpperCase().replace(/X/g, 'x')] = [a.keyword, vr, a.valueMultiplicity, a.retired === 'Y' ? 1 : 0];
}
writeFileSync(join(out, 'dictionary.json'), JSON.stringify(dictionary));

const profile = JSON.parse(readFileSync(join(src, 'confidentiality_profile_attributes.json'), 'utf8')) as unknown[];
writeFileSync(join(out, 'confidentiality-profile-table-e1-1.json'), `${JSON.stringify(profile, null, 1)}\n`);
console.log(`dictionary: ${Object.keys(dictionary).length} attributes; Table E.1-1: ${profile.length} rows`);
