import { HttpRequest } from '@azure/functions';

import { wadoAccessTarget } from '../../../functions/wado';

const request = () =>
  new HttpRequest({ url: 'http://host/api/dicomweb/studies/2.25.1/series/2.25.2', method: 'GET', params: { study: '2.25.1', series: '2.25.2' } });

describe('the access audit of WADO-RS', () => {
  test('given a success the handler did not record, then describing it throws (the guard withholds the answer)', () => {
    expect(() => wadoAccessTarget(request(), { status: 200, body: 'bytes' })).toThrow(/record/);
  });

  test('given an error answer, then nothing returned and the UIDs asked for', () => {
    const target = wadoAccessTarget(request(), { status: 404, jsonBody: {} });
    expect(target.returned).toBeUndefined();
    expect(target.requested).toEqual({ studies: ['2.25.1'], series: ['2.25.2'], instances: [] });
  });
});
