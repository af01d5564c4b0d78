import { basicProfile, defaultProfile, loadProfile } from '../../../../shared/dicom/deid/profile';
import { ErrorCodes, isPipelineError } from '../../../../shared/errors';

function faultOf(json: unknown): string {
  try {
    loadProfile(json);
  } catch (e) {
    if (isPipelineError(e, ErrorCodes.PROFILE_INVALID)) return e.message;
    throw e;
  }
  throw new Error('expected PROFILE_INVALID');
}

describe('loadProfile', () => {
  it('given the shipped profiles, then they load with their options', () => {
    expect(basicProfile().options.size).toBe(0);
    const d = defaultProfile();
    expect(d.name).toBe('research-default');
    expect(d.version).toBe('1.2.0');
    expect([...d.options].sort()).toEqual([
      'cleanDescriptors',
      'cleanStructuredContent',
      'retainDeviceIdentity',
      'retainLongitudinalModifiedDates',
      'retainPatientCharacteristics',
      'retainSafePrivate',
    ]);
  });

  it('given overrides by keyword, tag and mask, then each is resolved to its tag', () => {
    const p = loadProfile({
      name: 'x',
      version: '1.0.0',
      options: [],
      overrides: { StudyDescription: { action: 'keep' }, '0008103E': { action: 'empty' }, '60xx3000': { action: 'keep' } },
    });
    expect(p.overrides.get(0x00081030)).toEqual({ action: 'keep' });
    expect(p.overrides.get(0x0008103e)).toEqual({ action: 'empty' });
    expect(p.maskOverrides).toEqual([{ mask: 0xff00ffff, value: 0x60003000, override: { action: 'keep' } }]);
  });

  it('given one attribute overridden by keyword and by tag, then the duplicate is named', () => {
    expect(faultOf({ name: 'x', version: '1.0.0', options: [], overrides: { StudyDescription: { action: 'keep' }, '00081030': { action: 'keep' } } })).toMatch(/overridden twice/);
  });

  it('given a missing name and version, then one message names both', () => {
    const m = faultOf({ options: [] });
    expect(m).toMatch(/name/);
    expect(m).toMatch(/version/);
  });

  it('given an unknown option, then it is named', () => {
    expect(faultOf({ name: 'x', version: '1.0.0', options: ['retainEverything'] })).toMatch(/unknown option "retainEverything"/);
  });

  it('given both longitudinal options, then they conflict', () => {
    expect(faultOf({ name: 'x', version: '1.0.0', options: ['retainLongitudinalFullDates', 'retainLongitudinalModifiedDates'] })).toMatch(/exclude each other/);
  });

  it('given an unknown keyword, a bad action or a misplaced value, then each is named', () => {
    const m = faultOf({
      name: 'x',
      version: '1.0.0',
      options: [],
      overrides: {
        PatientNmae: { action: 'keep' },
        PatientSex: { action: 'scramble' },
        Modality: { action: 'keep', value: 'CT' },
        StudyDate: { action: 'replace' },
        PatientWeight: { action: 'shift' },
        '00191010': { action: 'keep' },
      },
    });
    expect(m).toMatch(/unknown attribute "PatientNmae"/);
    expect(m).toMatch(/PatientSex: action must be one of/);
    expect(m).toMatch(/Modality: value is only allowed with replace/);
    expect(m).toMatch(/StudyDate: replace needs a string value/);
    expect(m).toMatch(/PatientWeight: shift applies to DA, DT and TM/);
    expect(m).toMatch(/private attributes are configured in safePrivate/);
  });

  it('given malformed safe private entries or unknown fields, then they are named', () => {
    const m = faultOf({
      name: 'x',
      version: '1.0.0',
      options: ['retainSafePrivate'],
      safePrivate: [{ creator: 'ACME', group: '0018', element: 'xx10' }, { creator: '', group: '0019', element: '1010' }],
      extra: true,
    });
    expect(m).toMatch(/safePrivate\[0\]: group must be/);
    expect(m).toMatch(/safePrivate\[1\]: creator/);
    expect(m).toMatch(/safePrivate\[1\]: element/);
    expect(m).toMatch(/unknown field "extra"/);
  });

  it('given something that is not an object, then PROFILE_INVALID', () => {
    expect(faultOf('basic')).toMatch(/JSON object/);
  });
});
