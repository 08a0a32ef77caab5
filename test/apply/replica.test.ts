// dr-apply builds replicas equal, byte for byte, to the reference the workload
// generator keeps: single and several volumes, --until at marks, seqs and times,
// reruns that skip what is applied, and input fed through a pipe in odd chunks.
import t from 'tap';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { makeWorkload, rng } from '../helpers/workload.js';
import { collect, firstDifference, readState, runApply, startApply, tempDir } from '../helpers/apply-run.js';
import { formatMicros } from '../../src/cli/units.js';

function sameImage(t: { ok(v: unknown, msg?: string): unknown }, path: string, want: Buffer, what: string): void {
  const got = readFileSync(path);
  const at = firstDifference(got.subarray(0, want.length), want);
  t.ok(got.length >= want.length && at === -1, `${what}${at === -1 ? '' : ` (first difference at byte ${at})`}`);
}

t.test('one volume, several seeds: replica equals the reference', async (t) => {
  for (const seed of [1, 2, 3]) {
    const w = makeWorkload({ seed, volumes: [{ name: 'disk0', size: 2 << 20, blockSize: 4096 }], records: 300 });
    const dir = tempDir(t);
    const img = join(dir, 'disk0.img');
    const r = await runApply(['--target', img], w.stream, dir);
    t.equal(r.code, 0, `seed ${seed}: exit 0 (${r.stderr.trim()})`);
    t.equal(statSync(img).size, 2 << 20, 'target created at the volume size');
    sameImage(t, img, w.final[0]!, `seed ${seed}: replica equals the reference`);
    t.equal(readState(img + '.drstate').appliedSeq, w.lastSeq, 'state records the last seq');
    // rerun: nothing applied again, nothing changed
    const again = await runApply(['--target', img, '--json'], w.stream, dir);
    t.equal(again.code, 0);
    const done = JSON.parse(again.stdout.trim().split('\n').pop()!);
    t.equal(done.event, 'done');
    t.equal(done.records, 0, 'rerun applies nothing');
    t.equal(done.skipped, w.records.length, 'rerun skips every record');
    sameImage(t, img, w.final[0]!, 'replica unchanged by the rerun');
  }
});

t.test('consistency group of three volumes, large zero ranges, both zero modes', async (t) => {
  const w = makeWorkload({
    seed: 77,
    volumes: [{ name: 'db', size: 10 << 20, blockSize: 512 }, { name: 'logs', size: 1 << 20 }, { name: 'idx', size: 3 << 20, blockSize: 1024 }],
    records: 500,
  });
  t.ok(w.records.some((r) => r.type === 'zero' && r.length >= 4 << 20), 'workload has a zero range of 4 MiB or more');
  for (const mode of ['punch', 'write']) {
    const dir = tempDir(t);
    const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
    const r = await runApply([...args, `--zero=${mode}`], w.stream, dir);
    t.equal(r.code, 0, `--zero=${mode}: exit 0 (${r.stderr.trim()})`);
    w.volumes.forEach((v, i) => sameImage(t, join(dir, v.name + '.img'), w.final[i]!, `--zero=${mode}: volume ${v.name} equals the reference`));
    t.ok(existsSync(join(dir, 'db.img.drstate')), 'state file next to the first volume\'s target');
  }
});

t.test('--until at every mark, then on to the end', async (t) => {
  const w = makeWorkload({ seed: 5, records: 400, markEvery: 70 });
  const dir = tempDir(t);
  const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
  for (const m of w.marks) {
    const r = await runApply([...args, '--until', `mark:${m.name}`], w.stream, dir);
    t.equal(r.code, 0, `until mark:${m.name}: exit 0 (${r.stderr.trim()})`);
    w.volumes.forEach((v, i) => sameImage(t, join(dir, v.name + '.img'), m.images[i]!, `at mark ${m.name}: ${v.name} equals the reference`));
    t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, m.seq, `state at the mark's seq ${m.seq}`);
  }
  // going back is refused, the replica is left alone
  const first = w.marks[0]!;
  const back = await runApply([...args, '--until', `mark:${first.name}`], w.stream, dir);
  t.equal(back.code, 2, 'a point behind the replica: exit 2');
  t.match(back.stderr, /past mark:m1.*DR_BAD_POINT/);
  const none = await runApply([...args, '--until', 'mark:nosuch'], w.stream, dir);
  t.equal(none.code, 2, 'unknown mark: exit 2');
  t.match(none.stderr, /ended before mark:nosuch.*\(DR_BAD_POINT\)/);
});

t.test('--until seq:N and --until TIME on fresh replicas', async (t) => {
  const w = makeWorkload({ seed: 9, records: 300 });
  const r = rng(9);
  for (let k = 0; k < 3; k++) {
    const seq = w.firstSeq + (r() % w.records.length);
    const dir = tempDir(t);
    const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
    const res = await runApply([...args, '--until', `seq:${seq}`], w.stream, dir);
    t.equal(res.code, 0, `until seq:${seq}: exit 0 (${res.stderr.trim()})`);
    const want = w.imagesAt(seq);
    w.volumes.forEach((v, i) => sameImage(t, join(dir, v.name + '.img'), want[i]!, `seq ${seq}: ${v.name} equals the reference`));
    t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, seq);
  }
  // a time: the last record at or before it
  const rec = w.records[150]!;
  const last = w.records.filter((x) => x.time <= rec.time).pop()!;
  const dir = tempDir(t);
  const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
  const res = await runApply([...args, '--until', formatMicros(rec.time)], w.stream, dir);
  t.equal(res.code, 0, `until time: exit 0 (${res.stderr.trim()})`);
  t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, last.seq, 'stopped after the last record at or before the time');
  const want = w.imagesAt(last.seq);
  w.volumes.forEach((v, i) => sameImage(t, join(dir, v.name + '.img'), want[i]!, `time: ${v.name} equals the reference`));
});

t.test('stream through a pipe in random chunks, --state elsewhere, existing larger target', async (t) => {
  const w = makeWorkload({ seed: 11, volumes: [{ name: 'v', size: 1 << 20 }], records: 250 });
  const dir = tempDir(t);
  const img = join(dir, 'v.img');
  const st = join(dir, 'replica.state');
  // an existing target larger than the volume is fine; bytes past the volume stay
  const { writeFileSync } = await import('node:fs');
  const pre = Buffer.alloc((1 << 20) + 4096, 0xee);
  writeFileSync(img, pre);
  const child = startApply(['--target', img, '--state', st]);
  const done = collect(child);
  const r = rng(11);
  for (let off = 0; off < w.stream.length;) {
    const n = 1 + (r() % 100_000);
    child.stdin!.write(w.stream.subarray(off, off + n));
    off += n;
  }
  child.stdin!.end();
  const res = await done;
  t.equal(res.code, 0, `exit 0 (${res.stderr.trim()})`);
  const got = readFileSync(img);
  // bytes never written by the workload keep the pre-existing 0xee: compare only what the stream wrote
  const want = Buffer.from(pre);
  for (const rec of w.records) {
    if (rec.type === 'write') rec.data.copy(want, rec.offset);
    else if (rec.type === 'zero') want.fill(0, rec.offset, rec.offset + rec.length);
  }
  t.equal(firstDifference(got, want), -1, 'replica = old contents overwritten by the stream, tail untouched');
  t.equal(readState(st).appliedSeq, w.lastSeq, '--state file used');
  t.notOk(existsSync(img + '.drstate'), 'no default state file');
});
