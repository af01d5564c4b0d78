/**
 * Optimistic concurrency: a read-decide-write step that lost a race (a conditional write that
 * failed with CATALOG_CONFLICT) is decided again on fresh reads. One loop for every document
 * and blob the pipeline writes conditionally.
 */
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';

export interface RetryOnConflictOptions {
  /** Attempts in all before giving up; 20 unless told. */
  maxAttempts?: number;
  /**
   * Milliseconds to wait after the given failed attempt (1 for the first), before the next;
   * none unless told. Jitter here spreads a burst of writers of one document apart.
   */
  pauseMs?: (failedAttempt: number) => number;
  /** For tests: how to wait. */
  sleep?: (ms: number) => Promise<void>;
}

const DEFAULT_MAX_ATTEMPTS = 20;

/**
 * Runs `step` (given its attempt number, from 1) until it does not throw CATALOG_CONFLICT; any
 * other error goes up at once. Past `maxAttempts` it throws CATALOG_CONFLICT naming `what`,
 * with the last conflict as its cause: still transient, so Event Grid retries the event later.
 */
export async function retryOnConflict<T>(what: string, step: (attempt: number) => Promise<T>, options: RetryOnConflictOptions = {}): Promise<T> {
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const sleep = options.sleep ?? delay;
  let last: unknown;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    try {
      return await step(attempt);
    } catch (e) {
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
      last = e;
    }
    const pause = attempt < maxAttempts ? (options.pauseMs?.(attempt) ?? 0) : 0;
    if (pause > 0) await sleep(pause);
  }
  throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what} kept changing while it was written`, { cause: last });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
