// The point-in-time reader and prune: restores at many points (every mark, the
// window start, latest, random seqs) must equal an independent reference built by
// replaying the stream into plain buffers, before and after the window slides.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { JournalStore, prune } from '../../src/store/index.js';
import { genStream, journal, reference, rng, tmpdir, type GenStream } from '../helpers/store-streams.js';

const VOLUMES = [{ name: 'db', size: 1 << 20, blockSize: 4096 }, { name: 'logs', size: 384 * 1024 + 512, blockSize: 512 }];

function makeStream(seed: number): GenStream {
  const marks = Array.from({ length: 12 }, (_, i) => ({ at: 60 + i * 120, name: `m${i}` }));
  return genStream({ seed, records: 1500, volumes: VOLUMES, flushEvery: 17, marks, unaligned: true, maxBlocks: 6 });
}

async function checkPoint(t: Tap.Test, store: JournalStore, g: GenStream, seq: number, what: string, r: () => number): Promise<void> {
  const pit = await store.pointInTime(seq);
  try {
    const ref = reference(g.volumes, g.records, seq);
    for (const v of g.volumes) {
      const whole = await pit.read(v.index, 0, v.size);
      t.ok(whole.equals(ref[v.index]!), `${what}: volume ${v.name} at seq ${seq} equals the replayed reference`);
      // unaligned pieces
      for (let i = 0; i < 3; i++) {
        const off = Math.floor(r() * v.size);
        const len = Math.min(v.size - off, 1 + Math.floor(r() * 70_000));
        const part = await pit.read(v.index, off, len);
        if (!part.equals(ref[v.index]!.subarray(off, off + len))) t.fail(`${what}: ${v.name} ${off}+${len} differs`);
      }
      // allocated() covers every non-zero byte
      const covered = Buffer.alloc(v.size);
      for await (const a of pit.allocated(v.index)) covered.fill(1, a.offset, a.offset + a.length);
      let missed = 0;
      for (let i = 0; i < v.size; i++) if (ref[v.index]![i] !== 0 && covered[i] === 0) missed++;
      t.equal(missed, 0, `${what}: allocated() covers all data of ${v.name}`);
    }
  } finally {
    await pit.release();
  }
}

t.test('restore at every point equals the reference, before and after prune', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dirStore = path.join(dir, 'j');
  const g = makeStream(71);
  const r = rng(72);
  let res = journal(['append', dirStore, '--segment-size', '128K'], g.bytes);
  t.equal(res.status, 0, res.err);

  let store = await JournalStore.open(dirStore);
  const marks = store.marks();
  t.equal(marks.length, 12);
  for (const m of marks.filter((_, i) => i % 3 === 0)) await checkPoint(t, store, g, m.seq, `mark ${m.name}`, r);
  await checkPoint(t, store, g, store.lastSeq, 'latest', r);
  await checkPoint(t, store, g, 1, 'seq 1', r);
  await t.rejects(store.pointInTime(1501), { code: 'DR_OUTSIDE_WINDOW' }, 'past the end is refused');

  // slide the window by size through the command, then by time
  res = journal(['prune', dirStore, '--keep-size', '600K', '--json']);
  t.equal(res.status, 0, res.err);
  const p1 = JSON.parse(res.stdout.toString());
  t.ok(p1.foldedSegments > 0, `folded ${p1.foldedSegments} segments`);
  t.ok(p1.releasedBytes > 0, 'released space');
  store = await JournalStore.open(dirStore);
  t.equal(store.firstSeq, p1.firstSeq, 'window starts where prune said');
  const info = store.info();
  t.ok(info.segmentBytes <= 600 * 1024 + 128 * 1024, 'segments within --keep-size (plus the open one)');
  const folded = p1.foldedMarks.map((m: { name: string }) => m.name);
  t.ok(folded.length > 0, `marks folded away are reported: ${folded.join(' ')}`);
  t.throws(() => store.resolvePoint(`mark:${folded[0]}`), { code: 'DR_OUTSIDE_WINDOW' }, 'a folded mark is outside the window');
  t.throws(() => store.resolvePoint('seq:1'), { code: 'DR_OUTSIDE_WINDOW' });
  await checkPoint(t, store, g, store.firstSeq - 1, 'window start (base alone)', r);
  for (const m of store.marks()) await checkPoint(t, store, g, m.seq, `mark ${m.name} after prune`, r);
  const marksOut = journal(['marks', dirStore]);
  t.match(marksOut.err, /folded into the base by prune/);

  // a reader holds its files across a prune
  const held = await store.pointInTime(store.firstSeq + 5);
  const before = await held.read(0, 0, VOLUMES[0]!.size);
  const p2 = await prune(store, { keepMs: 1000 });
  t.ok(p2.foldedSegments > 0, 'second prune folds more');
  t.ok(p2.keptForReaders.length > 0, `files kept for the reader: ${p2.keptForReaders.length}`);
  t.ok((await held.read(0, 0, VOLUMES[0]!.size)).equals(before), 'the reader still reads the same bytes');
  await held.release();
  const p3 = await prune(store, { keepMs: 1000 });
  t.equal(p3.foldedSegments, 0, 'nothing more to fold');
  t.ok(p3.releasedBytes > 0, 'kept files released once the reader is gone');
  t.equal(fs.readdirSync(path.join(dirStore, 'leases')).length, 0, 'lease removed');
  store = await JournalStore.open(dirStore);
  t.equal(store.segments.length, 1, 'only the open segment is left');
  await checkPoint(t, store, g, store.firstSeq - 1, 'base after second prune', r);
  await checkPoint(t, store, g, store.lastSeq, 'latest after second prune', r);
  t.equal(fs.readdirSync(path.join(dirStore, 'base')).filter((n) => n.endsWith('.img')).length, 2, 'one base image per volume');

  // still appendable, and the new records restore too
  const more = genStream({ seed: 71, records: 1600, volumes: VOLUMES, flushEvery: 17, marks: Array.from({ length: 12 }, (_, i) => ({ at: 60 + i * 120, name: `m${i}` })), unaligned: true, maxBlocks: 6 });
  res = journal(['append', dirStore], more.bytes);
  t.equal(res.status, 0, res.err);
  store = await JournalStore.open(dirStore);
  await checkPoint(t, store, more, 1600, 'latest after more appends', r);
});
