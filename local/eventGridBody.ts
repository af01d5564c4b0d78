/**
 * Reads an Event Grid delivery the way the Functions host's Event Grid webhook does: Event Grid
 * schema (an array, or a single event), or CloudEvents 1.0 (structured single or batch).
 */

export const VALIDATION_EVENT_TYPE = 'Microsoft.EventGrid.SubscriptionValidationEvent';

export type EventGridDelivery =
  | { kind: 'validation'; validationCode: string }
  | { kind: 'events'; schema: 'EventGridSchema' | 'CloudEventSchema'; events: Record<string, unknown>[] }
  | { kind: 'invalid'; reason: string };

export interface DeliveryHeaders {
  contentType?: string;
  /** `aeg-event-type`: Notification, SubscriptionValidation or SubscriptionDeletion. */
  eventType?: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Never throws: malformed bodies come back as `{ kind: 'invalid' }` (answered with 400). */
export function parseEventGridDelivery(body: string, headers: DeliveryHeaders): EventGridDelivery {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { kind: 'invalid', reason: 'the body is not JSON' };
  }
  const mediaType = (headers.contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (mediaType === 'application/cloudevents-batch+json' && !Array.isArray(parsed)) {
    return { kind: 'invalid', reason: 'a CloudEvents batch must be a JSON array' };
  }
  const items: unknown[] = Array.isArray(parsed) ? parsed : [parsed];
  if (items.length === 0) return { kind: 'invalid', reason: 'no events in the body' };
  if (!items.every(isObject)) return { kind: 'invalid', reason: 'every event must be a JSON object' };
  const events = items as Record<string, unknown>[];

  const cloud = mediaType.startsWith('application/cloudevents') || events.every((e) => typeof e.specversion === 'string');
  if (cloud) {
    const bad = events.find((e) => typeof e.id !== 'string' || typeof e.type !== 'string' || typeof e.source !== 'string');
    if (bad) return { kind: 'invalid', reason: 'a CloudEvent needs string id, source and type' };
    return { kind: 'events', schema: 'CloudEventSchema', events };
  }

  const validation = events.find((e) => e.eventType === VALIDATION_EVENT_TYPE);
  if (validation || headers.eventType?.toLowerCase() === 'subscriptionvalidation') {
    const data = (validation ?? events[0])?.data;
    const code = isObject(data) ? data.validationCode : undefined;
    if (typeof code !== 'string' || code === '') return { kind: 'invalid', reason: 'a validation event needs data.validationCode' };
    return { kind: 'validation', validationCode: code };
  }
  const bad = events.find((e) => typeof e.id !== 'string' || typeof e.eventType !== 'string' || typeof e.subject !== 'string');
  if (bad) return { kind: 'invalid', reason: 'an Event Grid event needs string id, subject and eventType' };
  return { kind: 'events', schema: 'EventGridSchema', events };
}
