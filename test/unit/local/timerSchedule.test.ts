import { nextOccurrence, parseTimerSchedule } from '../../../local/timerSchedule';

const at = (iso: string) => new Date(iso);
const local = (y: number, mo: number, d: number, h: number, mi: number, s: number) => new Date(y, mo - 1, d, h, mi, s);

describe('timer schedules (NCRONTAB, six fields)', () => {
  test('given "*/5 * * * * *", then it fires on the next second divisible by 5', () => {
    expect(nextOccurrence(parseTimerSchedule('*/5 * * * * *'), local(2026, 1, 1, 10, 0, 3))).toEqual(local(2026, 1, 1, 10, 0, 5));
    expect(nextOccurrence(parseTimerSchedule('*/5 * * * * *'), local(2026, 1, 1, 10, 0, 5))).toEqual(local(2026, 1, 1, 10, 0, 10));
  });

  test('given "0 */1 * * * *", then it fires at the start of the next minute', () => {
    expect(nextOccurrence(parseTimerSchedule('0 */1 * * * *'), local(2026, 1, 1, 10, 0, 3))).toEqual(local(2026, 1, 1, 10, 1, 0));
  });

  test('given "0 */15 * * * *" late in an hour, then it fires at the next hour', () => {
    expect(nextOccurrence(parseTimerSchedule('0 */15 * * * *'), local(2026, 1, 1, 10, 50, 0))).toEqual(local(2026, 1, 1, 11, 0, 0));
  });

  test('given lists and ranges, then only the named values fire', () => {
    const s = parseTimerSchedule('10,40 0 9-17/4 * * 1-5');
    // Friday 2026-01-02, after 17:00: the next weekday is Monday the 5th at 09:00:10.
    expect(nextOccurrence(s, local(2026, 1, 2, 17, 30, 0))).toEqual(local(2026, 1, 5, 9, 0, 10));
    expect(nextOccurrence(s, local(2026, 1, 5, 9, 0, 10))).toEqual(local(2026, 1, 5, 9, 0, 40));
  });

  test('given a schedule with no time within the horizon, then there is no next occurrence', () => {
    expect(nextOccurrence(parseTimerSchedule('0 0 0 30 2 *'), at('2026-01-01T00:00:00Z'))).toBeUndefined();
  });

  test.each([
    ['0 */5 * * *', /six-field/],
    ['0 0 * * * MON', /day-of-week field/],
    ['60 * * * * *', /second field "60" is outside 0-59/],
    ['*/0 * * * * *', /outside/],
    ['00:05:00', /six-field/],
  ])('given "%s", then it is refused with the reason', (expression, reason) => {
    expect(() => parseTimerSchedule(expression)).toThrow(reason);
  });
});
