// dr-journal end to end: append/cat round trip, idempotent resend, refusals that
// leave the store untouched, seeking, follow, marks, ls, last, locking, corruption
// and a read-only store. Every check runs the real bin/dr-journal on real files.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { StreamParser, type StreamItem } from '../../src/format/codec.js';
import { formatMicros } from '../../src/cli/units.js';
import { decode, genStream, idFor, journal, journalAsync, plain, restream, snapshot, tmpdir } from '../helpers/store-streams.js';

const SEG = '64K';

t.test('append then cat gives back the same records; resend is harmless', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 11, records: 400, flushEvery: 7, marks: [{ at: 50, name: 'first' }, { at: 300, name: 'second' }], unaligned: true });
  let r = journal(['append', store, '--segment-size', SEG, '--json'], g.bytes);
  t.equal(r.status, 0, r.err);
  t.same(JSON.parse(r.stdout.toString()), { appended: 400, skipped: 0, firstSeq: 1, lastSeq: 400, durableSeq: 400 });
  r = journal(['cat', store]);
  t.equal(r.status, 0, r.err);
  const back = decode(r.stdout);
  t.equal(back.header.firstSeq, 1);
  t.ok(back.header.groupId.equals(g.header.groupId), 'group id kept');
  t.same(back.volumes.map((v) => [v.name, v.size, v.blockSize, v.id.toString('hex')]), g.volumes.map((v) => [v.name, v.size, v.blockSize, v.id.toString('hex')]));
  t.same(back.records.map(plain), g.records.map(plain), 'records equal the input');

  const before = snapshot(store);
  r = journal(['append', store, '--json'], g.bytes);
  t.equal(r.status, 0, r.err);
  t.match(JSON.parse(r.stdout.toString()), { appended: 0, skipped: 400 }, 'full resend skipped');
  t.same(snapshot(store), before, 'resend changed nothing');

  const more = genStream({ seed: 11, records: 450, flushEvery: 7, marks: [{ at: 50, name: 'first' }, { at: 300, name: 'second' }], unaligned: true });
  r = journal(['append', store, '--json'], restream(more, 380));
  t.equal(r.status, 0, r.err);
  t.match(JSON.parse(r.stdout.toString()), { appended: 50, skipped: 21, lastSeq: 450 }, 'overlapping resend appends only the new part');
  r = journal(['last', store]);
  t.equal(r.stdout.toString(), '450\n');
  r = journal(['cat', store, '--from', '390']);
  t.same(decode(r.stdout).records.map(plain), more.records.slice(389).map(plain), '--from 390');
});

t.test('refused input leaves the store untouched', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 12, records: 200, flushEvery: 5 });
  t.equal(journal(['append', store, '--segment-size', SEG], g.bytes).status, 0);
  const before = snapshot(store);
  const cases: Array<[string, Buffer, string, number]> = [
    ['gap', restream(genStream({ seed: 12, records: 260, flushEvery: 5 }), 230), 'DR_SEQ_GAP', 2],
    ['conflict', genStream({ seed: 99, records: 210, flushEvery: 5, groupId: g.header.groupId, volumeIds: g.volumes.map((v) => v.id) }).bytes, 'DR_CONFLICT', 2],
    ['other group', genStream({ seed: 13, records: 10 }).bytes, 'DR_GROUP_MISMATCH', 2],
    ['other volume size', genStream({ seed: 12, records: 10, volumes: [{ name: 'disk0', size: 2 << 20 }], groupId: g.header.groupId, volumeIds: g.volumes.map((v) => v.id) }).bytes, 'DR_VOLUME_MISMATCH', 2],
    ['other volume id', genStream({ seed: 12, records: 10, groupId: g.header.groupId, volumeIds: [idFor(5, 5)] }).bytes, 'DR_VOLUME_MISMATCH', 2],
    ['not a stream', Buffer.from('hello, this is not a journal stream at all........................'), 'DR_BAD_MAGIC', 2],
  ];
  for (const [name, bytes, code, status] of cases) {
    const r = journal(['append', store], bytes);
    t.equal(r.status, status, `${name}: exit ${status}`);
    t.match(r.err, new RegExp(`^dr-journal: error: .*\\(${code}\\)\\n$`), `${name}: one clear line with ${code}`);
    t.same(snapshot(store), before, `${name}: store untouched`);
  }
  const r = journal(['cat', store]);
  t.same(decode(r.stdout).records.map(plain), g.records.map(plain), 'store still holds exactly the first stream');
});

