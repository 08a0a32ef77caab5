/**
 * Shared pieces of the reliability suite (test/reliability/):
 *   - the seed: env DRKIT_RELIABILITY_SEED replays a run; every assertion message
 *     carries `seed N` so a failure names what to replay;
 *   - the scale: env DRKIT_SOAK=1 multiplies the rounds (500+ kills in total);
 *   - the figures: kills survived, breaks survived, malformed inputs tried, bytes
 *     compared, anything lost; appended as one JSON line per test file to the file
 *     named by env DRKIT_RELIABILITY_REPORT (scripts/reliability-report.mjs sums them);
 *   - running the real bin/ commands in the background (kill -9 by pid), temp dirs
 *     removed on teardown, checks that an error is one clean line with its code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './run.js';
import { CODES, type DrCode } from '../../src/errors.js';
import { mulberry32Float } from './random.js';

export const SOAK = process.env.DRKIT_SOAK === '1';
export const BASE_SEED = Number(process.env.DRKIT_RELIABILITY_SEED ?? 20261121);
if (!Number.isSafeInteger(BASE_SEED)) throw new Error(`DRKIT_RELIABILITY_SEED must be an integer, not ${process.env.DRKIT_RELIABILITY_SEED}`);

/** Rounds of a loop: `n` by default, `soak` under DRKIT_SOAK=1. */
export const rounds = (n: number, soak: number): number => (SOAK ? soak : n);

/** The seed of one area of the suite: derived from the base seed, stable across runs. */
export function seedFor(area: string): number {
  let h = BASE_SEED >>> 0;
  for (const c of area) h = (Math.imul(h ^ c.charCodeAt(0), 16777619) + 0x9e3779b9) >>> 0;
  return h;
}

/** mulberry32 as floats in [0, 1). */
export const rand = mulberry32Float;

/** How to replay: put in every assertion message. */
export const replay = (area: string, extra = ''): string =>
  `[seed ${BASE_SEED}, area ${area}${extra ? `, ${extra}` : ''}; replay: DRKIT_RELIABILITY_SEED=${BASE_SEED}]`;

export interface Figures {
  kills: number;
  breaks: number;
  malformed: number;
  bytesCompared: number;
  lost: number;
  checks: number;
  [k: string]: number;
}

/** Figures of one test file, written to the report (if asked for) when the file's tests end. */
export function figures(t: { teardown(fn: () => void): void }, area: string): Figures {
  const f: Figures = { kills: 0, breaks: 0, malformed: 0, bytesCompared: 0, lost: 0, checks: 0 };
  const started = Date.now();
  t.teardown(() => {
    const file = process.env.DRKIT_RELIABILITY_REPORT;
    if (!file) return;
    appendFileSync(file, JSON.stringify({ area, seed: BASE_SEED, soak: SOAK, ms: Date.now() - started, ...f }) + '\n');
  });
  return f;
}

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'drkit-rel-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: () => Buffer;
  stderr: () => string;
  exited: boolean;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string }>;
  kill9(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string }>;
}

const live = new Set<ChildProcess>();
/** Kill -9 (by pid) whatever this file started and is still running: for teardown. */
export function killLeftovers(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  live.clear();
}

/** Start a bin/ command (or any program) in the background. stdin: 'pipe' (default), 'ignore' or an fd. */
export function start(cmd: string, args: string[], opts: { stdin?: 'pipe' | 'ignore' | number; env?: NodeJS.ProcessEnv; stdout?: 'pipe' | number; cwd?: string } = {}): Proc {
  const file = cmd.startsWith('dr-') ? BIN + cmd : cmd;
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...opts.env };
  delete env.NODE_OPTIONS;
  const child = spawn(file, args, { stdio: [opts.stdin ?? 'pipe', opts.stdout ?? 'pipe', 'pipe'], env, cwd: opts.cwd });
  live.add(child);
  const out: Buffer[] = [];
  let err = '';
  child.stdout?.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 8 << 20) err = err.slice(0, 1 << 20) + err.slice(-65536); // bounded, keeping the first error line
  });
  child.stdin?.on('error', () => {});
  const p: Proc = {
    child,
    pid: child.pid!,
    stdout: () => Buffer.concat(out),
    stderr: () => err,
    exited: false,
    done: new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        p.exited = true;
        live.delete(child);
        resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
      });
    }),
    kill9: async () => {
      if (!p.exited) child.kill('SIGKILL');
      return p.done;
    },
  };
  return p;
}

/** Run to completion with a time limit (kill -9 when over: a hang is reported as signal SIGKILL). */
export async function runBin(cmd: string, args: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number; stdin?: number; cwd?: string } = {}) {
  const p = start(cmd, args, { env: opts.env, stdin: opts.stdin ?? 'pipe', cwd: opts.cwd });
  if (opts.stdin === undefined) p.child.stdin!.end(opts.input ?? '');
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.child.kill('SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  const r = await p.done;
  clearTimeout(timer);
  return { ...r, timedOut };
}

/** Write `data` to a child's stdin in chunks, stopping at `limit` bytes or when it exits. */
export async function feed(p: Proc, data: Buffer, limit: number, chunk: () => number): Promise<number> {
  let off = 0;
  while (off < limit && !p.exited) {
    const end = Math.min(off + chunk(), limit);
    const ok = p.child.stdin!.write(data.subarray(off, end));
    off = end;
    if (!ok) await Promise.race([new Promise((r) => p.child.stdin!.once('drain', r)), p.done]);
  }
  return off;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * What is wrong with a failing command's stderr, or null when it is a clean refusal:
 * one `PROG: error: ... (DR_CODE)` line with the expected code (if given), no stack
 * trace, no "internal error", and the exit status of that code in the CODES table.
 */
export function badRefusal(prog: string, res: { code: number | null; signal: NodeJS.Signals | null; stderr: string }, expect?: DrCode | DrCode[], exitOverride?: number): string | null {
  if (res.signal) return `killed by ${res.signal} (hang or crash)`;
  if (/\n\s+at .+\(.*:\d+:\d+\)|internal error|TypeError|RangeError|ReferenceError|Unhandled|FATAL ERROR/.test(res.stderr)) return `crash output: ${res.stderr.slice(0, 400)}`;
  const lines = res.stderr.split('\n').filter((l) => l.startsWith(`${prog}: error: `));
  if (lines.length !== 1) return `expected one "${prog}: error:" line, got ${lines.length}: ${res.stderr.slice(0, 400)}`;
  const m = / \((DR_[A-Z_]+)\)\s*$/.exec(lines[0]!);
  if (!m) return `the error line has no DR_ code: ${lines[0]}`;
  const code = m[1] as DrCode;
  if (!(code in CODES)) return `unknown code ${code}`;
  const want = expect === undefined ? null : Array.isArray(expect) ? expect : [expect];
  if (want && !want.includes(code)) return `code ${code}, expected ${want.join(' or ')}: ${lines[0]}`;
  const wantExit = exitOverride ?? CODES[code];
  if (res.code !== wantExit) return `exit ${res.code}, expected ${wantExit} for ${code}: ${lines[0]}`;
  return null;
}

export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Compare a file with a reference; counts the bytes in the figures. Returns the first difference (-1: equal). */
export function compareFile(f: Figures, file: string, ref: Buffer): number {
  const got = readFileSync(file);
  f.bytesCompared += ref.length;
  return firstDifference(got, ref);
}
