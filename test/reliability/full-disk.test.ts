// Full disk, across components: the journal store and the replica live on a small
// loop-mounted ext4 (24 MiB) that fills up mid-stream. dr-journal append, dr-apply
// --journal, dr-restore --out and dr-journal mark each stop with one clear
// DR_NO_SPACE line and exit 3; the store stays valid (dr-verify journal) with every
// record it had made durable; once space is freed, the same commands resume and
// finish, and the results equal the references. (test/tap/nbd-fulldisk and
// test/ship/disk-full cover the tap and the receiver.)
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { badRefusal, compareFile, figures, killLeftovers, replay, runBin, seedFor, tempDir } from '../helpers/reliability-common.js';
import { lastSeq, recordsMatch, verifyJournal, checkMarks } from '../helpers/reliability-store.js';
import { makeWorkload } from '../helpers/workload.js';

t.teardown(killLeftovers);
t.setTimeout(900_000);
const f = figures(t, 'full-disk');

function avail(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Take all free space but `leave` bytes with a filler file. */
function fill(dir: string, name: string, leave: number): void {
  const file = join(dir, name);
  for (let n = avail(dir) - leave; n > 0; n -= 256 * 1024) {
    if (spawnSync('fallocate', ['-l', String(n), file]).status === 0) break;
  }
  if (leave > 0) return;
  // to the last block: append until the file system says no
  const fd = openSync(file, 'a');
  const block = Buffer.alloc(4096, 0x66);
  try {
    for (;;) writeSync(fd, block);
  } catch {
    /* ENOSPC: full */
  } finally {
    closeSync(fd);
  }
}

t.test('journal store and replica on a filling ext4', async (t) => {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (mount -o loop), as in CI');
  const seed = seedFor('full-disk');
  const work = tempDir(t, 'drkit-rel-full-');
  const img = join(work, 'fs.img');
  const mnt = join(work, 'mnt');
  mkdirSync(mnt);
  execFileSync('truncate', ['-s', '24M', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', img]);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  // umount first (registered last: teardowns run in reverse order), also after a failure
  t.teardown(() => {
    killLeftovers();
    if (spawnSync('umount', [mnt]).status !== 0) spawnSync('umount', ['-l', mnt]);
  });
  const w = makeWorkload({ seed, volumes: [{ name: 'vol', size: 8 << 20, blockSize: 4096 }], records: 420, markEvery: 70, maxWrite: 96 * 1024, largeZeroes: false });
  const J = join(mnt, 'J');
  const why = (s: string) => replay('full-disk', s);

  // 1. dr-journal append runs out of space mid-stream
  fill(mnt, 'filler1', Math.floor(w.stream.length / 2));
  const a = await runBin('dr-journal', ['append', J, '--segment-size', '1M'], { input: w.stream, timeoutMs: 60_000 });
  t.equal(badRefusal('dr-journal', a, 'DR_NO_SPACE'), null, `dr-journal append on a full disk: DR_NO_SPACE, exit 3 (${a.stderr.trim()}) ${why('append')}`);
  t.match(a.stderr, /no space left on device/, 'the error says what happened');
  f.malformed++;
  const durable = await lastSeq(J);
  t.ok(durable > 0 && durable < w.lastSeq, `part of the stream is durable (seq ${durable} of ${w.lastSeq})`);
  t.equal(await verifyJournal(J), null, `the store is valid on the full disk ${why('append')}`);
  t.equal(await lastSeq(J), durable, 'a second look: everything made durable is still there');

  // space is freed: the append resumes after the durable seq and finishes
  rmSync(join(mnt, 'filler1'));
  const b = await runBin('dr-journal', ['append', J], { input: w.streamFrom(durable + 1), timeoutMs: 60_000 });
  t.equal(b.code, 0, `append resumes after space is freed ${b.stderr.trim()}`);
  t.equal(await recordsMatch(J, w), null, `the store holds exactly the reference records ${why('append')}`);
  t.equal(await verifyJournal(J), null, 'valid');

  // 2. dr-apply --journal: the replica's file system fills up
  const R = join(mnt, 'R');
  mkdirSync(R);
  fill(mnt, 'filler2', 3 << 20);
  const target = ['--target', `vol=${join(R, 'vol.img')}`];
  const ap = await runBin('dr-apply', ['--journal', J, ...target], { timeoutMs: 60_000 });
  t.equal(badRefusal('dr-apply', ap, 'DR_NO_SPACE'), null, `dr-apply on a full disk: DR_NO_SPACE, exit 3 (${ap.stderr.trim()}) ${why('apply')}`);
  f.malformed++;
  rmSync(join(mnt, 'filler2'));
  const ap2 = await runBin('dr-apply', ['--journal', J, ...target], { timeoutMs: 60_000 });
  t.equal(ap2.code, 0, `dr-apply resumes once space is freed ${ap2.stderr.trim()}`);
  const at = compareFile(f, join(R, 'vol.img'), w.final[0]!);
  if (at !== -1) f.lost++;
  t.equal(at, -1, `the replica equals the reference (first difference at ${at}) ${why('apply')}`);
  rmSync(join(R, 'vol.img'));

  // 3. dr-restore --out onto a full disk
  fill(mnt, 'filler3', 1 << 20);
  const out = join(R, 'restored.img');
  const rs = await runBin('dr-restore', [J, '--at', 'latest', '--out', out], { timeoutMs: 60_000 });
  t.equal(badRefusal('dr-restore', rs, 'DR_NO_SPACE'), null, `dr-restore --out on a full disk: DR_NO_SPACE, exit 3 (${rs.stderr.trim()}) ${why('restore')}`);
  f.malformed++;
  rmSync(join(mnt, 'filler3'));
  const rs2 = await runBin('dr-restore', [J, '--at', 'latest', '--out', out, '--force'], { timeoutMs: 60_000 });
  t.equal(rs2.code, 0, `dr-restore works once space is freed ${rs2.stderr.trim()}`);
  const at2 = compareFile(f, out, w.final[0]!);
  if (at2 !== -1) f.lost++;
  t.equal(at2, -1, `the restore equals the reference ${why('restore')}`);
  rmSync(out);

  // every mark still restores
  await checkMarks(t, f, J, w, work, why('marks'));

  // 4. a mark on a completely full disk: stored or refused cleanly, never a broken store
  fill(mnt, 'filler4', 0);
  const before = await lastSeq(J);
  const m = await runBin('dr-journal', ['mark', J, 'on-full-disk']);
  t.ok(m.code === 0 || badRefusal('dr-journal', m, 'DR_NO_SPACE') === null, `dr-journal mark on a full disk: ok or DR_NO_SPACE, exit 3 (${m.stderr.trim()})`);
  f.malformed++;
  t.equal(await verifyJournal(J), null, 'the store is still valid');
  const afterMark = await lastSeq(J);
  t.equal(afterMark, m.code === 0 ? before + 1 : before, 'the mark is there exactly when it was acknowledged');
  rmSync(join(mnt, 'filler4'));
  const m2 = await runBin('dr-journal', ['mark', J, 'after-space-freed']);
  t.equal(m2.code, 0, `appendable once space is freed ${m2.stderr.trim()}`);
  t.ok(existsSync(join(J, 'store.json')), 'store in place');
});
