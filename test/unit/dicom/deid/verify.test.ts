import { deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { basicProfile, builtInProfile, defaultProfile } from '../../../../shared/dicom/deid/profile';
import { verifyDeidentified, verifyDeidentifiedDataset } from '../../../../shared/dicom/deid/verify';
import { dataset, el, priv, sampleDataset, seq, tagOf } from './helpers';

const key = Buffer.from('unit test key for the deid gate..');

function deidentified(profile = defaultProfile()) {
  const ds = sampleDataset();
  const report = deidentifyDataset(ds, { profile, key, keyId: 'k1' });
  return { ds, report, profile };
}

describe('verifyDeidentified', () => {
  it('given the engine output, then it passes', async () => {
    const { ds, report, profile } = deidentified();
    await expect(verifyDeidentified(ds, report, profile)).resolves.toEqual({ passed: true, findings: [] });
  });

  it('given an attribute the profile removes, then a finding names the tag and rule but not the value', () => {
    const { ds, report, profile } = deidentified(basicProfile());
    ds.set(tagOf('PatientAge'), el('PatientAge', '051Y'));
    const r = verifyDeidentifiedDataset(ds, report, profile);
    expect(r.passed).toBe(false);
    expect(r.findings).toEqual([expect.stringMatching(/^\(0010,1010\) PatientAge: present, but the profile removes it \(rule X, basic\)$/)]);
  });

  it('given a source value left in a replaced attribute, then found by digest', () => {
    const { ds, report, profile } = deidentified();
    ds.set(tagOf('SOPInstanceUID'), el('SOPInstanceUID', '1.2.826.0.1.3680043.99.1.3'));
    const r = verifyDeidentifiedDataset(ds, report, profile);
    expect(r.findings.some((f) => f.startsWith('(0008,0018) SOPInstanceUID: keeps its source value'))).toBe(true);
    expect(r.findings.join(' ')).not.toContain('1.2.826');
  });

  it('given a name hidden in a kept attribute, then the identifying-value search finds it, case-insensitively', () => {
    const { ds, report, profile } = deidentified();
    // Manufacturer is not in Table E.1-1, so nothing would have cleaned it.
    ds.set(tagOf('Manufacturer'), el('Manufacturer', 'smithers'));
    const r = verifyDeidentifiedDataset(ds, report, profile);
    expect(r.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^\(0008,0070\) Manufacturer: holds an identifying value/)]));
    expect(r.findings.join(' ')).not.toMatch(/smithers/i);
  });

  it('given short or embedded values, then no false positive: "M", "42", and a name inside a longer word', () => {
    const { ds, report, profile } = deidentified();
    ds.set(tagOf('Manufacturer'), el('Manufacturer', 'M 42 HOUSEHOLD'));
    expect(verifyDeidentifiedDataset(ds, report, profile).passed).toBe(true);
  });

  it('given a private attribute off the safe list or a missing marking, then findings', () => {
    const { ds, report, profile } = deidentified();
    ds.set(0x00291001, priv(0x00291001, 'LO', 'x'));
    ds.delete(tagOf('PatientIdentityRemoved'));
    const r = verifyDeidentifiedDataset(ds, report, profile);
    expect(r.findings).toEqual(expect.arrayContaining([
      expect.stringMatching(/^\(0029,1001\) private: private attribute not on the safe list/),
      expect.stringMatching(/^\(0012,0062\) PatientIdentityRemoved: not YES/),
    ]));
  });

  it('given the dummy Verifying Observer, then it passes; an observer with anything else in it is a finding', () => {
    const observer = tagOf('VerifyingObserverSequence');
    const dummy = () => dataset(
      el('VerifyingObserverName', 'ANONYMIZED'),
      el('VerifyingOrganization', 'ANONYMIZED'),
      el('VerificationDateTime', '19000101000000'),
      seq('VerifyingObserverIdentificationCodeSequence', []),
    );
    const finding = /^\(0040,A073\) VerifyingObserverSequence: sequence not replaced by a dummy \(rule D\)$/;
    const { ds, report, profile } = deidentified(basicProfile());
    ds.set(observer, seq('VerifyingObserverSequence', [dummy()]));
    expect(verifyDeidentifiedDataset(ds, report, profile)).toEqual({ passed: true, findings: [] });
    const tampered: [string, (item: Map<number, ReturnType<typeof el>>) => void][] = [
      ['a real name', (i) => i.set(tagOf('VerifyingObserverName'), el('VerifyingObserverName', 'Hibbert^Julius'))],
      ['a real organization', (i) => i.set(tagOf('VerifyingOrganization'), el('VerifyingOrganization', 'Shelbyville Clinic'))],
      ['a real date-time', (i) => i.set(tagOf('VerificationDateTime'), el('VerificationDateTime', '20210315101530'))],
      ['an observer code', (i) => i.set(tagOf('VerifyingObserverIdentificationCodeSequence'), seq('VerifyingObserverIdentificationCodeSequence', [dataset(el('CodeValue', 'X1'))]))],
      ['an extra attribute', (i) => i.set(tagOf('CodeMeaning'), el('CodeMeaning', 'ANONYMIZED'))],
      ['a missing attribute', (i) => i.delete(tagOf('VerifyingOrganization'))],
    ];
    for (const [, change] of tampered) {
      const item = dummy();
      change(item);
      ds.set(observer, seq('VerifyingObserverSequence', [item]));
      expect(verifyDeidentifiedDataset(ds, report, profile).findings).toEqual(expect.arrayContaining([expect.stringMatching(finding)]));
    }
    ds.set(observer, seq('VerifyingObserverSequence', [dummy(), dummy()]));
    expect(verifyDeidentifiedDataset(ds, report, profile).findings).toEqual([expect.stringMatching(finding)]);
  });

  it('given dates reduced to the year (safe-harbor), then the output is marked MODIFIED and the gate accepts exactly that', () => {
    const safeHarbor = builtInProfile('safe-harbor');
    if (!safeHarbor) throw new Error('safe-harbor profile missing');
    const { ds, report, profile } = deidentified(safeHarbor);
    const ltim = tagOf('LongitudinalTemporalInformationModified');
    expect(Buffer.from(ds.get(ltim)?.value ?? []).toString('latin1').trim()).toBe('MODIFIED');
    expect(verifyDeidentifiedDataset(ds, report, profile)).toEqual({ passed: true, findings: [] });
    const finding = /^\(0028,0303\) LongitudinalTemporalInformationModified: MODIFIED expected \(rule E\.3\.6\)$/;
    for (const wrong of ['UNMODIFIED', 'REMOVED']) {
      ds.set(ltim, el('LongitudinalTemporalInformationModified', wrong));
      expect(verifyDeidentifiedDataset(ds, report, profile).findings).toEqual([expect.stringMatching(finding)]);
    }
    ds.delete(ltim);
    expect(verifyDeidentifiedDataset(ds, report, profile).findings).toEqual([expect.stringMatching(finding)]);
  });

  it('given findings inside a sequence item and after the pixel data, then each names its place: sequence, item number and attribute', () => {
    const { ds, report, profile } = deidentified(basicProfile());
    const items = ds.get(tagOf('ReferencedImageSequence'))?.items ?? [];
    expect(items).toHaveLength(1);
    // The source's UID put back into the item (found by its digest at that tag path) and an
    // attribute the profile removes.
    items[0]?.set(tagOf('ReferencedSOPInstanceUID'), el('ReferencedSOPInstanceUID', '1.2.826.0.1.3680043.99.1.4'));
    items[0]?.set(tagOf('PatientAge'), el('PatientAge', '051Y'));
    const trailing = new Map([[tagOf('PatientAge'), el('PatientAge', '051Y')]]);
    const r = verifyDeidentifiedDataset(ds, report, profile, { trailing });
    expect(r.findings).toEqual(expect.arrayContaining([
      expect.stringMatching(/^\(0008,1140\)\[0\]\.\(0008,1155\) ReferencedSOPInstanceUID: keeps its source value/),
      expect.stringMatching(/^\(0008,1140\)\[0\]\.\(0010,1010\) PatientAge: present, but the profile removes it/),
      expect.stringMatching(/^trailing\.\(0010,1010\) PatientAge: present, but the profile removes it/),
    ]));
    expect(r.findings.join(' ')).not.toContain('1.2.826');
  });
});
