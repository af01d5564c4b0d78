/**
 * Point requests of one container that leave together: while `inFlight` point requests
 * (creates and reads) to the container are out, further ones wait, and when one comes back
 * everything that waited leaves as one bulk request (Cosmos DB's non-atomic batch, up to 100
 * operations). Under a burst, the index reads and records and the instance documents of many
 * concurrent ingestions then cost one request each few instances instead of one each; a request
 * that finds nothing in flight leaves at once, alone, as before, so a quiet pipeline waits for
 * nothing.
 *
 * A bulk request names the partition key range it is for. Only a container of one range is
 * batched (serverless containers start with one and split only past tens of GB): the ranges are
 * read once requests first overlap, again every RANGE_CHECK_MS, and again when a bulk request
 * is refused as gone (410, a split). Over more than one range every request goes alone. Routing
 * across ranges would need the service's partition key hashing; one range needs none.
 *
 * What each operation resolves with is what it would have alone: a create its ETag or 409 when
 * the document exists, a read the document or nothing. Any other answer to an operation
 * (throttled, timed out, a session not yet readable, too large, ...) and any answer but 2xx to
 * the whole request sends the operations again one by one, each with the retries it has alone;
 * 400 to the whole request also stops bulk requests to the container until the next range
 * check. A request that gets no answer fails its creates, as a create alone fails (writes are
 * not sent again blind: the caller's retry meets 409 if one was done), and sends its reads
 * again alone.
 */

/** Operations per bulk request: the service's limit. */
export const BULK_MAX_OPERATIONS = 100;
/** Request body bytes past which no more operations join a bulk request (the service takes 2 MB). */
export const BULK_MAX_BYTES = 1024 * 1024;
/** How long what was learnt of the container's ranges holds. */
export const RANGE_CHECK_MS = 10 * 60_000;

/** A point operation: a create of a document (its JSON), or a read of one by id. */
export type PointOperation = { kind: 'create'; body: string; partitionKey: string } | { kind: 'read'; id: string; partitionKey: string };

/** What an operation gives: a create its ETag, a read the document (undefined: absent). */
export type PointResult = { etag: string } | { resource: object | undefined };

/** What the service answered to one operation of a bulk request. */
export type OperationOutcome =
  | { kind: 'done'; result: PointResult }
  /** An error to reject the operation with (409: the document exists). */
  | { kind: 'failed'; error: Error }
  /** Not carried out, or not known to be: the operation goes again alone. */
  | { kind: 'again' };

/** A bulk request's answer: one outcome per operation, or why the whole request was not taken. */
export type BulkAnswer = { outcomes: OperationOutcome[] } | { refused: 'gone' | 'bad-request' | 'other' };

/** What the lane sends through: the container's documents client. */
export interface BulkTransport {
  /** One operation alone, with all its retries. */
  alone(op: PointOperation): Promise<PointResult>;
  /** One bulk request for one range; rejects when no answer came. */
  bulk(ops: PointOperation[], rangeId: string): Promise<BulkAnswer>;
  /** The container's partition key range ids; undefined when there are more than a page holds. */
  ranges(): Promise<string[] | undefined>;
}

interface Waiting {
  op: PointOperation;
  resolve: (result: PointResult) => void;
  reject: (error: unknown) => void;
}

type RangeState =
  | { kind: 'unknown' }
  | { kind: 'checking' }
  /** Batched into this range until `until`. */
  | { kind: 'single'; rangeId: string; until: number }
  /** Every request alone until `until`: more than one range, a failed check, or bulk refused. */
  | { kind: 'alone'; until: number };

export interface BulkLaneOptions {
  /** Point requests out at once before the next wait for a bulk request; 0 sends every one alone. */
  inFlight: number;
  now?: () => number;
}

/** The point requests of one container (see the file's header). Every method may be called concurrently. */
export class BulkLane {
  private out = 0;
  private readonly waiting: Waiting[] = [];
  private range: RangeState = { kind: 'unknown' };
  private readonly now: () => number;
  /** Requests sent and operations they carried, for the bench and tests. */
  readonly counts = { alone: 0, bulk: 0, bulkOperations: 0 };
  /** The last check of the ranges (see checked). */
  private check: Promise<void> = Promise.resolve();

