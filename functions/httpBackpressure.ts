/**
 * Flow control for streamed HTTP answers, which `@azure/functions` does not give.
 *
 * In streaming mode (`app.setup({ enableHttpStream: true })`) the library writes the body a
 * handler returns onto the response for the Functions host (its `sendProxyResponse`), chunk by
 * chunk, without looking at what `write` returns: it reads the body as fast as the body yields,
 * and whatever the client has not yet taken piles up in this process (upstream issue
 * Azure/azure-functions-nodejs-library#294, open). A WADO-RS retrieve of a 2 GB instance by a
 * client slower than storage held most of the instance in memory: the 2 GB bench measured the
 * host 320 MiB larger while it streamed.
 *
 * `paced` puts the flow control back: before it gives the library the next chunk, it waits
 * until the response has written out what it holds (`drain`). It finds the response by the
 * invocation's id, which the library sets on it as the header `x-ms-invocation-id` before the
 * first chunk: when this module loads, it wraps `http.ServerResponse.prototype.setHeader` to
 * note which response carries which id, and forgets it when the response closes. A response
 * that closes (the client went away) ends the body, so the rest of the blob is not read for
 * nobody; one whose client takes nothing for STALL_MS is destroyed.
 *
 * Where no response is noted (a handler called in process, as in tests and the benches' own
 * calls), the body passes unchanged.
 */
import * as http from 'node:http';

const INVOCATION_HEADER = 'x-ms-invocation-id';
/** How long a response may hold unsent bytes that its client does not take before it is given up. */
const STALL_MS = 60_000;

const answering = new Map<string, WeakRef<http.ServerResponse>>();

// Notes, for each response given an invocation id, which response it is (once this module loads).
const originalSetHeader = http.ServerResponse.prototype.setHeader;
http.ServerResponse.prototype.setHeader = function setHeader(this: http.ServerResponse, name: string, value: number | string | readonly string[]) {
  if (typeof value === 'string' && name.toLowerCase() === INVOCATION_HEADER && !answering.has(value)) {
    answering.set(value, new WeakRef(this));
    this.once('close', () => answering.delete(value));
  }
  return originalSetHeader.call(this, name, value);
} as typeof originalSetHeader;

/** The response that carries this invocation's answer, while it is open. */
function responseOf(invocationId: string): http.ServerResponse | undefined {
  return answering.get(invocationId)?.deref();
}

/** Resolves 'drained' when the response has written out what it held, 'closed' when it closed, 'stalled' after `stallMs`. */
function drained(res: http.ServerResponse, stallMs: number): Promise<'drained' | 'closed' | 'stalled'> {
  return new Promise((resolve) => {
    const done = (how: 'drained' | 'closed' | 'stalled') => () => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(how);
    };
    const onDrain = done('drained');
    const onClose = done('closed');
    const timer = setTimeout(done('stalled'), stallMs);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

/**
 * `body`, given out no faster than the invocation's response sends it on: each chunk after the
 * response has written out the previous ones. Ends early (and so ends the reading of `body`)
 * when the response closes or stalls.
 */
export async function* paced(body: AsyncIterable<Uint8Array>, invocationId: string, stallMs = STALL_MS): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    const res = responseOf(invocationId);
    if (res) {
      if (res.destroyed) return;
      if (res.writableNeedDrain) {
        const how = await drained(res, stallMs);
        if (how === 'closed') return;
        if (how === 'stalled') {
          res.destroy();
          return;
        }
      }
    }
    yield chunk;
  }
}
