/**
 * The cloud option of the free-text detector: a remote PHI recognizer (Azure AI Language PII
 * detection in its PHI domain, shared/language/azureLanguagePii.ts) that assists the local
 * detector, behind the same span model. Off by default (README "Free text").
 *
 * The engine's text path is synchronous and sliced (limits.ts), so the remote call cannot happen
 * per value. Instead, before the engine runs, the text values of the file are gathered and sent
 * in one batch (`findCloudPhi`); what the service finds comes back as strings with a kind, and
 * `cloudAssistedDetector` then redacts every occurrence of those strings, in whatever value they
 * appear (after the source's own values were scrubbed, a value's text is no longer what was
 * sent), besides what the local detector finds. The verification gate runs the same detector.
 */
import type { DicomDataset } from '../../dataset';
import { isPrivateTag } from '../../dictionary';
import { charsetsOf, effectiveVr, textOf } from '../identifying';
import { DetectContext, FreeTextDetector, mergeSpans, TextKind, TextSpan } from './detector';
import { DETECTED_VRS } from './policy';

/** What a remote recognizer found in one text: the span and its kind. Offsets in UTF-16 code units. */
export type CloudSpan = TextSpan;

/**
 * Finds PHI spans in a batch of texts (one result list per text, same order). Implementations
 * call a remote service: they throw a PipelineError SERVICE_* for what may pass (the caller
 * retries the file) and INTERNAL/CONFIG_INVALID for what will not, and never log the texts.
 * Idempotent.
 */
export interface CloudPhiRecognizer {
  recognize(texts: readonly string[], options?: { abortSignal?: AbortSignal }): Promise<CloudSpan[][]>;
}

/** A string the recognizer found, to be redacted wherever it occurs. PHI: never log it. */
export interface CloudFinding {
  text: string;
  kind: TextKind;
}

/** Findings shorter than this are not searched for elsewhere: two letters occur in too many words. */
export const MIN_FINDING_LENGTH = 3;
/** At most this many characters of one file go to the service; the local detector still covers the rest. */
export const MAX_CLOUD_CHARS_PER_FILE = 100_000;

/**
 * The distinct texts of a data set (sequence items included) that the free-text detector may
 * run on: public values of the detected VRs, decoded with their character sets. Values with
 * ISO 2022 escapes are decoded too. Bounded by MAX_CLOUD_CHARS_PER_FILE (`truncated` says so).
 */
export function gatherTexts(ds: DicomDataset): { texts: string[]; truncated: boolean } {
  const seen = new Set<string>();
  let chars = 0;
  let truncated = false;
  const visit = (set: DicomDataset, inherited: string[]): void => {
    const charsets = charsetsOf(set, inherited);
    for (const el of set.values()) {
      if (el.items) {
        for (const item of el.items) visit(item, charsets);
        continue;
      }
      if (isPrivateTag(el.tag) || !DETECTED_VRS.has(effectiveVr(el))) continue;
      const text = textOf(el, charsets);
      if (!/[\p{L}\p{N}]/u.test(text) || seen.has(text)) continue;
      if (chars + text.length > MAX_CLOUD_CHARS_PER_FILE) {
        truncated = true;
        continue;
      }
      seen.add(text);
      chars += text.length;
    }
  };
  visit(ds, []);
  return { texts: [...seen], truncated };
}

/** The texts of `ds` sent to the recognizer in one batch; what it found, as distinct strings with their kinds. */
export async function findCloudPhi(ds: DicomDataset, recognizer: CloudPhiRecognizer, options: { abortSignal?: AbortSignal } = {}): Promise<{ findings: CloudFinding[]; truncated: boolean }> {
  const { texts, truncated } = gatherTexts(ds);
  if (texts.length === 0) return { findings: [], truncated };
  const results = await recognizer.recognize(texts, options);
  const byText = new Map<string, CloudFinding>();
  results.forEach((spans, i) => {
    const text = texts[i] ?? '';
    for (const span of spans) {
      const found = text.slice(span.start, span.end).trim();
      if (found.length < MIN_FINDING_LENGTH || byText.has(found)) continue;
      byText.set(found, { text: found, kind: span.kind });
    }
  });
  return { findings: [...byText.values()], truncated };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The local detector (or `base`) plus every occurrence of a cloud finding: case-insensitive,
 * not inside a longer word (a finding "Ann" is not found in "Annual"). Pure and synchronous, as
 * the engine and the gate need.
 */
export function cloudAssistedDetector(base: FreeTextDetector, findings: readonly CloudFinding[]): FreeTextDetector {
  if (findings.length === 0) return base;
  // Longest first, so that a finding inside a longer one does not split it.
  const sorted = [...findings].sort((a, b) => b.text.length - a.text.length);
  const kindOf = new Map(sorted.map((f) => [f.text.toLowerCase(), f.kind]));
  // Scripts written without spaces (Han, Kana, Hangul) have no word boundaries to wait for.
  const unspaced = (t: string) => /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u.test(t);
  const alternation = (list: CloudFinding[]) => list.map((f) => escapeRegex(f.text)).join('|');
  const bounded = sorted.filter((f) => !unspaced(f.text));
  const free = sorted.filter((f) => unspaced(f.text));
  const parts = [
    ...(bounded.length ? [`(?<![\\p{L}\\p{N}])(?:${alternation(bounded)})(?![\\p{L}\\p{N}])`] : []),
    ...(free.length ? [`(?:${alternation(free)})`] : []),
  ];
  const pattern = new RegExp(parts.join('|'), 'giu');
  return {
    detect(text: string, context: DetectContext): TextSpan[] {
      const spans = base.detect(text, context);
      const extra: TextSpan[] = [];
      for (const hit of text.matchAll(pattern)) {
        const start = hit.index ?? 0;
        extra.push({ start, end: start + hit[0].length, kind: kindOf.get(hit[0].toLowerCase()) ?? 'name' });
      }
      return extra.length === 0 ? spans : mergeSpans([...spans, ...extra]);
    },
  };
}
