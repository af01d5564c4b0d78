/**
 * What `npm start` prints once the samples are processed: one summary by status and code, and
 * warnings only for outcomes that are not as designed.
 */
import { isConsoleWorthy, isDesignedOutcome, summarizeIngestions } from '../../../local/startSummary';

const repeat = <T>(n: number, item: T): T[] => Array.from({ length: n }, () => item);

describe('the start summary', () => {
  test('given the sample outcomes, then one line by status with the codes, one by modality, and no unexpected outcome', () => {
    const records = [
      ...repeat(3, { status: 'cataloged', modality: 'CT' }),
      { status: 'cataloged', modality: 'MR' },
      ...repeat(2, { status: 'quarantined', errorCode: 'DEID_BURNED_IN_ANNOTATION' }),
      ...repeat(2, { status: 'failed', errorCode: 'DICOM_MISSING_UID' }),
      { status: 'failed', errorCode: 'DICOM_DICOMDIR' },
    ];
    const summary = summarizeIngestions(records, 'samples');
    expect(summary.lines[0]).toBe('ingested 9 samples: 4 cataloged, 2 quarantined (DEID_BURNED_IN_ANNOTATION 2), 3 failed (DICOM_MISSING_UID 2, DICOM_DICOMDIR 1)');
    expect(summary.lines[1]).toBe('  cataloged by modality: CT 3, MR 1');
    expect(summary.lines[2]).toMatch(/^ {2}the 5 quarantined or failed ones are as designed/);
    expect(summary.unexpected).toEqual([]);
  });

  test('given failures a retry could fix, an internal error or a status that is not final, then they are counted as unexpected', () => {
    const records = [
      { status: 'cataloged', modality: 'CT' },
      { status: 'failed', errorCode: 'INTERNAL' },
      ...repeat(2, { status: 'failed', errorCode: 'SERVICE_UNAVAILABLE' }),
      { status: 'processing' },
      { status: 'quarantined' },
    ];
    const summary = summarizeIngestions(records, 'files');
    expect(summary.lines[0]).toBe('ingested 6 files: 1 cataloged, 1 quarantined, 3 failed (SERVICE_UNAVAILABLE 2, INTERNAL 1), 1 processing');
    expect(summary.unexpected).toEqual(['failed SERVICE_UNAVAILABLE 2', 'failed INTERNAL 1', 'processing 1', 'quarantined 1']);
    expect(summary.lines.some((l) => /as designed/.test(l))).toBe(false);
  });

  test('given nothing ingested, then one line and nothing unexpected', () => {
    expect(summarizeIngestions([], 'files')).toEqual({ lines: ['ingested 0 files'], unexpected: [] });
  });

  test('given each final status, then cataloged and deleted are as designed, and a rejection only with a DICOM_ or DEID_ code', () => {
    expect(isDesignedOutcome({ status: 'cataloged' })).toBe(true);
    expect(isDesignedOutcome({ status: 'deleted' })).toBe(true);
    expect(isDesignedOutcome({ status: 'failed', errorCode: 'DICOM_TRUNCATED' })).toBe(true);
    expect(isDesignedOutcome({ status: 'quarantined', errorCode: 'DEID_VERIFICATION_FAILED' })).toBe(true);
    expect(isDesignedOutcome({ status: 'failed', errorCode: 'SOURCE_NOT_FOUND' })).toBe(false);
    expect(isDesignedOutcome({})).toBe(false);
  });
});

describe('console lines', () => {
  test("given a function's warnings (a file quarantined, a 401), then the host log only; errors and the host's own warnings also reach the console", () => {
    expect(isConsoleWorthy('warning', 'ingestReplicatedFile')).toBe(false);
    expect(isConsoleWorthy('information', '')).toBe(false);
    expect(isConsoleWorthy('warning', '')).toBe(true);
    expect(isConsoleWorthy('error', 'ingestReplicatedFile')).toBe(true);
    expect(isConsoleWorthy('critical', '')).toBe(true);
  });
});
