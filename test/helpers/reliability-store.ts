/**
 * Store-level checks of the reliability suite, all through the real commands:
 * the last durable seq, dr-verify journal, the records of a store (dr-journal cat
 * without its header and trailer, which carry the time of the cat), and every mark
 * restored with dr-restore --at mark:NAME compared with its reference.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { StreamParser } from '../../src/format/codec.js';
import type { Workload } from './workload.js';
import { compareFile, runBin, type Figures } from './reliability-common.js';

type T = { equal(a: unknown, b: unknown, msg: string): void; ok(v: unknown, msg: string): void; fail(msg: string): void };

/** `dr-journal last DIR` (0 when the store does not exist yet). */
export async function lastSeq(dir: string): Promise<number> {
  if (!existsSync(join(dir, 'store.json'))) return 0;
  const r = await runBin('dr-journal', ['last', dir]);
  if (r.code !== 0) throw new Error(`dr-journal last ${dir} exited ${r.code}: ${r.stderr.trim()}`);
  return Number(r.stdout.toString().trim());
}

/** dr-verify journal DIR: null when valid, else what it said. */
export async function verifyJournal(dir: string): Promise<string | null> {
  const r = await runBin('dr-verify', ['journal', dir], { timeoutMs: 60_000 });
  return r.code === 0 ? null : `dr-verify journal exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(0, 500)}`;
}

/** The stored records as bytes: `dr-journal cat` minus the 64-byte header and the END record (both carry the time of the cat). */
export async function catRecords(dir: string): Promise<Buffer> {
  const r = await runBin('dr-journal', ['cat', dir], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`dr-journal cat ${dir} exited ${r.code}: ${r.stderr.trim()}`);
  const b = r.stdout;
  return b.subarray(64, b.length - 80);
}

/** Same records as the workload from `fromSeq` on: decode the cat and compare encoded payload bytes. */
export async function recordsMatch(dir: string, w: Workload): Promise<string | null> {
  const r = await runBin('dr-journal', ['cat', dir], { timeoutMs: 60_000 });
  if (r.code !== 0) return `dr-journal cat exited ${r.code}: ${r.stderr.trim()}`;
  const p = new StreamParser();
  let items;
  try {
    items = p.push(r.stdout);
    p.finish();
  } catch (err) {
    return `dr-journal cat wrote an invalid stream: ${(err as Error).message}`;
  }
  const seqd = items.filter((i) => i.type !== 'header' && i.type !== 'volume' && i.type !== 'end') as Array<{ seq: number; type: string }>;
  if (seqd.length === 0) return 'no records';
  const first = seqd[0]!.seq;
  for (const rec of seqd) {
    const ref = w.records[rec.seq - w.firstSeq];
    if (!ref) return `seq ${rec.seq} is not in the workload (last ${w.lastSeq})`;
    if (plain(ref) !== plain(rec)) return `seq ${rec.seq} differs from the workload's record`;
  }
  const last = seqd.at(-1)!.seq;
  if (last !== w.lastSeq) return `last seq ${last}, workload ends at ${w.lastSeq}`;
  if (last - first + 1 !== seqd.length) return 'seq gap';
  return null;
}

function plain(r: object): string {
  const o = r as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => !(o[k] === undefined || o[k] === false)).sort();
  return keys.map((k) => `${k}=${Buffer.isBuffer(o[k]) ? (o[k] as Buffer).toString('hex') : String(o[k])}`).join(' ');
}

/**
 * Restore every volume at every mark of the workload (and at latest) from the store and
 * compare with the reference. Marks older than the window (after a prune) must be refused
 * with DR_OUTSIDE_WINDOW. Returns the number of restores compared.
 */
export async function checkMarks(t: T, f: Figures, dir: string, w: Workload, work: string, why: string, opts: { firstSeq?: number } = {}): Promise<number> {
  let n = 0;
  const points: Array<{ at: string; seq: number; images: Buffer[] }> = w.marks.map((m) => ({ at: `mark:${m.name}`, seq: m.seq, images: m.images }));
  points.push({ at: 'latest', seq: w.lastSeq, images: w.final });
  for (const p of points) {
    for (let v = 0; v < w.volumes.length; v++) {
      const vol = w.volumes[v]!;
      const out = join(work, `restore-${n}-${vol.name}.img`);
      const r = await runBin('dr-restore', [dir, '--at', p.at, '--volume', vol.name, '--out', out, '--force'], { timeoutMs: 60_000 });
      if (opts.firstSeq !== undefined && p.seq < opts.firstSeq) {
        t.ok(r.code === 2 && /DR_OUTSIDE_WINDOW|DR_BAD_POINT/.test(r.stderr), `${p.at} (seq ${p.seq}) is before the window (first seq ${opts.firstSeq}): refused, not wrong ${why} ${r.stderr.trim()}`);
        continue;
      }
      if (r.code !== 0) {
        t.fail(`dr-restore --at ${p.at} --volume ${vol.name} exited ${r.code}: ${r.stderr.trim()} ${why}`);
        f.lost++;
        continue;
      }
      const at = compareFile(f, out, p.images[v]!);
      if (at !== -1) f.lost++;
      t.equal(at, -1, `restore at ${p.at} of ${vol.name} equals the reference (first difference at byte ${at}) ${why}`);
      f.checks++;
      n++;
      rmSync(out, { force: true });
    }
  }
  return n;
}
