/**
 * Where the free-text detector runs, and how a value is redacted: shared by the engine (which
 * cleans) and the verification gate (which checks the same values again), so that both see the
 * same texts.
 */
import { lookupTag, tagToHex } from '../../dictionary';
import type { ResolvedAction } from '../resolve';
import { DetectContext, FreeTextDetector, localDetector, REDACTED, redactSpans, TextKind, TextSpan } from './detector';

/** Text VRs that hold free text (and URLs); CS, dates, numbers, UIDs and names have their own rules. */
export const DETECTED_VRS: ReadonlySet<string> = new Set(['LO', 'SH', 'UC', 'LT', 'ST', 'UT', 'UR']);

/** Maximum value lengths (PS3.5 6.2) of the VRs that have one. */
const MAX_LENGTH: Readonly<Record<string, number>> = { SH: 16, LO: 64, ST: 1024, LT: 10240 };

/**
 * Coded values: parts of a code, a code scheme or a mapping, which name a concept of a
 * vocabulary (the Code Meaning, the concept's name, is still free text).
 */
const CODED_KEYWORDS: ReadonlySet<string> = new Set([
  'CodeValue', 'LongCodeValue', 'URNCodeValue', 'CodingSchemeDesignator', 'CodingSchemeVersion', 'CodingSchemeName',
  'CodingSchemeResponsibleOrganization', 'CodingSchemeRegistry', 'ContextGroupExtensionFlag', 'MappingResourceName',
  'DeidentificationMethod', 'PrivateCreatorReference',
  // What equipment calls itself (a company, a product, a version): names of products, not of
  // people; the gate's identifying-value search still checks them for the source's values.
  'Manufacturer', 'ManufacturerModelName', 'SoftwareVersions', 'DeviceSerialNumber', 'StationName', 'DeviceUID',
  'SecondaryCaptureDeviceManufacturer', 'SecondaryCaptureDeviceManufacturerModelName', 'SecondaryCaptureDeviceSoftwareVersions',
  'ImplementationVersionName', 'SourceApplicationEntityTitle',
]);

/**
 * True for a kept text value the detector cleans: free text of a public attribute the profile
 * keeps by the table or because the table does not list it. What a retain option or an
 * override keeps is kept verbatim, as the profile says; what the profile cleans (C) goes
 * through the detector in the engine's clean path.
 */
export function detectsKeptValue(tag: number, vr: string, resolved: Readonly<ResolvedAction>): boolean {
  if (!DETECTED_VRS.has(vr) || resolved.action !== 'keep') return false;
  if (resolved.option !== undefined || resolved.source === 'override' || resolved.source === 'private') return false;
  return !CODED_KEYWORDS.has(lookupTag(tag)?.keyword ?? '');
}

/** The audit key of a redaction: attribute keyword (or tag) and kind, never the value. */
export function redactionKey(tag: number, kind: TextKind | 'sourceValue'): string {
  return `${lookupTag(tag)?.keyword ?? tagToHex(tag)}:${kind}`;
}

export interface RedactOptions {
  detector?: FreeTextDetector;
  context: DetectContext;
  vr: string;
  /** The research UID of a UID written in the text (the engine's UID mapping). */
  mapUid: (uid: string) => string;
}

/** The text a span becomes: a UID its research UID, everything else "[removed]". */
export function replacementOf(span: TextSpan, spanText: string, mapUid: (uid: string) => string): string {
  return span.kind === 'uid' ? mapUid(spanText) : REDACTED;
}

/**
 * The text with every span the detector finds redacted, and the spans (for the audit). Where
 * the VR's maximum length would be exceeded, spans are dropped without a placeholder.
 */
export function redactFreeText(text: string, options: RedactOptions): { text: string; spans: TextSpan[] } {
  const spans = (options.detector ?? localDetector).detect(text, options.context);
  if (spans.length === 0) return { text, spans };
  let out = redactSpans(text, spans, (s, t) => replacementOf(s, t, options.mapUid));
  const max = MAX_LENGTH[options.vr];
  if (max !== undefined && out.length > max) out = redactSpans(text, spans, () => '').replace(/\s{2,}/g, ' ').trim();
  return { text: out, spans };
}
