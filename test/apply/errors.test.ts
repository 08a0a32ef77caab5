// Bad input is refused with one clear line before any byte of it is written:
// wrong target sizes, unknown or missing volumes, another group, another volume
// of the same name, a gap in seqs, a record past the end of its volume, a replica
// already in use. And SIGTERM stops at a record boundary with the state recorded.
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamWriter } from '../../src/format/codec.js';
import { makeWorkload } from '../helpers/workload.js';
import { collect, firstDifference, readState, runApply, startApply, tempDir } from '../helpers/apply-run.js';

const one = (seed: number, size = 1 << 20) => makeWorkload({ seed, volumes: [{ name: 'disk0', size }], records: 120 });

t.test('target smaller than the volume: exit 2, target untouched, no state', async (t) => {
  const w = one(1);
  const dir = tempDir(t);
  const img = join(dir, 'small.img');
  const before = Buffer.alloc((1 << 20) - 4096, 0x5a);
  writeFileSync(img, before);
  const r = await runApply(['--target', img], w.stream, dir);
  t.equal(r.code, 2);
  t.match(r.stderr, new RegExp(`^dr-apply: error: target ${img} is 1044480 bytes .*smaller than volume disk0 \\(1048576 bytes.*\\(DR_VOLUME_MISMATCH\\)\\n$`));
  t.ok(readFileSync(img).equals(before), 'target bytes and size unchanged');
  t.notOk(existsSync(img + '.drstate'), 'no state file');
});

t.test('unknown volume, missing target, a single target for a group', async (t) => {
  const g = makeWorkload({ seed: 2, records: 50 });
  const dir = tempDir(t);
  const unknown = await runApply(['--target', `db=${join(dir, 'db.img')}`, '--target', `nosuch=${join(dir, 'x.img')}`], g.stream, dir);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /no volume named nosuch in the stream \(it has: db, logs\) \(DR_VOLUME_MISMATCH\)/);
  const missing = await runApply(['--target', `db=${join(dir, 'db.img')}`], g.stream, dir);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /volume logs of the stream has no target: add --target logs=IMAGE \(DR_USAGE\)/);
  const single = await runApply(['--target', join(dir, 'db.img')], g.stream, dir);
  t.equal(single.code, 2);
  t.match(single.stderr, /the stream has 2 volumes \(db, logs\): give --target NAME=IMAGE for each \(DR_USAGE\)/);
  t.notOk(existsSync(join(dir, 'db.img')) || existsSync(join(dir, 'x.img')), 'no target was created');
  const usage = await runApply([], g.stream, dir);
  t.equal(usage.code, 2, 'no --target: usage error');
  t.match(usage.stderr, /--target.*\(DR_USAGE\)/);
});