t.test('seek with --from/--since/--until, marks, mark, ls', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 21, records: 600, flushEvery: 25, marks: [{ at: 99, name: 'm100' }, { at: 449, name: 'm450' }], timeStep: 1000 });
  t.equal(journal(['append', store, '--segment-size', SEG], g.bytes).status, 0);
  const since = formatMicros(g.records[299]!.time);
  let r = journal(['cat', store, '--since', since, '--until', 'mark:m450']);
  t.equal(r.status, 0, r.err);
  let d = decode(r.stdout);
  t.equal(d.header.firstSeq, 300, '--since starts at the first record at that time');
  t.same(d.records.map(plain), g.records.slice(299, 450).map(plain), '--since .. --until mark:m450');
  r = journal(['cat', store, '--from', '590', '--until', 'seq:595']);
  d = decode(r.stdout);
  t.same(d.records.map((x) => x.seq), [590, 591, 592, 593, 594, 595]);
  r = journal(['cat', store, '--until', formatMicros(g.records[10]!.time + 500)]);
  t.same(decode(r.stdout).records.map((x) => x.seq), Array.from({ length: 11 }, (_, i) => i + 1), '--until TIME: last record at or before it');
  r = journal(['cat', store, '--until', 'mark:nope']);
  t.equal(r.status, 2);
  t.match(r.err, /no mark named "nope".*\(DR_BAD_POINT\)/);
  r = journal(['cat', store, '--until', 'seq:9999']);
  t.equal(r.status, 2);
  t.match(r.err, /outside the window: the window is seq 1\.\.600.*\(DR_OUTSIDE_WINDOW\)/);
  r = journal(['cat', store, '--until', 'yesterday']);
  t.match(r.err, /DR_BAD_POINT/);

  r = journal(['marks', store, '--json']);
  const marks = JSON.parse(r.stdout.toString());
  t.same(marks.marks.map((m: { seq: number; name: string }) => [m.seq, m.name]), [[100, 'm100'], [450, 'm450']]);
  t.equal(marks.flushPoints.length, g.records.filter((x) => x.type === 'flush').length, 'every flush point listed');
  r = journal(['mark', store, 'after-upgrade', '--kind', 'app']);
  t.equal(r.status, 0, r.err);
  t.equal(r.stdout.toString(), '601\n', 'mark prints its seq');
  r = journal(['marks', store]);
  t.match(r.stdout.toString(), /^mark {2}601 \S+ app after-upgrade$/m);
  r = journal(['last', store, '--json']);
  t.match(JSON.parse(r.stdout.toString()), { seq: 601, firstSeq: 1 });
  r = journal(['ls', store, '--json']);
  const info = JSON.parse(r.stdout.toString());
  t.match(info, { firstSeq: 1, lastSeq: 601, records: 601, volumes: [{ name: 'disk0', size: 1 << 20 }] });
  t.ok(info.segments.length > 5, 'several segments of bounded size');
  t.ok(info.segments.every((s: { bytes: number }) => s.bytes <= 64 * 1024), 'no segment over the segment size');
  t.ok(info.segments.slice(0, -1).every((s: { sealed: boolean }) => s.sealed), 'all but the last sealed');
  r = journal(['ls', store]);
  t.match(r.stdout.toString(), /window: {3}seq 1\.\.601/);
  // each sealed segment is a valid stream on its own
  const seg = path.join(store, info.segments[1].file);
  const p = new StreamParser();
  const items = p.push(fs.readFileSync(seg));
  p.finish();
  t.equal((items[0] as { firstSeq: number }).firstSeq, info.segments[1].firstSeq, 'segment header names its first seq');
  r = journal(['ls', path.join(dir, 'nothing-here')]);
  t.equal(r.status, 2);
  t.match(r.err, /no journal store at .*nothing-here.*\(DR_NO_STORE\)/);
});

t.test('cat --follow sees records appended later and ends with END on SIGTERM', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 31, records: 300, flushEvery: 10 });
  t.equal(journal(['append', store, '--segment-size', SEG], restream(g, 1, 100)).status, 0);
  const follower = journalAsync(['cat', store, '--follow', '--from', '50']);
  const parser = new StreamParser();
  const seen: StreamItem[] = [];
  let err = '';
  follower.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const waiters: Array<() => void> = [];
  let failed: unknown = null;
  follower.stdout.on('data', (c: Buffer) => {
    try {
      parser.push(c, seen);
    } catch (e) {
      failed = e;
    }
    for (const w of waiters.splice(0)) w();
  });
  const reached = async (seq: number): Promise<void> => {
    while (parser.lastSeq < seq && failed === null) await new Promise<void>((resolve) => waiters.push(resolve));
    if (failed) throw failed;
  };
  await reached(100);
  t.equal(journal(['append', store], restream(g, 101, 300)).status, 0);
  await reached(300);
  const exit = new Promise<number | null>((resolve) => follower.on('exit', (code) => resolve(code)));
  follower.kill('SIGTERM');
  t.equal(await exit, 0, `follower stops cleanly ${err}`);
  t.doesNotThrow(() => parser.finish(), 'followed stream ends with a valid END');
  const recs = seen.filter((i) => i.type !== 'header' && i.type !== 'volume' && i.type !== 'end');
  t.same(recs.map((r) => plain(r as never)), g.records.slice(49).map(plain), 'follower got seq 50..300 exactly once');
});

