/**
 * `/api/health` with the ANQ source on (the shared test stack runs it): the cluster's S3
 * endpoint and REST API are checked with the credentials of the settings, and the answer names
 * neither an endpoint nor a secret. The probes themselves against the real stand-ins (s3rver,
 * the Qumulo REST stand-in) with a wrong key, a wrong secret, a wrong token and an endpoint
 * that does not answer.
 */
import { anqProbes, checkAnq } from '../../shared/anq/health';
import type { AnqSettings } from '../../shared/config/anqSettings';
import { testStack } from './stackEnv';

function settingsOfStack(): AnqSettings {
  const anq = testStack().anq!;
  const env = testStack().env;
  return {
    cluster: anq.cluster,
    s3: { endpoint: anq.s3Endpoint, bucket: anq.bucket, region: 'us-east-1', accessKeyId: env.ANQ_S3_ACCESS_KEY_ID!, secretAccessKey: env.ANQ_S3_SECRET_ACCESS_KEY! },
    exportPath: anq.exportPath,
    prefix: anq.prefix,
    readFrom: 'snapshot',
    rest: { endpoint: anq.restEndpoint, token: anq.restToken },
  };
}

const check = (anq: AnqSettings) => checkAnq(anq, anqProbes(anq));

test('GET /api/health checks the ANQ S3 endpoint and REST API, and says nothing of their addresses or credentials', async () => {
  const res = await fetch(`${testStack().hostUrl}/api/health`);
  const text = await res.text();
  expect(res.status).toBe(200);
  expect(JSON.parse(text)).toMatchObject({ status: 'ok', checks: { anqS3: 'ok', anqRest: 'ok' } });
  const anq = settingsOfStack();
  for (const secret of [anq.rest!.token, anq.s3.secretAccessKey, anq.s3.accessKeyId, anq.s3.endpoint, anq.rest!.endpoint, new URL(anq.s3.endpoint).port]) {
    expect(text).not.toContain(secret);
  }
});

test('given the configured credentials, then both are ok', async () => {
  expect(await check(settingsOfStack())).toEqual({ anqS3: 'ok', anqRest: 'ok' });
});

test('given a REST token the API refuses, then anqRest says the credentials are refused', async () => {
  const anq = settingsOfStack();
  expect(await check({ ...anq, rest: { ...anq.rest!, token: 'not-the-token' } })).toEqual({ anqS3: 'ok', anqRest: 'credentials refused' });
});

test('given an unknown S3 access key, or a wrong secret, then anqS3 says the credentials are refused', async () => {
  const anq = settingsOfStack();
  expect((await check({ ...anq, s3: { ...anq.s3, accessKeyId: 'NOSUCHKEY' } })).anqS3).toBe('credentials refused');
  expect((await check({ ...anq, s3: { ...anq.s3, secretAccessKey: 'not-the-secret' } })).anqS3).toBe('credentials refused');
});

test('given endpoints that do not answer, then both are unavailable', async () => {
  const anq = settingsOfStack();
  const nowhere = 'http://127.0.0.1:1';
  expect(await check({ ...anq, s3: { ...anq.s3, endpoint: nowhere }, rest: { ...anq.rest!, endpoint: nowhere } })).toEqual({ anqS3: 'unavailable', anqRest: 'unavailable' });
});

test('given the live tree read without the REST API, then only the S3 endpoint is checked', async () => {
  const anq = settingsOfStack();
  expect(await check({ ...anq, readFrom: 'head', rest: undefined })).toEqual({ anqS3: 'ok' });
});
