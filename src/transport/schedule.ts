/**
 * The --schedule file: a weekly calendar of windows, each with a rate limit and an
 * RPO target (format in man/dr-ship.1, SCHEDULE FILE):
 *
 *   # DAYS      HOURS         RATE       RPO
 *   mon-fri     08:00-18:00   10M        5m
 *   mon-fri     18:00-08:00   unlimited  30s
 *   sat,sun     *             unlimited  30s
 *
 * The first line whose window contains the current local time wins.
 */
import { readFileSync } from 'node:fs';
import { DrError } from '../errors.js';
import { parseDuration, parseSize } from '../cli/units.js';

export interface ScheduleWindow {
  line: number;
  /** bit d set = window may start on weekday d (0 = Sunday) */
  days: number;
  /** minutes after midnight; end may be <= start: the window runs past midnight */
  start: number;
  end: number;
  allDay: boolean;
  /** bytes per second, Infinity = unlimited */
  rate: number;
  /** milliseconds, null = no target */
  rpo: number | null;
}

export interface Schedule {
  file: string;
  windows: ScheduleWindow[];
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function bad(file: string, line: number, what: string): DrError {
  return new DrError('DR_BAD_SCHEDULE', `schedule ${file} line ${line}: ${what}`, { line });
}

function parseDays(text: string, file: string, line: number): number {
  if (text === '*' || text.toLowerCase() === 'daily') return 0x7f;
  let mask = 0;
  for (const part of text.toLowerCase().split(',')) {
    const m = /^([a-z]{3})(?:-([a-z]{3}))?$/.exec(part);
    const a = m ? DAY_NAMES.indexOf(m[1]!) : -1;
    const b = m?.[2] !== undefined ? DAY_NAMES.indexOf(m[2]) : a;
    if (!m || a < 0 || b < 0) throw bad(file, line, `bad days ${JSON.stringify(part)}: use mon,tue,...,sun, ranges like mon-fri, or *`);
    for (let d = a; ; d = (d + 1) % 7) {
      mask |= 1 << d;
      if (d === b) break;
    }
  }
  return mask;
}

function parseClock(text: string, file: string, line: number, isEnd: boolean): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text);
  const h = m ? Number(m[1]) : NaN;
  const min = m ? Number(m[2]) : NaN;
  if (!m || min > 59 || h > 24 || (h === 24 && (min !== 0 || !isEnd))) throw bad(file, line, `bad time ${JSON.stringify(text)}: use HH:MM (00:00-23:59, 24:00 as an end)`);
  return h * 60 + min;
}

export function parseSchedule(text: string, file: string): Schedule {
  const windows: ScheduleWindow[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const content = raw.replace(/#.*$/, '').trim();
    if (content === '') return;
    const f = content.split(/\s+/);
    if (f.length !== 4) throw bad(file, line, `expected 4 fields (DAYS HOURS RATE RPO), found ${f.length}`);
    const [daysText, hoursText, rateText, rpoText] = f as [string, string, string, string];
    const days = parseDays(daysText, file, line);
    let start = 0;
    let end = 24 * 60;
    let allDay = true;
    if (hoursText !== '*') {
      const m = /^([^-]+)-([^-]+)$/.exec(hoursText);
      if (!m) throw bad(file, line, `bad hours ${JSON.stringify(hoursText)}: use HH:MM-HH:MM or *`);
      start = parseClock(m[1]!, file, line, false);
      end = parseClock(m[2]!, file, line, true);
      if (start === end) throw bad(file, line, `empty window ${hoursText}: use * for the whole day`);
      allDay = false;
    }
    let rate = Infinity;
    if (!/^(unlimited|-)$/i.test(rateText)) {
      try {
        rate = parseSize(rateText.replace(/\/s$/i, ''), 'rate');
      } catch {
        throw bad(file, line, `bad rate ${JSON.stringify(rateText)}: use bytes per second like 10M, 500K, or unlimited`);
      }
      if (rate <= 0) throw bad(file, line, `rate ${rateText} must be above 0 (use unlimited for no limit)`);
    }
    let rpo: number | null = null;
    if (!/^(none|-)$/i.test(rpoText)) {
      try {
        rpo = parseDuration(rpoText, 'RPO');
      } catch {
        throw bad(file, line, `bad RPO ${JSON.stringify(rpoText)}: use a duration like 30s, 5m, 1h, or none`);
      }
    }
    windows.push({ line, days, start, end, allDay, rate, rpo });
  });
  return { file, windows };
}

export function loadSchedule(file: string): Schedule {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new DrError('DR_BAD_SCHEDULE', `cannot read schedule ${file}: ${code === 'ENOENT' ? 'no such file' : code}`);
  }
  return parseSchedule(text, file);
}

/** The window in force at `when` (local time), or null when no line matches. */
export function windowAt(s: Schedule, when: Date): ScheduleWindow | null {
  const day = when.getDay();
  const minute = when.getHours() * 60 + when.getMinutes();
  const yesterday = (day + 6) % 7;
  for (const w of s.windows) {
    if (w.allDay) {
      if (w.days & (1 << day)) return w;
    } else if (w.start < w.end) {
      if (w.days & (1 << day) && minute >= w.start && minute < w.end) return w;
    } else {
      // past midnight: started today (after start) or started yesterday (before end)
      if ((w.days & (1 << day) && minute >= w.start) || (w.days & (1 << yesterday) && minute < w.end)) return w;
    }
  }
  return null;
}
