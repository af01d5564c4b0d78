import { parseEventGridDelivery, VALIDATION_EVENT_TYPE } from '../../../local/eventGridBody';

const egEvent = (id: string) => ({ id, subject: '/s', eventType: 'Microsoft.Storage.BlobCreated', eventTime: '2024-01-01T00:00:00Z', data: {} });
const cloudEvent = (id: string) => ({ specversion: '1.0', id, source: '/src', type: 'Microsoft.Storage.BlobCreated', data: {} });

describe('Event Grid delivery bodies', () => {
  test('given an array of Event Grid events, then each is returned in order', () => {
    const got = parseEventGridDelivery(JSON.stringify([egEvent('1'), egEvent('2')]), { eventType: 'Notification' });
    expect(got).toEqual({ kind: 'events', schema: 'EventGridSchema', events: [egEvent('1'), egEvent('2')] });
  });

  test('given a single Event Grid event object, then it is one event', () => {
    const got = parseEventGridDelivery(JSON.stringify(egEvent('1')), { contentType: 'application/json' });
    expect(got).toMatchObject({ kind: 'events', events: [egEvent('1')] });
  });

  test('given a structured CloudEvent, then the CloudEvents schema with one event', () => {
    const got = parseEventGridDelivery(JSON.stringify(cloudEvent('c')), { contentType: 'application/cloudevents+json; charset=utf-8' });
    expect(got).toEqual({ kind: 'events', schema: 'CloudEventSchema', events: [cloudEvent('c')] });
  });

  test('given a CloudEvents batch, then every event', () => {
    const got = parseEventGridDelivery(JSON.stringify([cloudEvent('a'), cloudEvent('b')]), { contentType: 'application/cloudevents-batch+json' });
    expect(got).toMatchObject({ kind: 'events', schema: 'CloudEventSchema', events: [{ id: 'a' }, { id: 'b' }] });
  });

  test('given a CloudEvents batch content type with an object, then invalid', () => {
    expect(parseEventGridDelivery(JSON.stringify(cloudEvent('a')), { contentType: 'application/cloudevents-batch+json' }).kind).toBe('invalid');
  });

  test('given a subscription validation event, then its validation code', () => {
    const body = JSON.stringify([{ ...egEvent('v'), eventType: VALIDATION_EVENT_TYPE, data: { validationCode: 'abc' } }]);
    expect(parseEventGridDelivery(body, { eventType: 'SubscriptionValidation' })).toEqual({ kind: 'validation', validationCode: 'abc' });
  });

  test('given a validation header without a code, then invalid', () => {
    expect(parseEventGridDelivery(JSON.stringify([egEvent('v')]), { eventType: 'SubscriptionValidation' }).kind).toBe('invalid');
  });

  test.each([
    ['not JSON', '{oops'],
    ['an empty array', '[]'],
    ['a non-object event', '[1]'],
    ['an event without eventType', JSON.stringify([{ id: '1', subject: '/s' }])],
    ['a CloudEvent without source', JSON.stringify({ specversion: '1.0', id: '1', type: 't' })],
  ])('given %s, then invalid', (_what, body) => {
    expect(parseEventGridDelivery(body, {}).kind).toBe('invalid');
  });
});
