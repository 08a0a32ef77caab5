// Input that stops early (a broken pipe upstream) or turns bad midway: everything
// before the fault is applied and recorded, the exit status says what happened,
// and a rerun with the rest of the stream (or all of it) completes the replica.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeWorkload, rng } from '../helpers/workload.js';
import { firstDifference, readState, runApply, tempDir } from '../helpers/apply-run.js';

const w = makeWorkload({ seed: 31, records: 400 });

function check(t: Tap, dir: string, want: Buffer[], what: string): void {
  w.volumes.forEach((v, i) => {
    const at = firstDifference(readFileSync(join(dir, v.name + '.img')), want[i]!);
    t.equal(at, -1, `${what}: ${v.name} equals the reference`);
  });
}
type Tap = { equal(a: unknown, b: unknown, msg?: string): unknown };

const targets = (dir: string) => w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);

t.test('cut inside a record: exit 3, applied to the last whole record, rerun with the rest', async (t) => {
  const r = rng(31);
  for (let k = 0; k < 3; k++) {
    const i = 20 + (r() % (w.records.length - 40));
    const start = w.recordStart[i]!;
    const cut = start + 1 + (r() % (w.recordStart[i + 1]! - start - 1));
    const dir = tempDir(t);
    const res = await runApply(targets(dir), w.truncated(cut), dir);
    const lastGood = w.records[i - 1]!.seq;
    t.equal(res.code, 3, `cut at byte ${cut} (inside seq ${w.records[i]!.seq}): exit 3`);
    t.match(res.stderr, /truncated record.*replica at seq \d+.*rerun with the rest.*\(DR_TRUNCATED\)/);
    t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, lastGood, `recorded at the last whole record, seq ${lastGood}`);
    check(t, dir, w.imagesAt(lastGood), 'after the cut');
    // the rest, as a stream of its own starting at the next seq
    const rest = await runApply(targets(dir), w.streamFrom(lastGood + 1), dir);
    t.equal(rest.code, 0, `rerun with the rest: exit 0 ${rest.stderr.trim()}`);
    check(t, dir, w.final, 'after the rest');
  }
});

t.test('cut at a record boundary (no END): exit 3; rerun with the whole stream', async (t) => {
  const i = 250;
  const dir = tempDir(t);
  const res = await runApply(targets(dir), w.truncated(w.recordStart[i]!), dir);
  t.equal(res.code, 3, 'exit 3');
  t.match(res.stderr, /without its END trailer.*\(DR_TRUNCATED\)/);
  const seq = w.records[i - 1]!.seq;
  t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, seq);
  check(t, dir, w.imagesAt(seq), 'at the boundary');
  const all = await runApply([...targets(dir), '--json'], w.stream, dir);
  t.equal(all.code, 0, 'rerun with the whole stream: exit 0');
  const done = JSON.parse(all.stdout.trim().split('\n').pop()!);
  t.equal(done.skipped, i, 'what was applied is skipped');
  check(t, dir, w.final, 'after the rerun');
});

t.test('a corrupt record midway: exit 2, nothing of it written, everything before recorded', async (t) => {
  const i = 180;
  const rec = w.records.slice(i).find((r) => r.type === 'write')!;
  const idx = w.records.indexOf(rec);
  const bad = Buffer.from(w.stream);
  bad[w.recordStart[idx]! + 32 + 16 + 3]! ^= 0xff; // a data byte: record CRC fails
  const dir = tempDir(t);
  const res = await runApply(targets(dir), bad, dir);
  t.equal(res.code, 2, 'exit 2');
  t.match(res.stderr, new RegExp(`record checksum mismatch \\(seq ${rec.seq}\\).*last good seq ${rec.seq - 1}.*\\(DR_BAD_CHECKSUM\\)`));
  t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, rec.seq - 1, 'recorded up to the record before');
  check(t, dir, w.imagesAt(rec.seq - 1), 'before the bad record');
});

t.test('not a stream at all, empty input', async (t) => {
  const dir = tempDir(t);
  const junk = await runApply(targets(dir), Buffer.from('hello, this is not a journal\n'), dir);
  t.equal(junk.code, 2);
  t.match(junk.stderr, /not a drkit journal stream.*\(DR_BAD_MAGIC\)/);
  const empty = await runApply(targets(dir), Buffer.alloc(0), dir);
  t.equal(empty.code, 3);
  t.match(empty.stderr, /truncated stream header.*\(DR_TRUNCATED\)/);
});
