/** Parsing and printing of sizes, durations, rates and times for flags and reports. */
import { DrError } from '../errors.js';

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** "4096", "64K", "1.5G", "20MiB" -> bytes (binary units). */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new DrError('DR_USAGE', `bad ${what} ${JSON.stringify(text)}: use a number with an optional K, M, G or T suffix`);
  const v = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(Math.round(v))) throw new DrError('DR_USAGE', `${what} ${text} is too large`);
  return Math.round(v);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "500ms", "30s", "5m", "1h30m", "7d" -> milliseconds. A bare number is seconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const t = text.trim();
  const checked = (ms: number): number => {
    if (!Number.isSafeInteger(Math.round(ms))) throw new DrError('DR_USAGE', `${what} ${text.length > 40 ? `${text.slice(0, 40)}...` : text} is too large`);
    return Math.round(ms);
  };
  if (/^\d+(\.\d+)?$/.test(t)) return checked(Number(t) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== t.length) throw new DrError('DR_USAGE', `bad ${what} ${JSON.stringify(text)}: use e.g. 30s, 5m, 2h, 7d`);
  return checked(total);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.round(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

/** Microseconds since the epoch -> ISO-8601 with microseconds, UTC. */
export function formatMicros(us: number): string {
  const iso = new Date(Math.floor(us / 1000)).toISOString();
  return iso.replace(/\.(\d{3})Z$/, (_, ms: string) => `.${ms}${String(us % 1000).padStart(3, '0')}Z`);
}

/** ISO-8601 (or anything Date parses) -> microseconds since the epoch, with sub-ms digits kept. */
export function parseTime(text: string): number {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new DrError('DR_BAD_POINT', `bad time ${JSON.stringify(text)}: use ISO-8601, e.g. 2026-11-21T10:00:00Z`);
  const frac = /\.(\d+)/.exec(text.replace(/^[^T]*/, ''));
  const extraMicros = frac && frac[1]!.length > 3 ? Number(frac[1]!.slice(3, 6).padEnd(3, '0')) : 0;
  return ms * 1000 + extraMicros;
}
