import { classifyQueueRequest } from '../../../bench/requestCounter';

describe('queue request kinds (the sharing bench\'s requests per instance)', () => {
  it.each([
    ['POST', '/devstoreaccount1/partner-exports/messages?messagettl=-1', 'send'],
    ['GET', '/devstoreaccount1/partner-exports/messages?numofmessages=16&visibilitytimeout=600', 'receive'],
    ['GET', '/devstoreaccount1/partner-exports/messages?peekonly=true', 'receive'],
    ['DELETE', '/devstoreaccount1/partner-exports/messages/0f2c?popreceipt=abc', 'delete'],
    ['PUT', '/devstoreaccount1/partner-exports/messages/0f2c?popreceipt=abc&visibilitytimeout=600', 'update'],
    ['PUT', '/devstoreaccount1/partner-exports', 'other'],
    ['GET', '/devstoreaccount1/partner-exports?comp=metadata', 'other'],
  ])('given %s %s, then %s', (method, url, kind) => {
    expect(classifyQueueRequest(method, url)).toBe(kind);
  });
});
