/**
 * Restore tests: a journal store built from a seeded workload with the real
 * `dr-journal append`, temp dirs cleaned up on teardown, a `dr-restore --serve`
 * process started and stopped like a user would, and checks for the NBD peers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, run } from './run.js';
import { makeWorkload, type Workload, type WorkloadOptions } from './workload.js';

type Test = {
  teardown(f: () => void | Promise<void>): void;
  fail(msg: string): void;
};

/** A fresh temp directory removed when the test ends (pass or fail). */
export function tempDir(t: Test, prefix = 'dr-restore-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestStore {
  dir: string;
  work: string;
  w: Workload;
}

/**
 * A store holding workload `opts`, appended with bin/dr-journal (small segments so
 * restores cross segment boundaries; the stream is appended in `parts` pieces).
 */
export async function buildStore(t: Test, opts: WorkloadOptions, store: { segmentSize?: string; parts?: number } = {}): Promise<TestStore> {
  const work = tempDir(t);
  const dir = path.join(work, 'store');
  const w = makeWorkload(opts);
  const parts = store.parts ?? 1;
  const n = w.records.length;
  for (let i = 0; i < parts; i++) {
    const from = w.firstSeq + Math.floor((i * n) / parts);
    const file = path.join(work, `part${i}.drj`);
    fs.writeFileSync(file, from === w.firstSeq ? w.stream : w.streamFrom(from));
    const args = ['append', dir, file, ...(i === 0 && store.segmentSize ? ['--segment-size', store.segmentSize] : [])];
    const r = await run('dr-journal', args);
    if (r.code !== 0) throw new Error(`dr-journal append failed (${r.code}): ${r.stderr}`);
    fs.rmSync(file);
  }
  return { dir, work, w };
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The seq a time point resolves to: the last record at or before `time`. */
export function seqAtTime(w: Workload, time: number): number {
  let seq = w.firstSeq - 1;
  for (const r of w.records) {
    if (r.time <= time) seq = r.seq;
    else break;
  }
  return seq;
}

/** The seq --consistent moves `seq` back to: the last FLUSH or MARK at or before it. */
export function consistentSeq(w: Workload, seq: number): number | null {
  let best: number | null = null;
  for (const r of w.records) {
    if (r.seq > seq) break;
    if (r.type === 'flush' || r.type === 'mark') best = r.seq;
  }
  return best;
}

/** Hash of every file under a directory (name -> sha256), to prove a store was not modified. */
export function treeDigest(dir: string, skip: (name: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (skip(rel)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out[rel] = sha256(fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

/** The NBD peers the tests drive: a missing one fails the test (never a skip). */
export function requirePeers(t: Test, names: string[]): boolean {
  const missing = names.filter((n) => spawnSync('sh', ['-c', `command -v ${n}`]).status !== 0);
  if (missing.length > 0) {
    t.fail(`missing test peers: ${missing.join(', ')} (install with scripts/install-peers.sh)`);
    return false;
  }
  return true;
}

export interface Served {
  child: ChildProcess;
  /** the 'serving' JSON lines, one per export */
  exports: Array<{ name: string; uri: string; point: string; seq: number; volume: string; size: number; writable: boolean; overlay?: string }>;
  stderr(): string;
  /** SIGTERM, then the exit status */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>;
}

/** Start `dr-restore DIR --serve --json ...args` and wait until it serves `count` exports. */
export function serve(t: Test, args: string[], count: number): Promise<Served> {
  const child = spawn(path.join(BIN, 'dr-restore'), [...args, '--serve', '--json'], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const served: Served = {
    child,
    exports: [],
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const r = await exited;
      return { ...r, stdout: out };
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`dr-restore --serve did not become ready: ${err}`));
    }, 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n').filter((l) => l.trim().startsWith('{'));
      served.exports = lines.map((l) => JSON.parse(l)).filter((o) => o.event === 'serving');
      if (served.exports.length >= count) {
        clearTimeout(timer);
        resolve(served);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      if (served.exports.length < count) reject(new Error(`dr-restore --serve exited (${code}) before serving: ${err}`));
    });
  });
}

/** Run a peer (qemu-img, nbdcopy, qemu-io...) and fail loudly with its stderr if it fails. */
export async function peer(cmd: string, args: string[]): Promise<Buffer> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The entries of a tar (name -> bytes), read with tar-stream. */
export async function untar(tarBytes: Buffer): Promise<Map<string, Buffer>> {
  const tar = (await import('tar-stream')).default;
  const ex = tar.extract();
  const out = new Map<string, Buffer>();
  const done = (async () => {
    for await (const entry of ex) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      out.set(entry.header.name, Buffer.concat(parts));
    }
  })();
  ex.end(tarBytes);
  await done;
  return out;
}
