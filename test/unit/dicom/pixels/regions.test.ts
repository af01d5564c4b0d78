import { loadProfile } from '../../../../shared/dicom/deid/profile';
import { boxesFor, parseBurnedInConfig } from '../../../../shared/dicom/pixels/regions';
import { isPipelineError } from '../../../../shared/errors';

const image = { manufacturer: 'ACME Medical', model: 'X1', rows: 480, columns: 640 };

describe('parseBurnedInConfig', () => {
  it('given a valid region list, then the regions, trimmed, and no fault', () => {
    const { config, faults } = parseBurnedInConfig({
      regions: [{ manufacturer: ' ACME Medical ', model: 'X1', rows: 480, columns: 640, boxes: [[0, 0, 640, 40]] }],
    });
    expect(faults).toEqual([]);
    expect(config.regions).toEqual([{ manufacturer: 'ACME Medical', model: 'X1', rows: 480, columns: 640, boxes: [[0, 0, 640, 40]] }]);
  });

  it('given malformed entries, then one fault per problem, each naming where', () => {
    const { config, faults } = parseBurnedInConfig({
      extra: 1,
      regions: [
        { model: 'X1', boxes: [[0, 0, 1, 1]] },
        { manufacturer: 'A', boxes: [] },
        { manufacturer: 'A', boxes: [[0, 0, 0, 5], [1, 2, 3]] },
        { manufacturer: 'A', rows: 10, columns: 10, boxes: [[5, 5, 6, 1]] },
        { manufacturer: 'A', colour: 'red', boxes: [[0, 0, 1, 1]] },
      ],
    });
    expect(config.regions).toEqual([]);
    expect(faults).toEqual([
      'burnedIn: unknown field "extra"',
      'burnedIn.regions[0]: manufacturer must be a non-empty string',
      'burnedIn.regions[1]: boxes must be a non-empty array of [x, y, width, height]',
      'burnedIn.regions[2].boxes[0]: must be [x, y, width, height], integers, x and y from 0, width and height from 1',
      'burnedIn.regions[2].boxes[1]: must be [x, y, width, height], integers, x and y from 0, width and height from 1',
      'burnedIn.regions[3].boxes[0]: reaches past the 10x10 image it is declared for',
      'burnedIn.regions[4]: unknown field "colour"',
    ]);
  });

  it('given a profile whose burnedIn is malformed, then loadProfile fails with PROFILE_INVALID naming it', () => {
    let caught: unknown;
    try {
      loadProfile({ name: 'p', version: '1.0.0', options: ['cleanPixelData'], burnedIn: { regions: [{ manufacturer: 'A', boxes: 'top' }] } });
    } catch (e) {
      caught = e;
    }
    expect(isPipelineError(caught, 'PROFILE_INVALID')).toBe(true);
    expect((caught as Error).message).toContain('burnedIn.regions[0]: boxes must be');
  });

  it('given a profile with valid regions, then it loads and keeps them', () => {
    const burnedIn = { regions: [{ manufacturer: 'A', boxes: [[0, 0, 1, 1]] }] };
    expect(loadProfile({ name: 'p', version: '1.0.0', options: ['cleanPixelData'], burnedIn }).burnedIn).toEqual(burnedIn);
  });
});

describe('boxesFor', () => {
  const config = parseBurnedInConfig({
    regions: [
      { manufacturer: 'acme medical', boxes: [[0, 0, 640, 20]] },
      { manufacturer: 'ACME Medical', model: 'X1', rows: 480, columns: 640, boxes: [[600, 400, 40, 80]] },
      { manufacturer: 'ACME Medical', model: 'X2', boxes: [[1, 1, 1, 1]] },
      { manufacturer: 'ACME Medical', model: 'X1', rows: 600, boxes: [[2, 2, 2, 2]] },
      { manufacturer: 'Other', boxes: [[3, 3, 3, 3]] },
    ],
  }).config;

  it('given a device matching a manufacturer-wide and a model set, then the boxes of both', () => {
    expect(boxesFor(config, image)).toEqual([[0, 0, 640, 20], [600, 400, 40, 80]]);
  });

  it('given another image size, then the sets for that size do not apply', () => {
    expect(boxesFor(config, { ...image, rows: 600 })).toEqual([[0, 0, 640, 20], [2, 2, 2, 2]]);
  });

  it('given an unknown manufacturer, then no box', () => {
    expect(boxesFor(config, { ...image, manufacturer: 'Nobody' })).toEqual([]);
  });

  it('given a box entirely outside a smaller image, then it is dropped', () => {
    expect(boxesFor(config, { ...image, model: 'X9', rows: 10, columns: 10 })).toEqual([[0, 0, 10, 10]]);
  });
});
