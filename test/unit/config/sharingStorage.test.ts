import { cosmosEmulatorConnectionString } from '../../../local/emulators';
import { loadSettings } from '../../../shared/config/settings';

const identity = {
  SourceStorage__blobServiceUri: 'https://land.blob.core.windows.net',
  ResearchStorage__blobServiceUri: 'https://rsch.blob.core.windows.net',
  CosmosDb: cosmosEmulatorConnectionString(),
  DEID_KEY: 'a-development-key-of-at-least-32-bytes!!',
};

describe('loadSettings: SharingStorage (the account of the sas destinations)', () => {
  it('given no SharingStorage, then the sas destinations use the research account', () => {
    const s = loadSettings(identity);
    expect(s.sharing.storage).toBe(s.researchStorage);
  });

  it('given a SharingStorage connection string, then the sas destinations use that account and the research account keeps its identity', () => {
    const s = loadSettings({ ...identity, SharingStorage: 'DefaultEndpointsProtocol=https;AccountName=share;AccountKey=a2V5;EndpointSuffix=core.windows.net' });
    expect(s.sharing.storage).toMatchObject({ kind: 'connectionString', blobEndpoint: 'https://share.blob.core.windows.net' });
    expect(s.researchStorage).toMatchObject({ kind: 'identity', blobServiceUri: 'https://rsch.blob.core.windows.net' });
  });

  it('given a SharingStorage that is not a connection string, then loading fails naming SharingStorage', () => {
    expect(() => loadSettings({ ...identity, SharingStorage: 'not-a-connection' })).toThrow(/SharingStorage/);
  });
});