  constructor(
    private readonly transport: BulkTransport,
    private readonly options: BulkLaneOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  send(op: PointOperation): Promise<PointResult> {
    if (this.options.inFlight <= 0) return this.sendAlone(op);
    if (this.out < this.options.inFlight && this.waiting.length === 0) return this.tracked(() => this.sendAlone(op));
    // No single range known (yet): the request goes alone, as it would without bulk.
    if (this.batchRange() === undefined) return this.tracked(() => this.sendAlone(op));
    return new Promise((resolve, reject) => {
      this.waiting.push({ op, resolve, reject });
    });
  }

  /** Settles once the check of the ranges that is under way, if any, has ended (tests). */
  checked(): Promise<void> {
    return this.check;
  }

  /** The range requests are batched into now; undefined when none is, starting a check when one is due. */
  private batchRange(): string | undefined {
    const state = this.range;
    if (state.kind === 'single' && state.until > this.now()) return state.rangeId;
    if (state.kind === 'checking' || (state.kind === 'alone' && state.until > this.now())) return undefined;
    this.range = { kind: 'checking' };
    this.check = this.transport.ranges().then(
      (ids) => {
        const single = ids?.length === 1 ? ids[0] : undefined;
        this.range = single !== undefined ? { kind: 'single', rangeId: single, until: this.now() + RANGE_CHECK_MS } : { kind: 'alone', until: this.now() + RANGE_CHECK_MS };
      },
      () => {
        this.range = { kind: 'alone', until: this.now() + RANGE_CHECK_MS };
      },
    );
    return undefined;
  }

  private sendAlone(op: PointOperation): Promise<PointResult> {
    this.counts.alone += 1;
    return this.transport.alone(op);
  }

  /** Counts a request as out while it is, and sends what waited when it is back. */
  private tracked<T>(send: () => Promise<T>): Promise<T> {
    this.out += 1;
    const sent = send();
    sent.then(this.release, this.release);
    return sent;
  }

  private readonly release = (): void => {
    this.out -= 1;
    this.pump();
  };

  private pump(): void {
    while (this.waiting.length > 0 && this.out < this.options.inFlight) {
      const batch = this.takeBatch();
      const state = this.range;
      if (batch.length === 1 || state.kind !== 'single') {
        for (const w of batch) void this.tracked(() => this.forward(w));
        continue;
      }
      const rangeId = state.rangeId;
      void this.tracked(() => this.sendBulk(batch, rangeId));
    }
  }

  /** The longest run of waiting operations one bulk request carries. */
  private takeBatch(): Waiting[] {
    let bytes = 2;
    let n = 0;
    while (n < this.waiting.length && n < BULK_MAX_OPERATIONS) {
      const op = (this.waiting[n] as Waiting).op;
      // Operation envelope and separator: about 100 bytes beside the document or id.
      const size = (op.kind === 'create' ? op.body.length : op.id.length) + 128;
      if (n > 0 && bytes + size > BULK_MAX_BYTES) break;
      bytes += size;
      n += 1;
    }
    return this.waiting.splice(0, n);
  }

  /** Sends a waiting operation alone, settling it with what that gives. */
  private forward(w: Waiting): Promise<unknown> {
    const sent = this.sendAlone(w.op);
    sent.then(w.resolve, w.reject);
    return sent.catch(() => undefined);
  }

  private async sendBulk(batch: Waiting[], rangeId: string): Promise<void> {
    this.counts.bulk += 1;
    this.counts.bulkOperations += batch.length;
    let answer: BulkAnswer;
    try {
      answer = await this.transport.bulk(
        batch.map((w) => w.op),
        rangeId,
      );
    } catch (e) {
      // No answer: a read is sent again, as a read alone is; a create fails, as a create alone does.
      for (const w of batch) {
        if (w.op.kind === 'read') void this.forward(w);
        else w.reject(e);
      }
      return;
    }
    if ('refused' in answer || answer.outcomes.length !== batch.length) {
      if ('refused' in answer && answer.refused === 'gone') this.range = { kind: 'unknown' };
      if ('refused' in answer && answer.refused === 'bad-request') this.range = { kind: 'alone', until: this.now() + RANGE_CHECK_MS };
      // A mismatched answer is not known to have done nothing: creates done meet 409 when sent again, which callers handle.
      for (const w of batch) void this.forward(w);
      return;
    }
    answer.outcomes.forEach((outcome, i) => {
      const w = batch[i] as Waiting;
      if (outcome.kind === 'done') w.resolve(outcome.result);
      else if (outcome.kind === 'failed') w.reject(outcome.error);
      else void this.forward(w);
    });
  }
}
