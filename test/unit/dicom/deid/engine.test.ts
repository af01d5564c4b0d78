import { DicomDataset } from '../../../../shared/dicom/dataset';
import { DeidContext, deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { basicProfile, defaultProfile, loadProfile, ProfileOption } from '../../../../shared/dicom/deid/profile';
import { dateShiftDays, pseudonym, researchUid, shiftDate } from '../../../../shared/dicom/deid/pseudonyms';
import { verifyDeidentifiedDataset } from '../../../../shared/dicom/deid/verify';
import { allText, dataset, el, priv, sampleDataset, seq, tagOf, text } from './helpers';

const key = Buffer.from('unit test key for the deid engine');
const otherKey = Buffer.from('another unit test key for deid...');
const UID = /^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$/;

function ctxWith(options: ProfileOption[], extra: Record<string, unknown> = {}, k = key): DeidContext {
  return { profile: loadProfile({ name: 'test', version: '2.0.0', options, ...extra }), key: k, keyId: 'k1' };
}

function run(ds: DicomDataset, ctx: DeidContext) {
  const report = deidentifyDataset(ds, ctx);
  return { ds, report };
}

describe('deidentifyDataset with the Basic profile', () => {
  const { ds, report } = run(sampleDataset(), { profile: basicProfile(), key, keyId: 'k1' });

  it('then X attributes are gone, Z attributes empty and D attributes dummies', () => {
    expect(text(ds, 'PatientAge')).toBeUndefined();
    expect(text(ds, 'PatientWeight')).toBeUndefined();
    expect(text(ds, 'StudyDescription')).toBeUndefined();
    expect(text(ds, 'InstitutionName')).toBeUndefined(); // X/Z/D, Type 3: X
    expect(text(ds, 'IssuerOfPatientID')).toBeUndefined();
    expect(text(ds, 'PatientSex')).toBe('');
    expect(text(ds, 'StudyDate')).toBe(''); // Z
    expect(text(ds, 'PatientBirthDate')).toBe('');
    expect(text(ds, 'ReferringPhysicianName')).toBe('');
    expect(text(ds, 'Modality')).toBe('CT');
    expect(text(ds, 'SeriesNumber')).toBe('3');
  });

  it('then Patient ID and Patient Name carry the keyed patient pseudonym, accession and study ID theirs', () => {
    const p = pseudonym(key, 'patient', 'MRN4455667');
    expect(text(ds, 'PatientID')).toBe(p);
    expect(text(ds, 'PatientName')).toBe(p);
    expect(text(ds, 'AccessionNumber')).toBe(pseudonym(key, 'accession', 'ACC778899'));
    expect(text(ds, 'StudyID')).toMatch(/^S[0-9A-Z]{12}$/);
  });

  it('then instance UIDs are replaced by research UIDs and the SOP Class UID is kept', () => {
    expect(text(ds, 'StudyInstanceUID')).toBe(researchUid(key, '1.2.826.0.1.3680043.99.1'));
    expect(text(ds, 'FrameOfReferenceUID')).toBe(researchUid(key, '1.2.826.0.1.3680043.99.1.9'));
    expect(text(ds, 'SOPClassUID')).toBe('1.2.840.10008.5.1.4.1.1.2');
    for (const u of Object.values(report.research)) {
      expect(u).toMatch(UID);
      expect((u as string).length).toBeLessThanOrEqual(64);
    }
    expect(report.original.sopInstanceUid).toBe('1.2.826.0.1.3680043.99.1.3');
    expect(report.research.sopInstanceUid).toBe(researchUid(key, '1.2.826.0.1.3680043.99.1.3'));
  });

  it('then the marking says YES, names profile and key, and lists only the Basic code', () => {
    expect(text(ds, 'PatientIdentityRemoved')).toBe('YES');
    expect(text(ds, 'DeidentificationMethod')).toBe('basic 1.0.0; key k1');
    const items = ds.get(tagOf('DeidentificationMethodCodeSequence'))?.items ?? [];
    expect(items.map((i) => text(i, 'CodeValue'))).toEqual(['113100']);
    expect(text(items[0] as DicomDataset, 'CodingSchemeDesignator')).toBe('DCM');
    expect(text(ds, 'LongitudinalTemporalInformationModified')).toBeUndefined();
    expect(text(ds, 'SpecificCharacterSet')).toBe('ISO_IR 100');
  });

  it('then the report counts the actions and holds the identifying values', () => {
    expect(report.actions.removed).toBeGreaterThan(5);
    expect(report.actions.pseudonymized).toBe(4);
    expect(report.identifyingValues).toEqual(expect.arrayContaining(['Smithers', 'Johnathan', 'MRN4455667', '19700101', 'ACC778899', 'Saint Elsewhere Hospital', 'House', 'Gregory']));
    expect(report.identifyingValues).not.toContain('M');
    expect(report.identifyingValues).not.toContain('42');
  });

  it('then every value is encoded with an even length', () => {
    const walk = (d: DicomDataset) => {
      for (const e of d.values()) {
        if (e.value) expect(e.value.length % 2).toBe(0);
        e.items?.forEach(walk);
      }
    };
    walk(ds);
  });

  it('then the verification gate passes', () => {
    expect(verifyDeidentifiedDataset(ds, report, basicProfile())).toEqual({ passed: true, findings: [] });
  });
});

describe('deidentifyDataset determinism', () => {
  it('given the same key twice, then the same output; given another key, then other UIDs, pseudonyms and shift', () => {
    const ctx = { profile: defaultProfile(), key, keyId: 'k1' };
    const a = run(sampleDataset(), ctx).ds;
    const b = run(sampleDataset(), ctx).ds;
    expect(allText(a)).toBe(allText(b));
    const c = run(sampleDataset(), { ...ctx, key: otherKey }).ds;
    for (const k of ['StudyInstanceUID', 'PatientID', 'StudyDate', 'AccessionNumber']) expect(text(c, k)).not.toBe(text(a, k));
  });

  it('given two files of one study, then they share study UID and patient pseudonym', () => {
    const ctx = { profile: defaultProfile(), key, keyId: 'k1' };
    const one = sampleDataset();
    const two = sampleDataset();
    two.set(tagOf('SOPInstanceUID'), el('SOPInstanceUID', '1.2.826.0.1.3680043.99.1.5'));
    const r1 = deidentifyDataset(one, ctx);
    const r2 = deidentifyDataset(two, ctx);
    expect(r1.research.studyInstanceUid).toBe(r2.research.studyInstanceUid);
    expect(r1.research.sopInstanceUid).not.toBe(r2.research.sopInstanceUid);
    expect(text(one, 'PatientID')).toBe(text(two, 'PatientID'));
  });
});

describe('deidentifyDataset options', () => {
  it('given Retain Longitudinal Modified Dates, then dates shift by the patient shift, intervals and time of day kept', () => {
    const { ds } = run(sampleDataset(), ctxWith(['retainLongitudinalModifiedDates']));
    const days = dateShiftDays(key, 'MRN4455667');
    expect(text(ds, 'StudyDate')).toBe(shiftDate('20210315', days));
    expect(text(ds, 'AcquisitionDate')).toBe(shiftDate('20210316', days));
    expect(text(ds, 'StudyTime')).toBe('101530');
    expect(text(ds, 'LongitudinalTemporalInformationModified')).toBe('MODIFIED');
    // Without Retain Patient Characteristics the birth date stays empty, as the table says.
    expect(text(ds, 'PatientBirthDate')).toBe('');
  });

  it('given Modified Dates with Patient Characteristics, then the birth date shifts too and the age is kept', () => {
    const { ds } = run(sampleDataset(), ctxWith(['retainLongitudinalModifiedDates', 'retainPatientCharacteristics']));
    const days = dateShiftDays(key, 'MRN4455667');
    expect(text(ds, 'PatientBirthDate')).toBe(shiftDate('19700101', days));
    expect(text(ds, 'PatientAge')).toBe('051Y');
    expect(text(ds, 'PatientSex')).toBe('M');
    expect(text(ds, 'PatientWeight')).toBe('80');
    const age = (birth: string, at: string) => Number(at.slice(0, 4)) - Number(birth.slice(0, 4)) - (at.slice(4) < birth.slice(4) ? 1 : 0);
    expect(age(text(ds, 'PatientBirthDate') as string, text(ds, 'StudyDate') as string)).toBe(age('19700101', '20210315'));
  });

  it('given Retain Longitudinal Full Dates, then dates are kept and marked UNMODIFIED', () => {
    const { ds } = run(sampleDataset(), ctxWith(['retainLongitudinalFullDates']));
    expect(text(ds, 'StudyDate')).toBe('20210315');
    expect(text(ds, 'LongitudinalTemporalInformationModified')).toBe('UNMODIFIED');
    const codes = (ds.get(tagOf('DeidentificationMethodCodeSequence'))?.items ?? []).map((i) => text(i, 'CodeValue'));
    expect(codes).toEqual(['113100', '113106']);
  });

  it('given Retain UIDs, then UIDs stay', () => {
    const { ds } = run(sampleDataset(), ctxWith(['retainUids']));
    expect(text(ds, 'StudyInstanceUID')).toBe('1.2.826.0.1.3680043.99.1');
    const item = ds.get(tagOf('ReferencedImageSequence'))?.items?.[0] as DicomDataset;
    expect(text(item, 'ReferencedSOPInstanceUID')).toBe('1.2.826.0.1.3680043.99.1.4');
  });

  it('given Retain Device Identity and Retain Institution Identity, then those attributes stay', () => {
    const { ds } = run(sampleDataset(), ctxWith(['retainDeviceIdentity', 'retainInstitutionIdentity']));
    expect(text(ds, 'DeviceSerialNumber')).toBe('SN-998877');
    expect(text(ds, 'StationName')).toBe('CTSTATION7');
    expect(text(ds, 'InstitutionName')).toBe('Saint Elsewhere Hospital');
  });

  it('given Clean Descriptors, then names, IDs and dates are scrubbed from descriptions and the rest kept', () => {
    const ds = sampleDataset();
    ds.set(tagOf('ImageComments'), el('ImageComments', 'Dr. Smithers said MRN4455667 fine'));
    ds.set(tagOf('AdmittingDiagnosesDescription'), el('AdmittingDiagnosesDescription', 'SMITHERS, JOHNATHAN 15/03/2021'));
    run(ds, ctxWith(['cleanDescriptors']));
    expect(text(ds, 'StudyDescription')).toBe('CT chest for');
    expect(text(ds, 'SeriesDescription')).toBe('Axial 5mm');
    expect(text(ds, 'ImageComments')).toBe('said fine');
    expect(text(ds, 'AdmittingDiagnosesDescription')).toBe('');
    expect(text(ds, 'ProtocolName')).toBe('Chest routine');
  });

  it('given Clean Structured Content, then SR content is kept with names and dates inside it cleaned', () => {
    const content = seq('ContentSequence', [
      dataset(el('ValueType', 'TEXT'), el('TextValue', 'Patient Smithers seen 20210315, stable')),
      dataset(el('ValueType', 'PNAME'), el('PersonName', 'Smithers^Johnathan')),
      dataset(el('ValueType', 'UIDREF'), el('UID', '1.2.826.0.1.3680043.99.7')),
    ]);
    const basic = sampleDataset();
    basic.set(content.tag, seq('ContentSequence', [
      dataset(el('ValueType', 'TEXT'), el('TextValue', 'Patient Smithers seen 20210315, stable')),
      dataset(el('ValueType', 'PNAME'), el('PersonName', 'Smithers^Johnathan')),
    ]));
    run(basic, ctxWith([]));
    // Basic's D on the sequence: no content survives, and the dummy is one valid content item.
    const dummy = basic.get(content.tag)?.items as DicomDataset[];
    expect(dummy).toHaveLength(1);
    expect(text(dummy[0] as DicomDataset, 'RelationshipType')).toBe('CONTAINS');
    expect(text(dummy[0] as DicomDataset, 'ValueType')).toBe('TEXT');
    expect(text(dummy[0] as DicomDataset, 'TextValue')).toBe('ANONYMIZED');
    expect(text(dummy[0] as DicomDataset, 'TextValue')).not.toContain('Smithers');

    const ds = sampleDataset();
    ds.set(content.tag, content);
    run(ds, ctxWith(['cleanStructuredContent']));
    const items = ds.get(content.tag)?.items as DicomDataset[];
    expect(text(items[0] as DicomDataset, 'TextValue')).toBe('Patient seen stable');
    expect(text(items[1] as DicomDataset, 'PersonName')).toBe('ANONYMIZED');
    expect(text(items[2] as DicomDataset, 'UID')).toBe(researchUid(key, '1.2.826.0.1.3680043.99.7'));
  });

  it('given a Verifying Observer Sequence (Basic D), then one observer of dummies: name, organization, date-time, an empty code sequence; nothing of the source', () => {
    const observer = () => seq('VerifyingObserverSequence', [
      dataset(
        el('VerifyingObserverName', 'Smithers^Johnathan'),
        el('VerifyingOrganization', 'Springfield General'),
        el('VerificationDateTime', '20210315101530'),
        seq('VerifyingObserverIdentificationCodeSequence', [dataset(el('CodeValue', 'MRN4455667'), el('CodingSchemeDesignator', 'L'), el('CodeMeaning', 'Smithers'))]),
      ),
      dataset(el('VerifyingObserverName', 'Burns^Monty'), el('VerifyingOrganization', 'Springfield General'), el('VerificationDateTime', '20210316')),
    ]);
    for (const options of [[], ['cleanStructuredContent', 'retainLongitudinalModifiedDates']] as ProfileOption[][]) {
      const ds = sampleDataset();
      ds.set(tagOf('VerifyingObserverSequence'), observer());
      const { report } = run(ds, ctxWith(options));
      const items = ds.get(tagOf('VerifyingObserverSequence'))?.items as DicomDataset[];
      expect(items).toHaveLength(1);
      const item = items[0] as DicomDataset;
      expect([...item.keys()].sort((a, b) => a - b)).toEqual(
        ['VerifyingOrganization', 'VerificationDateTime', 'VerifyingObserverName', 'VerifyingObserverIdentificationCodeSequence'].map(tagOf),
      );
      expect(text(item, 'VerifyingObserverName')).toBe('ANONYMIZED');
      expect(text(item, 'VerifyingOrganization')).toBe('ANONYMIZED');
      expect(text(item, 'VerificationDateTime')).toBe('19000101000000');
      expect(item.get(tagOf('VerifyingObserverIdentificationCodeSequence'))?.items).toEqual([]);
      expect(allText(ds)).not.toMatch(/Smithers|Burns|Springfield|MRN4455667|2021031/);
      expect(verifyDeidentifiedDataset(ds, report, ctxWith(options).profile)).toEqual({ passed: true, findings: [] });
    }
  });

  it('given Clean Graphics, then overlay comments are cleaned and overlay bitmaps removed', () => {
    const ds = sampleDataset();
    ds.set(0x60004000, { tag: 0x60004000, vr: 'LT', value: Buffer.from('marker for Smithers ') });
    ds.set(0x60003000, { tag: 0x60003000, vr: 'OW', value: new Uint8Array(8) });
    ds.set(0x60000010, { tag: 0x60000010, vr: 'US', value: Uint8Array.from([2, 0]) });
    run(ds, ctxWith(['cleanGraphics']));
    expect(text(ds, 0x60004000)).toBe('marker for');
    expect(ds.has(0x60003000)).toBe(false);
    expect(ds.has(0x60000010)).toBe(true);
  });

  it('given the Basic profile, then overlays and curves in any repeating group are removed', () => {
    const ds = sampleDataset();
    ds.set(0x60023000, { tag: 0x60023000, vr: 'OW', value: new Uint8Array(8) });
    ds.set(0x60024000, { tag: 0x60024000, vr: 'LT', value: Buffer.from('note') });
    ds.set(0x50003000, { tag: 0x50003000, vr: 'OW', value: new Uint8Array(4) });
    run(ds, ctxWith([]));
    expect([ds.has(0x60023000), ds.has(0x60024000), ds.has(0x50003000)]).toEqual([false, false, false]);
  });
});

describe('deidentifyDataset sequences', () => {
  it('given a kept sequence, then its items are processed: a Patient Name inside is replaced and UIDs remapped', () => {
    const ds = sampleDataset();
    ds.set(tagOf('ReferencedSeriesSequence'), seq('ReferencedSeriesSequence', [
      dataset(el('SeriesInstanceUID', '1.2.826.0.1.3680043.99.1.2'), el('PatientName', 'Smithers^Johnathan'), el('OtherPatientIDs', 'OLD-123456')),
    ]));
    const { report } = run(ds, ctxWith([]));
    const item = ds.get(tagOf('ReferencedSeriesSequence'))?.items?.[0] as DicomDataset;
    expect(text(item, 'PatientName')).toBe(pseudonym(key, 'patient', 'MRN4455667'));
    expect(text(item, 'OtherPatientIDs')).toBeUndefined();
    expect(text(item, 'SeriesInstanceUID')).toBe(report.research.seriesInstanceUid);
    expect(allText(ds)).not.toMatch(/Smithers/i);
  });

  it('given X/Z/U* chosen as keep (override), then the referenced SOP Instance UID is remapped and the class kept', () => {
    const { ds } = run(sampleDataset(), ctxWith([], { overrides: { ReferencedImageSequence: { action: 'keep' } } }));
    const item = ds.get(tagOf('ReferencedImageSequence'))?.items?.[0] as DicomDataset;
    expect(text(item, 'ReferencedSOPInstanceUID')).toBe(researchUid(key, '1.2.826.0.1.3680043.99.1.4'));
    expect(text(item, 'ReferencedSOPClassUID')).toBe('1.2.840.10008.5.1.4.1.1.2');
  });

  it('given a Z sequence, then it has no items', () => {
    const ds = sampleDataset();
    ds.set(tagOf('SpecimenPreparationSequence'), seq('SpecimenPreparationSequence', [dataset(el('SpecimenIdentifier', 'S1'))]));
    run(ds, ctxWith([]));
    expect(ds.get(tagOf('SpecimenPreparationSequence'))?.items).toEqual([]);
  });
});

describe('deidentifyDataset private attributes', () => {
  function withPrivate(): DicomDataset {
    const ds = sampleDataset();
    ds.set(0x00190010, priv(0x00190010, 'LO', 'SIEMENS MR HEADER'));
    ds.set(0x0019100c, priv(0x0019100c, 'IS', '1000'));
    ds.set(0x00191008, priv(0x00191008, 'LO', 'Smithers secret'));
    ds.set(0x00290010, priv(0x00290010, 'LO', 'ACME 1.1'));
    ds.set(0x00291001, priv(0x00291001, 'LO', 'MRN4455667'));
    return ds;
  }

  it('given the Basic profile, then every private attribute and creator is removed', () => {
    const { ds, report } = run(withPrivate(), ctxWith([]));
    expect([...ds.keys()].filter((t) => (t >>> 16) % 2 === 1)).toEqual([]);
    expect(report.actions.privateRemoved).toBe(5);
  });

  it('given Retain Safe Private, then safe-listed elements and their creator stay, creators of empty blocks go', () => {
    const { ds, report } = run(withPrivate(), ctxWith(['retainSafePrivate']));
    expect(text(ds, 0x0019100c)).toBe('1000');
    expect(text(ds, 0x00190010)).toBe('SIEMENS MR HEADER');
    expect(ds.has(0x00191008)).toBe(false);
    expect(ds.has(0x00290010)).toBe(false);
    expect(ds.has(0x00291001)).toBe(false);
    expect(report.actions.privateKept).toBe(2);
    const codes = (ds.get(tagOf('DeidentificationMethodCodeSequence'))?.items ?? []).map((i) => text(i, 'CodeValue'));
    expect(codes).toEqual(['113100', '113111']);
  });

  it('given a profile safe-private addition, then that element stays too', () => {
    const { ds } = run(withPrivate(), ctxWith(['retainSafePrivate'], { safePrivate: [{ creator: 'ACME 1.1', group: '0029', element: 'xx01' }] }));
    expect(text(ds, 0x00291001)).toBe('MRN4455667');
    expect(text(ds, 0x00290010)).toBe('ACME 1.1');
  });
});

describe('deidentifyDataset overrides', () => {
  it('given overrides, then keep, remove, empty, replace, hash and shift win over the table', () => {
    const { ds } = run(sampleDataset(), ctxWith([], {
      overrides: {
        StudyDescription: { action: 'keep' },
        Modality: { action: 'remove' },
        SeriesNumber: { action: 'empty' },
        InstitutionName: { action: 'replace', value: 'SITE 01' },
        StationName: { action: 'hash' },
        StudyDate: { action: 'shift' },
      },
    }));
    expect(text(ds, 'StudyDescription')).toBe('CT chest for Smithers Johnathan 2021-03-15');
    expect(text(ds, 'Modality')).toBeUndefined();
    expect(text(ds, 'SeriesNumber')).toBe('');
    expect(text(ds, 'InstitutionName')).toBe('SITE 01');
    expect(text(ds, 'StationName')).toMatch(/^H[0-9A-Z]{12}$/);
    expect(text(ds, 'StudyDate')).toBe(shiftDate('20210315', dateShiftDays(key, 'MRN4455667')));
  });
});
