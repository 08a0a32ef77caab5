/**
 * Running the real bin/dr-apply from tests: temp directories that are removed
 * afterwards, the stream given as standard input (a file, like `< stream`, or a
 * pipe fed in chunks), and the exit status, stdout and stderr collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DR_APPLY = fileURLToPath(new URL('../../bin/dr-apply', import.meta.url));

export interface TeardownHost {
  teardown(fn: () => void | Promise<void>): void;
}

/** A fresh temp directory, removed when the test ends (also on failure). */
export function tempDir(t: TeardownHost, prefix = 'drkit-apply-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function collect(child: ChildProcess): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
}

/** Run dr-apply with `stream` (bytes, written to a file first) as standard input. */
export function runApply(args: string[], stream: Buffer | null, dir: string): Promise<RunResult> {
  let fd: number | 'ignore' = 'ignore';
  if (stream) {
    const path = join(dir, `.stdin-${process.hrtime.bigint()}.drj`);
    writeFileSync(path, stream);
    fd = openSync(path, 'r');
  }
  const child = spawn(process.execPath, [DR_APPLY, ...args], { stdio: [fd, 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  if (typeof fd === 'number') closeSync(fd);
  return collect(child);
}

/** Start dr-apply with a pipe as standard input (the caller writes and kills). */
export function startApply(args: string[]): ChildProcess {
  return spawn(process.execPath, [DR_APPLY, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
}

export function readState(path: string): { appliedSeq: number; group: string; volumes: Array<{ name: string; target: string }> } {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** Index of the first differing byte, or -1. For failure messages that say where. */
export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