t.test('a stream from another group, or another volume under the same name', async (t) => {
  const a = one(3);
  const b = one(4); // other group
  const dir = tempDir(t);
  const img = join(dir, 'disk0.img');
  t.equal((await runApply(['--target', img], a.stream, dir)).code, 0);
  const other = await runApply(['--target', img], b.stream, dir);
  t.equal(other.code, 2);
  t.match(other.stderr, /stream is from group [0-9a-f-]{36} but the replica \(.*disk0\.img\.drstate\) belongs to group [0-9a-f-]{36} \(DR_GROUP_MISMATCH\)/);
  t.equal(firstDifference(readFileSync(img), a.final[0]!), -1, 'replica unchanged');
  // same seed, bigger volume: same group and volume id, different size
  const big = one(3, 2 << 20);
  const bigImg = join(dir, 'big.img');
  writeFileSync(bigImg, Buffer.alloc(2 << 20));
  const vol = await runApply(['--target', bigImg, '--state', img + '.drstate'], big.stream, dir);
  t.equal(vol.code, 2);
  t.match(vol.stderr, /volume disk0 in the stream \(id [0-9a-f-]+, 2097152 bytes\) is not the one the replica holds \(id [0-9a-f-]+, 1048576 bytes.*\(DR_VOLUME_MISMATCH\)/);
  const moved = await runApply(['--target', bigImg, '--state', img + '.drstate'], a.stream, dir);
  t.equal(moved.code, 2, 'state of one target used with another');
  t.match(moved.stderr, /the replica's volume disk0 is .*disk0\.img .*, not .*big\.img \(DR_USAGE\)/);
});

t.test('a gap between the replica and the stream', async (t) => {
  const w = one(5);
  const dir = tempDir(t);
  const img = join(dir, 'disk0.img');
  t.equal((await runApply(['--target', img, '--until', 'seq:40'], w.stream, dir)).code, 0);
  const gap = await runApply(['--target', img], w.streamFrom(46), dir);
  t.equal(gap.code, 2);
  t.match(gap.stderr, /stream starts at seq 46 but the replica has applied up to seq 40: records 41\.\.45 are missing \(DR_SEQ_GAP\)/);
  t.equal(readState(img + '.drstate').appliedSeq, 40);
  const rest = await runApply(['--target', img], w.streamFrom(30), dir);
  t.equal(rest.code, 0, 'an overlapping stream continues');
  t.equal(firstDifference(readFileSync(img), w.final[0]!), -1, 'replica equals the reference');
});

t.test('a record past the end of its volume: nothing of it written, everything before recorded', async (t) => {
  const size = 1 << 20;
  const w = new StreamWriter({ groupId: Buffer.alloc(16, 7), firstSeq: 1 });
  const parts = [w.start(), ...w.volume({ name: 'disk0', size, blockSize: 4096, id: Buffer.alloc(16, 8) })];
  const tail = Buffer.alloc(4096, 0xab);
  parts.push(...w.record({ type: 'write', volume: 0, offset: size - 4096, data: tail }).parts); // seq 1
  parts.push(...w.record({ type: 'flush' }).parts); // seq 2
  parts.push(...w.record({ type: 'write', volume: 0, offset: 0, data: Buffer.alloc(512, 0xcd) }).parts); // seq 3
  parts.push(...w.record({ type: 'write', volume: 0, offset: size - 100, data: Buffer.alloc(4096, 0xef) }).parts); // seq 4: past the end
  parts.push(...w.record({ type: 'write', volume: 0, offset: 512, data: Buffer.alloc(512, 0x11) }).parts); // seq 5
  parts.push(...w.end());
  const dir = tempDir(t);
  const img = join(dir, 'disk0.img');
  const r = await runApply(['--target', img], Buffer.concat(parts), dir);
  t.equal(r.code, 2);
  t.match(r.stderr, /write 1048476\+4096 is past the end of volume disk0 \(1048576 bytes\) at byte \d+ \(last good seq 3\); replica at seq 3.*\(DR_OUT_OF_RANGE\)/);
  const got = readFileSync(img);
  t.equal(got.length, size, 'target not extended');
  t.ok(got.subarray(size - 4096).equals(tail), 'the bad record wrote nothing');
  t.ok(got.subarray(0, 512).equals(Buffer.alloc(512, 0xcd)), 'the record before it is applied');
  t.ok(got.subarray(512, 1024).equals(Buffer.alloc(512)), 'nothing after it is applied');
  t.equal(readState(img + '.drstate').appliedSeq, 3, 'recorded up to the record before it');
});

t.test('a replica in use is refused; SIGTERM stops at a record boundary with the state recorded', async (t) => {
  const w = makeWorkload({ seed: 6, records: 800 });
  const dir = tempDir(t);
  const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
  const child = startApply(args);
  const done = collect(child);
  const half = w.recordStart[400]! + 10;
  child.stdin!.write(w.stream.subarray(0, half));
  for (let i = 0; i < 200 && !existsSync(join(dir, 'db.img.drstate.lock')); i++) await sleep(25);
  await sleep(300);
  const second = await runApply(args, w.stream, dir);
  t.equal(second.code, 3, 'second dr-apply on the same replica: exit 3');
  t.match(second.stderr, /replica is in use by dr-apply process \d+ .*\(DR_LOCKED\)/);
  child.kill('SIGTERM');
  const res = await done;
  t.equal(res.code, 3, 'stopped by SIGTERM before the end of input: exit 3');
  t.match(res.stderr, /interrupted before the end of the input; replica at seq 400 .*rerun to continue \(DR_INTERRUPTED\)/);
  t.equal(readState(join(dir, 'db.img.drstate')).appliedSeq, 400, 'state at the last whole record received');
  const want = w.imagesAt(400);
  w.volumes.forEach((v, i) => t.equal(firstDifference(readFileSync(join(dir, v.name + '.img')), want[i]!), -1, `${v.name} at seq 400`));
  t.notOk(existsSync(join(dir, 'db.img.drstate.lock')), 'lock released');
  t.ok(statSync(join(dir, 'db.img')).size > 0);
});
