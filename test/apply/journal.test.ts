// dr-apply --journal DIR: the replica is built from a journal store (made with the
// real dr-journal append), stops at points the store resolves, and with --follow
// keeps applying what is appended later until SIGTERM.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeWorkload } from '../helpers/workload.js';
import { collect, firstDifference, readState, runApply, tempDir, DR_APPLY } from '../helpers/apply-run.js';

const DR_JOURNAL = fileURLToPath(new URL('../../bin/dr-journal', import.meta.url));

async function append(dir: string, stream: Buffer, extra: string[] = []): Promise<void> {
  const child = spawn(process.execPath, [DR_JOURNAL, 'append', dir, ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
  const done = collect(child);
  child.stdin!.end(stream);
  const r = await done;
  if (r.code !== 0) throw new Error(`dr-journal append: exit ${r.code}: ${r.stderr}`);
}

const w = makeWorkload({ seed: 41, records: 500, markEvery: 90, signatures: true });
const same = (t: Tap, dir: string, want: Buffer[], what: string) =>
  w.volumes.forEach((v, i) => t.equal(firstDifference(readFileSync(join(dir, v.name + '.img')), want[i]!), -1, `${what}: ${v.name} equals the reference`));
type Tap = { equal(a: unknown, b: unknown, msg?: string): unknown };
const targets = (dir: string) => w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);

t.test('from a store: a mark, then the rest', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'J');
  await append(store, w.stream);
  const m = w.marks[2]!;
  const r1 = await runApply(['--journal', store, ...targets(dir), '--until', `mark:${m.name}`], null, dir);
  t.equal(r1.code, 0, `until mark:${m.name}: exit 0 ${r1.stderr}`);
  same(t, dir, m.images, `at mark ${m.name}`);
  t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, m.seq);
  const r2 = await runApply(['--journal', store, ...targets(dir), '--json'], null, dir);
  t.equal(r2.code, 0, `the rest: exit 0 ${r2.stderr}`);
  const done = JSON.parse(r2.stdout.trim().split('\n').pop()!);
  t.equal(done.appliedSeq, w.lastSeq);
  t.equal(done.records, w.lastSeq - m.seq, 'only the records after the mark were read and applied');
  same(t, dir, w.final, 'at the end');
  const bad = await runApply(['--journal', store, ...targets(dir), '--until', 'mark:nosuch'], null, dir);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /no mark named "nosuch".*\(DR_BAD_POINT\)/);
});

t.test('--follow applies records appended later; SIGTERM stops it with exit 0', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'J');
  const half = w.firstSeq + 250;
  await append(store, w.streamRange(w.firstSeq, half));
  const child = spawn(process.execPath, [DR_APPLY, '--journal', store, ...targets(dir), '--follow'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = collect(child);
  const stateAt = () => {
    try {
      return readState(join(dir, 'db.img.drstate')).appliedSeq;
    } catch {
      return -1;
    }
  };
  const waitFor = async (seq: number) => {
    for (let i = 0; i < 400 && stateAt() < seq; i++) await sleep(25);
    return stateAt();
  };
  t.equal(await waitFor(half), half, 'first half applied and recorded while following');
  same(t, dir, w.imagesAt(half), 'after the first half');
  await append(store, w.streamFrom(half + 1));
  t.equal(await waitFor(w.lastSeq), w.lastSeq, 'records appended later are applied');
  child.kill('SIGTERM');
  const r = await done;
  t.equal(r.code, 0, `SIGTERM ends a follow with exit 0 ${r.stderr}`);
  same(t, dir, w.final, 'at the end');
});

t.test('a replica behind a pruned window, or new from a pruned store, is refused', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'J');
  await append(store, w.stream, ['--segment-size', '1M']);
  const r1 = await runApply(['--journal', store, ...targets(dir), '--until', 'seq:20'], null, dir);
  t.equal(r1.code, 0, `exit 0 ${r1.stderr}`);
  const prune = collect(spawn(process.execPath, [DR_JOURNAL, 'prune', store, '--keep-size', '3M'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const p = await prune;
  t.equal(p.code, 0, `dr-journal prune: ${p.stderr}`);
  const behind = await runApply(['--journal', store, ...targets(dir)], null, dir);
  t.equal(behind.code, 2);
  t.match(behind.stderr, /replica has applied up to seq 20: records 21\.\.\d+ are missing \(journal store .* holds seq \d+\.\.\d+: older records were folded into its base images\) \(DR_OUTSIDE_WINDOW\)/);
  const dir2 = tempDir(t);
  const fresh = await runApply(['--journal', store, ...targets(dir2)], null, dir2);
  t.equal(fresh.code, 2);
  t.match(fresh.stderr, /a new replica needs its volumes as of seq \d+.*seed it first.*\(DR_OUTSIDE_WINDOW\)/);
  t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, 20, 'the replica is left alone');
});
