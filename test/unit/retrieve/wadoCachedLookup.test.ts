/**
 * WADO-RS with a remembered catalog lookup (ResearchInstanceCache): reads through it are
 * conditional on the copy's version, so a replaced or removed copy is never served with the
 * lookup's stale frame index; and the access audit hook (`disclosing`) runs alongside the first
 * read, never letting an answer out when it fails.
 */
import type { ResearchCatalogReader, SqlQuery } from '../../../shared/catalog/researchCatalog';
import { DEFAULT_LIMITS } from '../../../shared/dicom/limits';
import { ErrorCodes, isPipelineError, PipelineError } from '../../../shared/errors';
import { CatalogFrameIndexSource } from '../../../shared/retrieve/frameIndexSource';
import { MetadataCache } from '../../../shared/retrieve/instanceMetadata';
import { type ResearchInstance, ResearchInstanceCache } from '../../../shared/retrieve/researchInstances';
import { retrieve, type WadoDeps, type WadoRequest } from '../../../shared/retrieve/wado';
import type { CopyRead, CopyReadOptions } from '../../../shared/storage/stores';
import { MemoryResearchStore } from '../fakes';

const STUDY = '2.25.7';
const SERIES = '2.25.7.1';
const INSTANCE = '2.25.7.1.1';
const BLOB = `${STUDY}/${SERIES}/${INSTANCE}.dcm`;
const FRAME = 4;

class FakeCatalog implements ResearchCatalogReader {
  queries = 0;
  docs: ResearchInstance[] = [];
  /** Run after each answer: a writer that changes the catalog between lookups. */
  afterQuery?: () => void;
  async *query<T>(spec: SqlQuery): AsyncIterable<T> {
    this.queries++;
    const p = new Map(spec.parameters.map((x) => [x.name, x.value]));
    // A fresh object per answer, as the Cosmos DB client gives.
    const found = this.docs.filter((d) => p.get('@study') === d.studyInstanceUid && p.get('@instance') === d.sopInstanceUid).map((d) => ({ ...d }));
    this.afterQuery?.();
    for (const d of found) yield d as unknown as T;
  }
}

/** A copy: `headerBytes` of header, then two native frames of FRAME bytes filled with `a` and `b`. */
function copy(headerBytes: number, a: number, b: number): Buffer {
  return Buffer.concat([Buffer.alloc(headerBytes, 0x20), Buffer.alloc(FRAME, a), Buffer.alloc(FRAME, b)]);
}

function doc(headerBytes: number, updatedAt: string): ResearchInstance {
  return {
    studyInstanceUid: STUDY,
    seriesInstanceUid: SERIES,
    sopInstanceUid: INSTANCE,
    sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    size: headerBytes + 2 * FRAME,
    researchBlob: BLOB,
    updatedAt,
    frames: { kind: 'native', count: 2, offset: headerBytes, frameLength: FRAME },
  };
}

