import { basicProfile, defaultProfile, loadProfile, ProfileOption } from '../../../../shared/dicom/deid/profile';
import { resolveAction, resolveCombinedCode } from '../../../../shared/dicom/deid/resolve';
import { tagOf } from './helpers';

const withOptions = (...options: ProfileOption[]) => loadProfile({ name: 't', version: '1.0.0', options });
const action = (keyword: string, options: ProfileOption[] = []) => resolveAction(tagOf(keyword), withOptions(...options)).action;

describe('resolveAction', () => {
  it('given the Basic profile, then the table codes apply', () => {
    expect(action('PatientAge')).toBe('remove'); // X
    expect(action('PatientSex')).toBe('empty'); // Z
    expect(action('SOPInstanceUID')).toBe('replaceUid'); // U
    expect(action('PersonName')).toBe('dummy'); // D
    expect(action('Modality')).toBe('keep'); // not listed
    expect(action('PatientID')).toBe('pseudonymize'); // Z/D, Type 2, pseudonym as the dummy
    expect(action('PatientName')).toBe('pseudonymize');
    expect(action('AccessionNumber')).toBe('pseudonymize');
  });

  it('given each retain option, then its K replaces the Basic code', () => {
    expect(action('PatientAge', ['retainPatientCharacteristics'])).toBe('keep');
    expect(action('SOPInstanceUID', ['retainUids'])).toBe('keep');
    expect(action('DeviceSerialNumber', ['retainDeviceIdentity'])).toBe('keep');
    expect(action('InstitutionName', ['retainInstitutionIdentity'])).toBe('keep');
    expect(action('StudyDate', ['retainLongitudinalFullDates'])).toBe('keep');
  });

  it('given the modified-dates option, then table dates are shifted', () => {
    expect(action('StudyDate', ['retainLongitudinalModifiedDates'])).toBe('shift');
    expect(action('AcquisitionDateTime', ['retainLongitudinalModifiedDates'])).toBe('shift');
  });

  it('given each clean option, then its C replaces the Basic code', () => {
    expect(action('StudyDescription', ['cleanDescriptors'])).toBe('clean');
    expect(action('ContentSequence', ['cleanStructuredContent'])).toBe('clean');
    expect(resolveAction(0x60003000, withOptions('cleanGraphics')).action).toBe('clean');
  });

  it('given Retain Device Identity K and Modified Dates C on a calibration date, then C (shift) wins', () => {
    expect(action('DateOfLastCalibration', ['retainDeviceIdentity'])).toBe('keep');
    const r = resolveAction(tagOf('DateOfLastCalibration'), withOptions('retainDeviceIdentity', 'retainLongitudinalModifiedDates'));
    expect(r.action).toBe('shift');
    expect(r.option).toBe('retainLongitudinalModifiedDates');
  });

  it('given combined codes, then the first action unless the attribute is Type 1 or 2 in the known list', () => {
    expect(resolveCombinedCode('X/Z', tagOf('AcquisitionDate'))).toBe('X');
    expect(resolveCombinedCode('X/Z/D', tagOf('InstitutionName'))).toBe('X');
    expect(resolveCombinedCode('Z/D', tagOf('ContentDate'))).toBe('D'); // Type 1 in SR
    expect(resolveCombinedCode('Z/D', tagOf('ContrastBolusAgent'))).toBe('Z'); // Type 2
    expect(resolveCombinedCode('X/Z', tagOf('AcquisitionContextSequence'))).toBe('Z');
    // Reference sequences keep their references, with the UIDs replaced (IOD conformance).
    expect(resolveCombinedCode('X/Z/U*', tagOf('ReferencedImageSequence'))).toBe('U');
    expect(action('ContentDate')).toBe('dummy');
    expect(action('ReferencedImageSequence')).toBe('keep');
    // Type 2 in the SR Document Series only: emptied in SR, removed elsewhere.
    expect(resolveCombinedCode('X/Z/D', tagOf('ReferencedPerformedProcedureStepSequence'), '1.2.840.10008.5.1.4.1.1.88.11')).toBe('Z');
    expect(resolveCombinedCode('X/Z/D', tagOf('ReferencedPerformedProcedureStepSequence'), '1.2.840.10008.5.1.4.1.1.2')).toBe('X');
  });

  it('given attributes whose type depends on the IOD, then the dummy or empty value where the IOD requires them and removal elsewhere', () => {
    const SEG = '1.2.840.10008.5.1.4.1.1.66.4';
    const PET = '1.2.840.10008.5.1.4.1.1.128';
    const RT_PLAN = '1.2.840.10008.5.1.4.1.1.481.5';
    const CT = '1.2.840.10008.5.1.4.1.1.2';
    // Type 1 in Enhanced General Equipment.
    expect(resolveCombinedCode('X/Z/D', tagOf('DeviceSerialNumber'), SEG)).toBe('D');
    expect(resolveCombinedCode('X/Z/D', tagOf('DeviceSerialNumber'), CT)).toBe('X');
    // PET Series (Type 1) and PET Image (Type 2).
    expect(resolveCombinedCode('X/D', tagOf('SeriesDate'), PET)).toBe('D');
    expect(resolveCombinedCode('X/Z', tagOf('AcquisitionTime'), PET)).toBe('Z');
    expect(resolveCombinedCode('X/D', tagOf('SeriesDate'), CT)).toBe('X');
    // RT General Plan (Type 2, X/D: the dummy).
    expect(resolveCombinedCode('X/D', tagOf('RTPlanDate'), RT_PLAN)).toBe('D');
  });

  it('given mask rows, then overlay data, overlay comments and curves of any group follow the table', () => {
    const basic = basicProfile();
    expect(resolveAction(0x60003000, basic).action).toBe('remove');
    expect(resolveAction(0x601e3000, basic).action).toBe('remove');
    expect(resolveAction(0x60024000, basic).action).toBe('remove');
    expect(resolveAction(0x50020010, basic).action).toBe('remove');
    // Overlay attributes outside the table (rows, columns) are kept.
    expect(resolveAction(0x60000010, basic).action).toBe('keep');
  });

  it('given a public date that the table does not list, then it follows the date options by VR', () => {
    expect(action('ExpiryDate')).toBe('remove');
    expect(action('ExpiryDate', ['retainLongitudinalModifiedDates'])).toBe('shift');
    expect(action('ExpiryDate', ['retainLongitudinalFullDates'])).toBe('keep');
  });

  it('given private attributes, then removed unless safe-listed under Retain Safe Private', () => {
    const basic = basicProfile();
    const safe = defaultProfile();
    const ctx = { privateCreator: 'SIEMENS MR HEADER', vr: 'IS' };
    expect(resolveAction(0x0019100c, basic, ctx).action).toBe('remove');
    expect(resolveAction(0x0019100c, safe, ctx).action).toBe('keep');
    expect(resolveAction(0x0019110c, safe, ctx).action).toBe('keep'); // any block
    expect(resolveAction(0x0019100c, safe, { privateCreator: 'ACME', vr: 'IS' }).action).toBe('remove');
    expect(resolveAction(0x0019100c, safe, { privateCreator: 'SIEMENS MR HEADER', vr: 'LO' }).action).toBe('remove');
    expect(resolveAction(0x00190010, safe, ctx).action).toBe('keepIfBlockKept');
    expect(resolveAction(0x00190010, basic, ctx).action).toBe('remove');
    expect(resolveAction(0x00991002, safe, { privateCreator: 'NQHeader', vr: 'UI' }).action).toBe('replaceUid');
  });

  it('given a profile addition to the safe list, then that element is kept', () => {
    const p = loadProfile({
      name: 't',
      version: '1.0.0',
      options: ['retainSafePrivate'],
      safePrivate: [{ creator: 'ACME 1.1', group: '0029', element: 'xx08', vr: 'DS' }],
    });
    expect(resolveAction(0x00291008, p, { privateCreator: 'ACME 1.1', vr: 'DS' }).action).toBe('keep');
    expect(resolveAction(0x00291009, p, { privateCreator: 'ACME 1.1', vr: 'DS' }).action).toBe('remove');
  });

  it('given overrides, then they win over the table and the options', () => {
    const p = loadProfile({
      name: 't',
      version: '1.0.0',
      options: ['retainPatientCharacteristics'],
      overrides: {
        PatientAge: { action: 'remove' },
        SeriesDescription: { action: 'keep' },
        InstitutionName: { action: 'replace', value: 'SITE 01' },
        OperatorsName: { action: 'hash' },
        StudyDate: { action: 'shift' },
        '60xx3000': { action: 'keep' },
      },
    });
    expect(resolveAction(tagOf('PatientAge'), p).action).toBe('remove');
    expect(resolveAction(tagOf('SeriesDescription'), p).action).toBe('keep');
    expect(resolveAction(tagOf('InstitutionName'), p)).toMatchObject({ action: 'replace', value: 'SITE 01' });
    expect(resolveAction(tagOf('OperatorsName'), p).action).toBe('pseudonymize');
    expect(resolveAction(tagOf('StudyDate'), p).action).toBe('shift');
    expect(resolveAction(0x60043000, p).action).toBe('keep');
  });

  it('given the same public tag asked again (the answers are remembered per profile), then the VR, the SOP class and the profile still decide', () => {
    const basic = basicProfile();
    const modified = defaultProfile();
    // An attribute the table does not list: its VR decides (a date goes, a text stays).
    const unlisted = tagOf('SliceThickness');
    for (let i = 0; i < 2; i++) {
      expect(resolveAction(unlisted, basic, { vr: 'DA' }).action).toBe('remove');
      expect(resolveAction(unlisted, basic, { vr: 'LO' }).action).toBe('keep');
    }
    // The SOP class decides this one, whichever was asked first.
    const pps = tagOf('ReferencedPerformedProcedureStepSequence');
    for (let i = 0; i < 2; i++) {
      expect(resolveAction(pps, basic, { vr: 'SQ', sopClassUid: '1.2.840.10008.5.1.4.1.1.88.11' }).action).toBe('empty');
      expect(resolveAction(pps, basic, { vr: 'SQ', sopClassUid: '1.2.840.10008.5.1.4.1.1.2' }).action).toBe('remove');
    }
    // Another profile has its own answers.
    expect(resolveAction(tagOf('StudyDate'), basic).action).not.toBe(resolveAction(tagOf('StudyDate'), modified).action);
    // The same question to the same profile gets the remembered answer, not a new one.
    expect(resolveAction(tagOf('StudyDate'), basic)).toBe(resolveAction(tagOf('StudyDate'), basic));
    // A remembered answer cannot be changed by a caller.
    expect(Object.isFrozen(resolveAction(tagOf('PatientName'), basic))).toBe(true);
  });

  it('given more made-up public tags than are remembered, then each still gets its action', () => {
    const basic = basicProfile();
    const name = resolveAction(tagOf('PatientName'), basic).action;
    const studyDate = resolveAction(tagOf('StudyDate'), basic).action;
    // 20,000 public tags no dictionary knows (even groups 7FF0-7FF2): a date goes, a text stays.
    const wrong: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const tag = ((0x7ff0 + 2 * Math.floor(i / 0x8000)) * 0x10000 + (i % 0x8000) + 0x1000) >>> 0;
      if (resolveAction(tag, basic, { vr: i % 2 ? 'DA' : 'LO' }).action !== (i % 2 ? 'remove' : 'keep')) wrong.push(tag);
    }
    expect(wrong).toEqual([]);
    expect(resolveAction(tagOf('PatientName'), basic).action).toBe(name);
    expect(resolveAction(tagOf('StudyDate'), basic).action).toBe(studyDate);
    expect(resolveAction(tagOf('AccessionNumber'), basic).action).toBe('pseudonymize');
  });
});
