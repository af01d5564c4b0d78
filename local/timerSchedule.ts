/**
 * The NCRONTAB schedules of timer triggers, read the way the Functions host reads them: six
 * fields, `{second} {minute} {hour} {day} {month} {day-of-week}`. Each field is `*`, a number,
 * a range `a-b`, a step `*\/n` or `a-b/n`, or a comma list of those. Names of months and days
 * (`Jan`, `Mon`) and TimeSpan schedules (`00:05:00`) are not read: such a schedule is refused
 * with its reason, and the local host then never fires the function (it says so at start).
 * Times are local to the process, as on a Functions host whose WEBSITE_TIME_ZONE is its own.
 */

const FIELDS = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day-of-week', min: 0, max: 6 },
] as const;

/** The allowed values of each field, in the order of FIELDS. */
export type TimerSchedule = Set<number>[];

function parseField(text: string, field: (typeof FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new Error(`the ${field.name} field "${text}" is not a number, range, step or list`);
    const from = m[1] === '*' ? field.min : Number(m[2]);
    const to = m[1] === '*' ? field.max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? field.max : from;
    const step = m[4] !== undefined ? Number(m[4]) : 1;
    if (from < field.min || to > field.max || from > to || step < 1) throw new Error(`the ${field.name} field "${text}" is outside ${field.min}-${field.max}`);
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/** Reads a six-field NCRONTAB expression. Throws with the reason when it cannot. */
export function parseTimerSchedule(expression: string): TimerSchedule {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 6) throw new Error(`"${expression}" is not a six-field NCRONTAB expression (seconds first)`);
  return parts.map((p, i) => parseField(p, FIELDS[i] as (typeof FIELDS)[number]));
}

/**
 * The first whole second after `after` that the schedule names, within `horizonMs` (default a
 * year; days without a matching hour are stepped over an hour at a time); undefined when none does.
 */
export function nextOccurrence(schedule: TimerSchedule, after: Date, horizonMs = 366 * 24 * 3600_000): Date | undefined {
  const [seconds, minutes, hours, days, months, weekdays] = schedule as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  const t = new Date(after.getTime());
  t.setMilliseconds(0);
  const end = after.getTime() + horizonMs;
  for (t.setSeconds(t.getSeconds() + 1); t.getTime() <= end; ) {
    if (!months.has(t.getMonth() + 1) || !days.has(t.getDate()) || !weekdays.has(t.getDay()) || !hours.has(t.getHours())) {
      // Nothing in this hour: go to the start of the next one.
      t.setMinutes(0, 0);
      t.setHours(t.getHours() + 1);
      continue;
    }
    if (!minutes.has(t.getMinutes())) {
      t.setSeconds(0);
      t.setMinutes(t.getMinutes() + 1);
      continue;
    }
    if (seconds.has(t.getSeconds())) return t;
    t.setSeconds(t.getSeconds() + 1);
  }
  return undefined;
}
