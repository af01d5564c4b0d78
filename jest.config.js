/** Three projects: unit tests run on in-memory fakes; slow tests (the bench and the sweeps over
 * every real fixture) run on the same fakes but apart, so that `npm run test:unit` stays quick;
 * integration tests run against the real local services (Azurite, the Cosmos DB emulator
 * server, the local function host), which test/integration/globalSetup.ts starts itself.
 * `npm test` runs all three (tools/runTests.ts: unit and slow several files at once, then
 * integration one file at a time). */
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] };

/** Each takes tens of seconds on a 2-CPU machine (about 120 s of the 265 s the unit files took together). */
const SLOW = [
  // The bench's generators and modes, checked on multi-chunk files against the in-memory pipeline.
  '<rootDir>/test/unit/bench/bench.test.ts',
  // 400 mutations of the real fixtures through the core.
  '<rootDir>/test/unit/dicom/fuzz.test.ts',
  // Every real fixture under every Annex E option and built-in profile.
  '<rootDir>/test/unit/dicom/deid/gateOptionsFixtures.test.ts',
  // OCR of drawn identifiers on real US/SC files, checked by Debian's tesseract (minutes on 2 CPUs).
  '<rootDir>/test/unit/ingest/ocrRedaction.test.ts',
  // Every bundled sample under the quarantine and the redact policies, and the CT/MR false boxes.
  '<rootDir>/test/unit/ingest/ocrSamples.test.ts',
  // The same on compressed sources (JPEG, JPEG-LS, JPEG 2000, RLE from dcmtk and gdcm): about 9 minutes on 2 CPUs.
  '<rootDir>/test/unit/ingest/ocrCompressed.test.ts',
];

module.exports = {
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
      // Patterns (Jest puts the root in for <rootDir>): the dots are escaped, the paths kept.
      testPathIgnorePatterns: ['/node_modules/', ...SLOW.map((p) => `${p.replace(/\./g, '\\.')}$`)],
    },
    {
      displayName: 'slow',
      testEnvironment: 'node',
      transform,
      testMatch: SLOW,
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/integration/globalSetup.ts',
      globalTeardown: '<rootDir>/test/integration/globalTeardown.ts',
    },
  ],
  testTimeout: 120000,
};