async function collect(body: AsyncIterable<Uint8Array> | string): Promise<Buffer> {
  if (typeof body === 'string') return Buffer.from(body);
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** The bytes of the one part of a multipart answer. */
async function onlyPart(answer: { headers: Record<string, string>; body: AsyncIterable<Uint8Array> | string }): Promise<Buffer> {
  const boundary = /boundary=([^;]+)/.exec(answer.headers['content-type'] ?? '')?.[1] ?? '';
  const text = (await collect(answer.body)).toString('latin1');
  const part = text.split(`--${boundary}`)[1] ?? '';
  return Buffer.from(part.slice(part.indexOf('\r\n\r\n') + 4, -2), 'latin1');
}

let research: MemoryResearchStore;
let catalog: FakeCatalog;
let deps: WadoDeps;

async function put(data: Buffer, d: ResearchInstance): Promise<void> {
  async function* one() {
    yield data;
  }
  const current = await research.getVersion(BLOB);
  const written = await research.write(BLOB, one(), { rank: 'r', keyId: 'k', sourceKey: 's', sourceVersion: 'v', expected: current });
  if (!written.committed) throw new Error('the test copy was not written');
  catalog.docs = [d];
}

const frameRequest = (frames: string, over: Partial<WadoRequest> = {}): WadoRequest => ({
  resource: 'frames',
  scope: { study: STUDY, series: SERIES, instance: INSTANCE },
  frames,
  accept: null,
  range: null,
  root: 'http://host/api/dicomweb',
  ...over,
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return isPipelineError(e) ? e.code : String(e);
  }
}

beforeEach(async () => {
  research = new MemoryResearchStore();
  catalog = new FakeCatalog();
  const unusedCatalog = {
    getInstance: async () => {
      throw new Error('the index is in the document: the catalog is not read again');
    },
    putInstance: async () => {
      throw new Error('not written');
    },
  };
  deps = {
    catalog,
    research,
    frameIndex: new CatalogFrameIndexSource({ research, catalog: unusedCatalog }),
    headerLimits: DEFAULT_LIMITS,
    metadataCache: new MetadataCache(),
    instanceCache: new ResearchInstanceCache(60_000),
  };
  await put(copy(100, 1, 2), doc(100, 't1'));
});

describe('a remembered lookup', () => {
  test('given the copy replaced by one with another layout, then the new copy\'s frame, read with its new index, and the catalog asked once more', async () => {
    expect([...(await onlyPart(await retrieve(deps, frameRequest('2'))))]).toEqual([2, 2, 2, 2]);
    expect([...(await onlyPart(await retrieve(deps, frameRequest('1'))))]).toEqual([1, 1, 1, 1]);
    expect(catalog.queries).toBe(1);

    // Re-ingested: a longer header moves the frames; the document says where they are now.
    await put(copy(200, 7, 8), doc(200, 't2'));
    expect([...(await onlyPart(await retrieve(deps, frameRequest('2'))))]).toEqual([8, 8, 8, 8]);
    expect(catalog.queries).toBe(2);
    // The new lookup is remembered in turn.
    expect([...(await onlyPart(await retrieve(deps, frameRequest('1'))))]).toEqual([7, 7, 7, 7]);
    expect(catalog.queries).toBe(2);
  });

  test('given the copy replaced, then a whole-instance retrieve gives the new copy\'s bytes', async () => {
    const instanceRequest = frameRequest('', { resource: 'instances', accept: 'application/dicom; transfer-syntax=*' });
    expect((await collect((await retrieve(deps, instanceRequest)).body)).equals(copy(100, 1, 2))).toBe(true);
    await put(copy(100, 5, 6), doc(100, 't2'));
    expect((await collect((await retrieve(deps, instanceRequest)).body)).equals(copy(100, 5, 6))).toBe(true);
  });

  test('given a lookup kept before any read through it, and the copy moved to another blob since, then the catalog is asked again and the new copy\'s frame given', async () => {
    await deps.instanceCache!.find(catalog, { study: STUDY, series: SERIES, instance: INSTANCE });
    async function* moved() {
      yield copy(100, 3, 4);
    }
    await research.write('moved.dcm', moved(), { rank: 'r', keyId: 'k', sourceKey: 's', sourceVersion: 'v2', expected: undefined });
    await research.delete(BLOB);
    catalog.docs = [{ ...doc(100, 't2'), researchBlob: 'moved.dcm' }];
    expect([...(await onlyPart(await retrieve(deps, frameRequest('2'))))]).toEqual([4, 4, 4, 4]);
    expect(catalog.queries).toBe(2);
  });

  test('given the instance withdrawn (document and copy removed), then 404 after asking the catalog again', async () => {
    await onlyPart(await retrieve(deps, frameRequest('1')));
    catalog.docs = [];
    await research.delete(BLOB);
    expect(await codeOf(retrieve(deps, frameRequest('1')))).toBe(ErrorCodes.NOT_FOUND);
    expect(catalog.queries).toBe(2);
  });

  test('given a frame the instance does not have, then 404 without asking the catalog again', async () => {
    await onlyPart(await retrieve(deps, frameRequest('1')));
    expect(await codeOf(retrieve(deps, frameRequest('3')))).toBe(ErrorCodes.NOT_FOUND);
    expect(catalog.queries).toBe(1);
  });

  test('given a copy gone from storage, then a frames request fails with its status before the answer, not in its body', async () => {
    await research.delete(BLOB);
    expect(await codeOf(retrieve({ ...deps, instanceCache: undefined }, frameRequest('1')))).toBe(ErrorCodes.NOT_FOUND);
  });
});

describe('a copy replaced by another source\'s before its document follows', () => {
  /** Source X's copy and document in place, then source Y's copy (other header, other frames) committed over it. */
  async function replacedCopyOnly(): Promise<{ x: ResearchInstance; y: ResearchInstance }> {
    const x = { ...doc(100, 't1'), sourceVersion: 'vx' };
    const y = { ...doc(200, 't2'), sourceVersion: 'vy' };
    const write = async (data: Buffer, sourceVersion: string) => {
      async function* one() {
        yield data;
      }
      const written = await research.write(BLOB, one(), { rank: sourceVersion, keyId: 'k', sourceKey: sourceVersion, sourceVersion, expected: await research.getVersion(BLOB) });
      if (!written.committed) throw new Error('the test copy was not written');
    };
    await write(copy(100, 1, 2), 'vx');
    catalog.docs = [x];
    await write(copy(200, 7, 8), 'vy');
    return { x, y };
  }

  test.each([
    ['a remembered lookup', true],
    ['no remembered lookup', false],
  ])('given %s and a document that never follows, then 503 after three lookups, and none of the other copy\'s bytes', async (_name, cached) => {
    await replacedCopyOnly();
    const request = retrieve({ ...deps, ...(cached ? {} : { instanceCache: undefined }) }, frameRequest('2'));
    expect(await codeOf(request)).toBe(ErrorCodes.SERVICE_UNAVAILABLE);
    expect(catalog.queries).toBe(3);
  });

  test('given copies that carry no source version, then a copy of another size is not read with the document\'s index either', async () => {
    await put(copy(200, 7, 8), doc(100, 't1'));
    expect(await codeOf(retrieve(deps, frameRequest('2')))).toBe(ErrorCodes.SERVICE_UNAVAILABLE);
    catalog.docs = [doc(200, 't2')];
    expect([...(await onlyPart(await retrieve(deps, frameRequest('2'))))]).toEqual([8, 8, 8, 8]);
  });

  test('given the document written while the request waits, then the new copy\'s frame with its own index', async () => {
    const { y } = await replacedCopyOnly();
    catalog.afterQuery = () => {
      catalog.docs = [y];
      catalog.afterQuery = undefined;
    };
    expect([...(await onlyPart(await retrieve(deps, frameRequest('2'))))]).toEqual([8, 8, 8, 8]);
    expect(catalog.queries).toBe(2);
  });

  test('given a whole-instance retrieve in the same gap, then the new copy\'s bytes once its document is there', async () => {
    const { y } = await replacedCopyOnly();
    catalog.afterQuery = () => {
      catalog.docs = [y];
      catalog.afterQuery = undefined;
    };
    const instanceRequest = frameRequest('', { resource: 'instances', accept: 'application/dicom; transfer-syntax=*' });
    const answer = await retrieve(deps, instanceRequest);
    expect(answer.returned.map((i) => i.updatedAt)).toEqual(['t2']);
    expect((await collect(answer.body)).equals(copy(200, 7, 8))).toBe(true);
  });
});

describe('the disclosure hook (the access audit)', () => {
  /** A store whose reads wait for `release`, and that notes when a read stream is closed. */
  function gatedStore() {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const events: string[] = [];
    const readRange = research.readRange.bind(research);
    const store = Object.assign(Object.create(research) as MemoryResearchStore, {
      readRange: async (name: string, offset: number, count: number | undefined, options?: CopyReadOptions): Promise<CopyRead> => {
        events.push('read started');
        await gate;
        const inner = await readRange(name, offset, count, options);
        events.push('read opened');
        const it = inner[Symbol.asyncIterator]();
        return {
          etag: inner.etag,
          [Symbol.asyncIterator]: () => ({
            next: () => it.next(),
            return: async () => {
              events.push('read closed');
              return (await it.return?.()) ?? { done: true, value: undefined };
            },
          }),
        };
      },
    });
    return { store, events, release };
  }

  test('given a frames request, then the hook is told the status and instance while the first read is under way', async () => {
    const { store, events, release } = gatedStore();
    const told: [number, string[]][] = [];
    const answer = retrieve({ ...deps, research: store }, frameRequest('1', {
      disclosing: async (status, returned) => {
        events.push('hook started');
        told.push([status, returned.map((i) => i.sopInstanceUid)]);
        release();
      },
    }));
    expect([...(await onlyPart(await answer))]).toEqual([1, 1, 1, 1]);
    expect(told).toEqual([[200, [INSTANCE]]]);
    // The hook ran before the read had its answer: the two overlap.
    expect(events.slice(0, 3)).toEqual(['read started', 'hook started', 'read opened']);
  });

  test('given the hook fails (the audit cannot be written), then the retrieve fails with its error and the opened read is closed unread', async () => {
    const { store, events, release } = gatedStore();
    const failure = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'writing the access audit: service error (503)');
    const outcome = retrieve({ ...deps, research: store }, frameRequest('1', {
      disclosing: async () => {
        release();
        throw failure;
      },
    }));
    await expect(outcome).rejects.toBe(failure);
    expect(events).toEqual(['read started', 'read opened', 'read closed']);
  });
});