t.test('two appenders at once: the second is refused', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 41, records: 100, flushEvery: 10 });
  const first = journalAsync(['append', store]);
  let err1 = '';
  first.stderr.on('data', (c: Buffer) => (err1 += c.toString()));
  const cut = g.ranges.get(60)![1];
  const bytes = g.bytes.subarray(0, cut);
  first.stdin.write(bytes);
  const lock = path.join(store, 'append.lock');
  for (let i = 0; i < 100 && !fs.existsSync(lock); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(fs.existsSync(lock), 'first appender holds the lock');
  const r = journal(['append', store], restream(g, 61, 100));
  t.equal(r.status, 3, 'second appender exits 3');
  t.match(r.err, /^dr-journal: error: journal store .* is locked by process \d+ .*\(DR_LOCKED\)\n$/);
  const m = journal(['mark', store, 'x']);
  t.match(m.err, /DR_LOCKED/, 'mark needs the lock too');
  first.stdin.end(g.bytes.subarray(cut));
  const code = await new Promise<number | null>((resolve) => first.on('exit', (c) => resolve(c)));
  t.equal(code, 0, err1);
  t.equal(journal(['last', store]).stdout.toString(), '100\n');
});

t.test('a corrupt segment is detected, not repaired away', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 51, records: 200, flushEvery: 10 });
  t.equal(journal(['append', store, '--segment-size', SEG], g.bytes).status, 0);
  const info = JSON.parse(journal(['ls', store, '--json']).stdout.toString());
  const sealed = path.join(store, info.segments[1].file);
  const buf = fs.readFileSync(sealed);
  buf[buf.length - 2000] ^= 0x40;
  fs.writeFileSync(sealed, buf);
  let r = journal(['cat', store]);
  t.equal(r.status, 2, 'cat exits 2');
  t.match(r.err, new RegExp(`segment .*${path.basename(sealed)} is corrupt at byte \\d+: record checksum mismatch.*\\(DR_STORE_CORRUPT\\)`));
  // the open segment: a flipped byte in the middle of durable records is damage, not a torn tail
  const open = path.join(store, info.segments[info.segments.length - 1].file);
  const ob = fs.readFileSync(open);
  ob[140] ^= 0x01; // inside the header of the segment's first record
  fs.writeFileSync(open, ob);
  const sizeBefore = ob.length;
  r = journal(['ls', store]);
  t.equal(r.status, 2);
  t.match(r.err, /is damaged at byte .*were durable.*\(DR_STORE_CORRUPT\)/);
  t.equal(fs.statSync(open).size, sizeBefore, 'nothing trimmed');
});

t.test('a read-only store can be read but not appended to', async (t) => {
  const dir = tmpdir();
  const ro = path.join(dir, 'ro');
  let mounted = false;
  t.teardown(() => {
    if (mounted) execFileSync('umount', [ro]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 61, records: 120, flushEvery: 10 });
  t.equal(journal(['append', store, '--segment-size', SEG], restream(g, 1, 100)).status, 0);
  fs.mkdirSync(ro);
  execFileSync('mount', ['--bind', store, ro]);
  mounted = true;
  execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
  let r = journal(['append', ro], restream(g, 101, 120));
  t.equal(r.status, 3, 'append to a read-only store exits 3');
  t.match(r.err, /^dr-journal: error: .*read-only file system.*\(DR_IO\)\n$/);
  r = journal(['cat', ro]);
  t.equal(r.status, 0, r.err);
  t.equal(decode(r.stdout).records.length, 100, 'cat still works');
  t.equal(journal(['last', ro]).stdout.toString(), '100\n');
  t.equal(journal(['ls', ro]).status, 0);
});

t.test('cat to a slow reader: reused read buffers give the same bytes', async (t) => {
  // cat reads segments into eight reused 1 MiB buffers and reuses one only after standard
  // output took every slice of it; a reader that takes its time (standard output here is a
  // socket, written asynchronously) makes cat wait for buffers rather than overwrite them
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const g = genStream({ seed: 31, records: 600, flushEvery: 50, maxBlocks: 32, volumes: [{ name: 'disk0', size: 64 << 20 }] });
  t.ok(g.bytes.length > 24 << 20, `a stream larger than the buffers (${g.bytes.length} bytes)`);
  t.equal(journal(['append', store, '--segment-size', '4M'], g.bytes).status, 0);
  const fast = journal(['cat', store]);
  t.equal(fast.status, 0, fast.err);
  const child = journalAsync(['cat', store]);
  child.stdin.end();
  const got: Buffer[] = [];
  let n = 0;
  child.stdout.on('data', (d: Buffer) => {
    got.push(d);
    n += d.length;
    if (n >= 256 << 10) {
      n = 0;
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 15);
    }
  });
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.equal(status, 0);
  const slow = Buffer.concat(got);
  t.equal(slow.length, fast.stdout.length, 'same length');
  // the header's creation time and the END record's time differ between runs; the records do not
  const end = slow.length - 80; // END: 32-byte header + 48-byte payload
  t.ok(slow.subarray(64, end).equals(fast.stdout.subarray(64, end)), 'every record byte equal');
  t.same(decode(slow).records.map(plain), g.records.map(plain), 'records equal the input');
});
