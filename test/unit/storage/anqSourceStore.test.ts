/** The parts of the ANQ adapter that need no S3 server; reads are tested on a real one in test/integration/anqSource.test.ts. */
import type { S3Client } from '@aws-sdk/client-s3';

import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { anqObjectName, listAnqFiles, parseAnqObjectName, RestSnapshotResolver } from '../../../shared/storage/anqSourceStore';

describe('ANQ object names', () => {
  test('given a key alone, then it names the live object', () => {
    expect(anqObjectName('dicom/a b.dcm')).toBe('dicom/a b.dcm');
    expect(parseAnqObjectName('dicom/a b.dcm')).toEqual({ key: 'dicom/a b.dcm' });
  });

  test('given a key and a snapshot, then the name round-trips with the snapshot as the floor', () => {
    const name = anqObjectName('dicom/x/1.dcm', 42);
    expect(name).toBe('.snapshot/42/dicom/x/1.dcm');
    expect(parseAnqObjectName(name)).toEqual({ key: 'dicom/x/1.dcm', snapshotFloor: 42 });
  });

  test('given a malformed snapshot part, then it is refused', () => {
    for (const bad of ['.snapshot/x/a.dcm', '.snapshot//a.dcm', '.snapshot/-1/a.dcm']) {
      expect(() => parseAnqObjectName(bad)).toThrow(expect.objectContaining({ code: ErrorCodes.SOURCE_NOT_ALLOWED }));
    }
  });
});

describe('RestSnapshotResolver', () => {
  const snap = (id: number, source = '2') => ({ id, name: `${id}_replication`, source_file_id: source });

  test('given snapshots newer than the floor, then the newest is read, and a cached list is reused within its time to live', async () => {
    let calls = 0;
    let clock = 0;
    const resolver = new RestSnapshotResolver(async () => (calls++, [snap(3), snap(5), snap(4)]), () => true, 1000, () => clock);
    expect(await resolver.newestFrom(3)).toEqual({ id: 5, name: '5_replication' });
    clock = 500;
    expect(await resolver.newestFrom(4)).toEqual({ id: 5, name: '5_replication' });
    expect(calls).toBe(1);
  });

  test('given a floor newer than the cached list, then it lists again rather than read an older snapshot', async () => {
    let listed = [snap(3)];
    const resolver = new RestSnapshotResolver(async () => listed, () => true, 60_000, () => 0);
    expect(await resolver.newestFrom(3)).toEqual({ id: 3, name: '3_replication' });
    listed = [snap(3), snap(6)];
    expect(await resolver.newestFrom(6)).toEqual({ id: 6, name: '6_replication' });
  });

  test('given only snapshots of another directory or older than the floor, then there is none', async () => {
    const resolver = new RestSnapshotResolver(async () => [snap(9, '77'), snap(2)], (s) => s.source_file_id === '2');
    expect(await resolver.newestFrom(3)).toBeUndefined();
  });

  test('given a listing fault, then it propagates as it came', async () => {
    const resolver = new RestSnapshotResolver(async () => {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'down');
    });
    await expect(resolver.newestFrom(1)).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
  });
});

describe('listAnqFiles', () => {
  test('given a listing of three pages, then it follows the continuation tokens, leaves out directories and, for the live tree, the snapshot directory', async () => {
    const sent: Record<string, unknown>[] = [];
    const pages: Record<string, { Contents: { Key: string; ETag: string; Size: number }[]; IsTruncated: boolean; NextContinuationToken?: string }> = {
      start: { Contents: [{ Key: 'dicom/a.dcm', ETag: '"1"', Size: 1 }, { Key: 'dicom/sub/', ETag: '"d"', Size: 0 }], IsTruncated: true, NextContinuationToken: 't1' },
      t1: { Contents: [{ Key: '.snapshot/3_x/dicom/a.dcm', ETag: '"s"', Size: 1 }], IsTruncated: true, NextContinuationToken: 't2' },
      t2: { Contents: [{ Key: 'dicom/sub/b.dcm', ETag: '"2"', Size: 2 }], IsTruncated: false },
    };
    const client = {
      send: async (command: { input: Record<string, unknown> }) => {
        sent.push(command.input);
        return pages[(command.input.ContinuationToken as string | undefined) ?? 'start'];
      },
    } as unknown as S3Client;
    const keys: string[] = [];
    for await (const f of listAnqFiles(client, 'replica', 'dicom/', { pageSize: 2 })) keys.push(`${f.key}:${f.size}`);
    expect(keys).toEqual(['dicom/a.dcm:1', 'dicom/sub/b.dcm:2']);
    expect(sent.map((i) => [i.Prefix, i.ContinuationToken, i.MaxKeys])).toEqual([['dicom/', undefined, 2], ['dicom/', 't1', 2], ['dicom/', 't2', 2]]);
  });

  test('given a snapshot, then it lists under .snapshot/<name>/ and gives keys without that part', async () => {
    const client = {
      send: async (command: { input: Record<string, unknown> }) => ({ Contents: [{ Key: `${String(command.input.Prefix)}x.dcm`, ETag: '"1"', Size: 3 }], IsTruncated: false }),
    } as unknown as S3Client;
    const listed = [];
    for await (const f of listAnqFiles(client, 'replica', 'dicom/', { snapshotName: '3_x' })) listed.push(f.key);
    expect(listed).toEqual(['dicom/x.dcm']);
  });
});
