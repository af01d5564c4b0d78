import {
  DATE_SHIFT_MAX_DAYS,
  DATE_SHIFT_MIN_DAYS,
  dateShiftDays,
  pseudonym,
  researchUid,
  shiftDate,
  shiftDateTime,
} from '../../../../shared/dicom/deid/pseudonyms';

const key = Buffer.from('test key one, 32 bytes long.....');
const otherKey = Buffer.from('test key two, 32 bytes long.....');
const UID = /^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$/;

describe('researchUid', () => {
  it('given the same key and UID, then the same valid 2.25 UID of at most 64 characters', () => {
    const a = researchUid(key, '1.2.3.4');
    expect(researchUid(key, '1.2.3.4')).toBe(a);
    expect(a).toMatch(/^2\.25\.[1-9]\d*$/);
    expect(a).toMatch(UID);
    expect(a.length).toBeLessThanOrEqual(64);
  });

  it('given NUL or space padding, then the padding does not change the result', () => {
    expect(researchUid(key, '1.2.3.4\0')).toBe(researchUid(key, '1.2.3.4'));
  });

  it('given another key or another UID, then another UID', () => {
    expect(researchUid(otherKey, '1.2.3.4')).not.toBe(researchUid(key, '1.2.3.4'));
    expect(researchUid(key, '1.2.3.5')).not.toBe(researchUid(key, '1.2.3.4'));
  });

  it('given many UIDs, then every result is valid', () => {
    for (let i = 0; i < 500; i++) {
      const u = researchUid(key, `1.2.${i}`);
      expect(u).toMatch(UID);
      expect(u.length).toBeLessThanOrEqual(64);
    }
  });
});

describe('pseudonym', () => {
  it('given a patient ID, then a prefixed 13-character upper-case pseudonym that fits SH', () => {
    const p = pseudonym(key, 'patient', 'MRN1');
    expect(p).toMatch(/^P[0-9A-HJKMNP-TV-Z]{12}$/);
    expect(p.length).toBeLessThanOrEqual(16);
    expect(pseudonym(key, 'accession', 'MRN1')).toMatch(/^A/);
    expect(pseudonym(key, 'study-id', 'MRN1')).toMatch(/^S/);
  });

  it('given the same inputs, then the same pseudonym; another key, kind or issuer gives another', () => {
    const p = pseudonym(key, 'patient', 'MRN1', 'HOSP');
    expect(pseudonym(key, 'patient', 'MRN1', 'HOSP')).toBe(p);
    expect(pseudonym(otherKey, 'patient', 'MRN1', 'HOSP')).not.toBe(p);
    expect(pseudonym(key, 'patient', 'MRN1', 'OTHER')).not.toBe(p);
    expect(pseudonym(key, 'accession', 'MRN1', 'HOSP').slice(1)).not.toBe(p.slice(1));
  });
});

describe('dateShiftDays', () => {
  it('given one patient, then one shift in the documented range; another key moves it', () => {
    const d = dateShiftDays(key, 'MRN1', 'HOSP');
    expect(dateShiftDays(key, 'MRN1', 'HOSP')).toBe(d);
    expect(Number.isInteger(d)).toBe(true);
    const shifts = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const s = dateShiftDays(key, `MRN${i}`);
      expect(s).toBeGreaterThanOrEqual(DATE_SHIFT_MIN_DAYS);
      expect(s).toBeLessThanOrEqual(DATE_SHIFT_MAX_DAYS);
      shifts.add(s);
    }
    expect(shifts.size).toBeGreaterThan(150);
    expect([...Array(10).keys()].some((i) => dateShiftDays(otherKey, `MRN${i}`) !== dateShiftDays(key, `MRN${i}`))).toBe(true);
  });
});

describe('shiftDate and shiftDateTime', () => {
  it('given a DA, then it moves by whole days across months, years and leap days', () => {
    expect(shiftDate('20240301', -1)).toBe('20240229');
    expect(shiftDate('20210101', -366)).toBe('20200101');
    expect(shiftDate('2021.03.15', -1)).toBe('2021.03.14');
    expect(shiftDate('20210315\\20210316', -10)).toBe('20210305\\20210306');
  });

  it('given something that is not a date, then undefined', () => {
    expect(shiftDate('20230230', -1)).toBeUndefined();
    expect(shiftDate('yesterday', -1)).toBeUndefined();
  });

  it('given a DT, then time, fraction, offset and precision are kept', () => {
    expect(shiftDateTime('20210315101530.123456+0100', -15)).toBe('20210228101530.123456+0100');
    expect(shiftDateTime('20210315', -15)).toBe('20210228');
    expect(shiftDateTime('202103', -1)).toBe('202102');
    expect(shiftDateTime('2021', -400)).toBe('2019');
    expect(shiftDateTime('2021031510xx', -1)).toBeUndefined();
  });

  it('given two dates of one patient, then their interval survives the shift', () => {
    const d = dateShiftDays(key, 'MRN1');
    const a = shiftDate('20200110', d) as string;
    const b = shiftDate('20200301', d) as string;
    const days = (s: string) => Date.UTC(Number(s.slice(0, 4)), Number(s.slice(4, 6)) - 1, Number(s.slice(6, 8))) / 86_400_000;
    expect(days(b) - days(a)).toBe(51);
  });
});
