import type { IngestionDocument } from '../../../shared/catalog/documents';
import { sourceId } from '../../../shared/ingest/ingestSourceFile';
import { describeIngestion, OperationsDeps } from '../../../shared/ingest/operationsView';

const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const ANQ_SCOPE = { cluster: 'anq-local', bucket: 'replica', exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' as const };

/** An index holding one document per canonical URL given; `asked` records the ids looked up. */
function depsWith(canonicalUrls: string[], anq = true): { deps: OperationsDeps; asked: string[] } {
  const asked: string[] = [];
  const docs = new Map(canonicalUrls.map((url) => [sourceId(url), { id: sourceId(url), sourceUrl: url, status: 'cataloged' } as IngestionDocument]));
  const index: OperationsDeps['index'] = {
    get: async (id) => {
      asked.push(id);
      const doc = docs.get(id);
      return doc ? { doc, etag: '"1"' } : undefined;
    },
    put: async () => undefined,
    findByResearchInstance: async () => [],
  };
  return { deps: { index, sourceBlobEndpoints: [ENDPOINT], settings: { sourceContainers: ['anq-replica'] }, ...(anq ? { anqScope: ANQ_SCOPE } : {}) }, asked };
}

describe('describeIngestion', () => {
  it('given source=anq://... under the export, then the ingestion of that file is described', async () => {
    const url = 'anq://anq-local/replica/dicom/site/a%20b.dcm';
    const { deps } = depsWith([url]);
    const res = await describeIngestion(deps, 'anq://anq-local/replica/dicom/site/a b.dcm');
    expect(res.status ?? 200).toBe(200);
    expect(res.jsonBody).toMatchObject({ source: url, status: 'cataloged' });
  });

  it('given source=anq://... outside the prefix, then 400 and the index is not asked', async () => {
    const { deps, asked } = depsWith([]);
    const res = await describeIngestion(deps, 'anq://anq-local/replica/other/a.dcm');
    expect(res.status).toBe(400);
    expect(asked).toEqual([]);
  });

  it('given source=anq://... while the ANQ source is off, then 400', async () => {
    const { deps, asked } = depsWith([], false);
    const res = await describeIngestion(deps, 'anq://anq-local/replica/dicom/a.dcm');
    expect(res.status).toBe(400);
    expect(asked).toEqual([]);
  });

  it('given a blob URL, then it is described as before', async () => {
    const url = `${ENDPOINT}/anq-replica/site/x.dcm`;
    const { deps } = depsWith([url]);
    const res = await describeIngestion(deps, url);
    expect(res.status ?? 200).toBe(200);
    expect(res.jsonBody).toMatchObject({ source: url });
  });
});
