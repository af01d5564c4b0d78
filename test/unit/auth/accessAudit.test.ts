import { accessRecord } from '../../../shared/audit/accessAudit';
import { AUDIT_MAX_LIMIT, parseAuditQuery } from '../../../shared/audit/auditView';
import { monthsBetween } from '../../../shared/audit/cosmosAccessAudit';
import { ErrorCodes } from '../../../shared/errors';

const principal = { callerId: 'oid-1', kind: 'user' as const, roles: ['Research.Read'], via: 'bearer' as const };

describe('accessRecord', () => {
  test('given requested UIDs the answer does not hold, then they are dropped; duplicates are recorded once', () => {
    const r = accessRecord({
      id: 'a',
      time: new Date('2026-12-01T10:00:00Z'),
      principal,
      route: 'qidoStudies',
      method: 'GET',
      role: 'Research.Read',
      status: 200,
      invocationId: 'i',
      target: { returned: { studies: ['2.25.1', '2.25.1', '2.25.2'] }, requested: { studies: ['2.25.1', '1.2.840.5'] }, queryKeys: ['limit', 'StudyInstanceUID', 'limit'] },
    });
    expect(r).toEqual({
      id: 'a',
      pk: 'oid-1|2026-12',
      time: '2026-12-01T10:00:00.000Z',
      callerId: 'oid-1',
      callerKind: 'user',
      via: 'bearer',
      route: 'qidoStudies',
      method: 'GET',
      role: 'Research.Read',
      status: 200,
      returned: { studies: ['2.25.1', '2.25.2'], series: [], instances: [] },
      requested: { studies: ['2.25.1'], series: [], instances: [] },
      queryKeys: ['StudyInstanceUID', 'limit'],
      invocationId: 'i',
    });
  });
});

describe('parseAuditQuery', () => {
  const now = new Date('2026-12-01T12:00:00Z');
  const parse = (q: string) => parseAuditQuery(new URLSearchParams(q), now);

  test('given nothing, then the last 30 days, 100 records, any caller', () => {
    expect(parse('')).toEqual({ from: '2026-11-01T12:00:00.000Z', to: '2026-12-01T12:00:00.000Z', limit: 100 });
  });

  test('given a caller, a study and a range, then those', () => {
    expect(parse('caller=oid-1&study=2.25.9&from=2026-01-01&to=2026-02-01T00:00:00Z&limit=5')).toEqual({
      callerId: 'oid-1',
      studyInstanceUid: '2.25.9',
      from: '2026-01-01T00:00:00.000Z',
      to: '2026-02-01T00:00:00.000Z',
      limit: 5,
    });
  });

  test.each([
    ['from=yesterday', '"from"'],
    ['to=2026-13-45', '"to"'],
    ['from=2026-02-01&to=2026-01-01', 'before'],
    ['from=2000-01-01', 'ten years'],
    [`limit=${AUDIT_MAX_LIMIT + 1}`, '"limit"'],
    ['caller=a%20b', '"caller"'],
    ['study=DOE', '"study"'],
  ])('given %s, then QUERY_INVALID naming the fault', (q, fault) => {
    expect(() => parse(q)).toThrow(expect.objectContaining({ code: ErrorCodes.QUERY_INVALID, message: expect.stringContaining(fault) }));
  });
});

describe('monthsBetween', () => {
  test('given a range across a year end, then every month partition, newest first', () => {
    expect(monthsBetween('2025-11-15T00:00:00Z', '2026-02-03T00:00:00Z').map((m) => m.slice(0, 7))).toEqual(['2026-02', '2026-01', '2025-12', '2025-11']);
  });
});
