/**
 * The cloud option's seam: Azure AI Language PII detection in its healthcare (PHI) domain
 * (`@azure/ai-language-text`, `recognizePiiEntities` with `domainFilter: "phi"`), behind the
 * same span model as the local detector. Only the interface is defined: the engine's text path
 * is synchronous and sliced (limits.ts), so a network call per value needs the values of a file
 * gathered, sent in one batch before the engine runs, and the spans handed in; that plumbing and
 * the adapter are not built. Off by default, and nothing calls it.
 */
import type { TextSpan } from './detector';

/**
 * Finds PHI spans in a batch of texts (one result list per text, same order). Implementations
 * call a remote service: they may throw a transient error (the caller retries the file), and
 * must never log the texts. Idempotent.
 */
export interface CloudPhiRecognizer {
  recognize(texts: readonly string[], options?: { abortSignal?: AbortSignal; language?: string }): Promise<TextSpan[][]>;
}
