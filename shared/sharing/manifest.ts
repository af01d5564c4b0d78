/**
 * The manifest of an export, written last in the destination: every file with its partner
 * UIDs, SOP class, size and SHA-256, and the profile and key id it was made with. JSON and CSV
 * (RFC 4180), both in blob-name order, so that a second writer writes the same bytes.
 */
import type { ExportCounts, ExportItem, WithdrawnItem } from './stores';

export function manifestNames(exportId: string): { json: string; csv: string } {
  return { json: `manifests/${exportId}.json`, csv: `manifests/${exportId}.csv` };
}

export interface ManifestHeader {
  exportId: string;
  agreementId: string;
  partnerId: string;
  profile: string;
  keyId: string;
  counts: ExportCounts;
}

const COLUMNS = ['file', 'studyInstanceUid', 'seriesInstanceUid', 'sopInstanceUid', 'sopClassUid', 'size', 'sha256'] as const;

function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function manifestCsv(items: ExportItem[]): string {
  const rows = items.flatMap((i) => (i.file ? [[i.file.blob, i.file.studyInstanceUid, i.file.seriesInstanceUid, i.file.sopInstanceUid, i.file.sopClassUid, String(i.file.size), i.file.sha256]] : []));
  return [COLUMNS.join(','), ...rows.map((r) => r.map(csvField).join(','))].join('\r\n') + '\r\n';
}

export function manifestJson(header: ManifestHeader, items: ExportItem[]): string {
  return `${JSON.stringify({ ...header, files: items.flatMap((i) => (i.file ? [i.file] : [])) }, null, 2)}\n`;
}

/**
 * The withdrawal list, next to the manifest: the manifest stays the record of what was shipped,
 * and the list names the files withdrawn since (source deleted), with when and how.
 */
export function withdrawalNames(exportId: string): { json: string; csv: string } {
  return { json: `manifests/${exportId}.withdrawn.json`, csv: `manifests/${exportId}.withdrawn.csv` };
}

const WITHDRAWAL_COLUMNS = ['withdrawnAt', 'outcome', ...COLUMNS] as const;

export function withdrawalCsv(items: WithdrawnItem[]): string {
  const rows = items.map((i) => [i.at, i.outcome, i.file.blob, i.file.studyInstanceUid, i.file.seriesInstanceUid, i.file.sopInstanceUid, i.file.sopClassUid, String(i.file.size), i.file.sha256]);
  return [WITHDRAWAL_COLUMNS.join(','), ...rows.map((r) => r.map(csvField).join(','))].join('\r\n') + '\r\n';
}

export function withdrawalJson(header: { exportId: string; agreementId: string; partnerId: string }, items: WithdrawnItem[]): string {
  return `${JSON.stringify({ ...header, withdrawn: items.map((i) => ({ withdrawnAt: i.at, outcome: i.outcome, ...i.file })) }, null, 2)}\n`;
}
