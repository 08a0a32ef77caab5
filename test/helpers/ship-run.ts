/** Running dr-ship in the tests: the real bin/, output collected, children found by parent pid. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/', import.meta.url));
export const DR_SHIP = `${BIN}dr-ship`;

export interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** the JSON lines dr-ship --json printed on stderr */
  events: () => Array<Record<string, unknown>>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

const live = new Set<ChildProcess>();

/** Kill (by pid) every process run() started that is still running: test teardown, also after a failure. */
export function killLeftovers(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  live.clear();
}

export function run(cmd: string, args: string[], opts: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): Run {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
  live.add(child);
  child.on('exit', () => live.delete(child));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin!.on('error', () => {});
  if (opts.input) child.stdin!.end(opts.input);
  else child.stdin!.end();
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  const events = () =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  return { child, stdout: () => out, stderr: () => err, events, done };
}

/** Pids of the direct children of `pid` whose command name is `comm`. */
export function childPids(pid: number, comm?: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === pid && (comm === undefined || name === comm)) found.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

/** Pids whose command line contains every one of `words` (to find the remote receiver of a test). */
export function pidsByArgs(...words: string[]): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (words.every((w) => argv.includes(w))) found.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

export async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));
