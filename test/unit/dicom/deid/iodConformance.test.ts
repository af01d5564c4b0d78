import { deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { basicProfile, defaultProfile } from '../../../../shared/dicom/deid/profile';
import { verifyDeidentifiedDataset } from '../../../../shared/dicom/deid/verify';
import { dataset, el, sampleDataset, seq, tagOf, text } from './helpers';

const key = Buffer.from('iod conformance key, 32 bytes ...');

/** Found by dciodvfy on de-identified fixtures: combined codes that must keep an attribute present. */
describe('combined codes where the IOD needs the attribute (dciodvfy findings)', () => {
  function source() {
    const ds = sampleDataset();
    for (const e of [
      el('OperatorsName', 'Tech^Tina'),
      el('StructureSetLabel', 'Smithers Johnathan'),
      seq('SourceImageSequence', [dataset(el('ReferencedSOPClassUID', '1.2.840.10008.5.1.4.1.1.2'), el('ReferencedSOPInstanceUID', '1.2.826.0.1.3680043.99.1.4'))]),
    ]) ds.set(e.tag, e);
    return ds;
  }

  describe.each([['basic', basicProfile()], ['research default', defaultProfile()]])('under the %s profile', (_name, profile) => {
    const ds = source();
    const report = deidentifyDataset(ds, { profile, key, keyId: 'test' });

    it("given Operators' Name (X/Z/D, Type 2 in RT Series), then it is present and empty", () => {
      expect(text(ds, 'OperatorsName')).toBe('');
    });

    it('given Source Image Sequence (X/Z/U*), then its references are kept with research UIDs', () => {
      const item = ds.get(tagOf('SourceImageSequence'))?.items?.[0];
      expect(item && text(item, 'ReferencedSOPClassUID')).toBe('1.2.840.10008.5.1.4.1.1.2');
      expect(item && text(item, 'ReferencedSOPInstanceUID')).toMatch(/^2\.25\.\d+$/);
    });

    it('given Structure Set Label holding only the patient name, then a dummy value, never empty (Type 1)', () => {
      expect(text(ds, 'StructureSetLabel')).toBe('ANONYMIZED');
    });

    it('then the gate passes', () => {
      expect(verifyDeidentifiedDataset(ds, report, profile).findings).toEqual([]);
    });
  });
});
