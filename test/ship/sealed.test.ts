// dr-ship send from a store of many sealed segments: their records go out in large
// slices read straight from the segment files (sealed-slices.ts), the open segment
// through the store's reader. Checks: the replica is the same record for record,
// plain and compressed; a resume that starts in the middle of a segment sealed since
// the last run; a record larger than a read slice; a damaged record in a sealed
// segment is refused by the receiver (which checks every record) and nothing after
// it is stored.
import t from 'tap';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JournalStore } from '../../src/store/index.js';
import { makeJournal, digestJournal } from '../helpers/ship-journal.js';
import { DR_SHIP, killLeftovers, run } from '../helpers/ship-run.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'drkit-shipsealed-'));
t.teardown(() => {
  killLeftovers();
  rmSync(tmp, { recursive: true, force: true });
});

const KiB = 1024;

async function segmentsOf(dir: string): Promise<Array<{ firstSeq: number; lastSeq: number; sealed: boolean; data: string }>> {
  const store = await JournalStore.open(dir, { readOnly: true });
  try {
    return store.segments.map((s) => ({ firstSeq: s.firstSeq, lastSeq: s.summary.lastSeq, sealed: s.summary.sealed, data: s.data }));
  } finally {
    await store.close();
  }
}

async function ship(src: string, dst: string, extra: string[] = []) {
  const r = run(DR_SHIP, ['send', src, '--once', '--json', ...extra, '--', DR_SHIP, 'receive', dst]);
  return r.done.then((res) => ({ ...res, events: r.events() }));
}

t.test('sealed segments, a record larger than a read slice, a resume inside a segment sealed since', async (t) => {
  const src = path.join(tmp, 'src');
  const dst = path.join(tmp, 'dst');
  await makeJournal(src, { writes: 40, writeSize: 16 * KiB, segmentSize: 256 * KiB });
  const big = await makeJournal(src, { writes: 0, writeSize: 4096, bigWrites: [5 * 1024 * KiB + 123] });
  await makeJournal(src, { writes: 24, writeSize: 16 * KiB });
  let segs = await segmentsOf(src);
  t.ok(segs.filter((s) => s.sealed).length >= 4, `${segs.length} segments, most of them sealed`);
  t.ok(segs.some((s) => s.sealed && s.lastSeq === big.lastSeq), 'the 5 MiB record sits in a sealed segment');
  const open = segs.at(-1)!;
  t.ok(!open.sealed && open.lastSeq > open.firstSeq, 'the last segment is open and holds several records');

  const first = await ship(src, dst);
  t.equal(first.code, 0, 'plain ship exits 0', { stderr: first.stderr });
  let a = await digestJournal(src);
  let b = await digestJournal(dst);
  t.equal(b.lastSeq, a.lastSeq, 'everything arrived');
  t.equal(b.digest, a.digest, 'the same records, byte for byte');

  // More records: the open segment fills and is sealed, so the next run starts in its middle.
  await makeJournal(src, { writes: 40, writeSize: 16 * KiB });
  segs = await segmentsOf(src);
  const resumeIn = segs.find((s) => s.firstSeq <= a.lastSeq + 1 && s.lastSeq >= a.lastSeq + 1);
  t.ok(resumeIn?.sealed && resumeIn.firstSeq < a.lastSeq + 1, `seq ${a.lastSeq + 1} is inside a sealed segment now`);
  const second = await ship(src, dst, ['--compress']);
  t.equal(second.code, 0, 'compressed ship exits 0', { stderr: second.stderr });
  const connected = second.events.find((e) => e.event === 'connected');
  t.equal(connected?.receiver_seq, a.lastSeq, 'the receiver reported where it was');
  t.equal(connected?.compress, 'brotli', 'compression negotiated');
  a = await digestJournal(src);
  b = await digestJournal(dst);
  t.equal(b.lastSeq, a.lastSeq, 'the new records arrived');
  t.equal(b.digest, a.digest, 'the replica is the same record for record');
  const done = second.events.find((e) => e.event === 'done');
  t.ok(Number(done?.wire_bytes) < Number(done?.bytes), `fewer bytes on the wire (${done?.wire_bytes}) than in the stream (${done?.bytes})`);
});

t.test('a damaged record in a sealed segment: refused by the receiver, nothing after it stored', async (t) => {
  const src = path.join(tmp, 'bad-src');
  const dst = path.join(tmp, 'bad-dst');
  await makeJournal(src, { writes: 48, writeSize: 16 * KiB, mixed: false, segmentSize: 128 * KiB });
  const segs = await segmentsOf(src);
  const victim = segs.filter((s) => s.sealed)[1]!;
  const badSeq = victim.firstSeq + 2;
  // flip a payload byte of record badSeq (its offset through the store's index)
  const store = await JournalStore.open(src, { readOnly: true });
  const at = store.locate(badSeq).offset + 32 + 100;
  await store.close();
  const fd = openSync(victim.data, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);

  const res = await ship(src, dst);
  t.not(res.code, 0, 'the sender fails');
  t.match(res.stderr, new RegExp(`dr-ship: error: receiver: record checksum mismatch \\(seq ${badSeq}\\)`), 'one clear error naming the record');
  t.notMatch(res.stderr, /reconnecting/, 'not retried');
  const got = await digestJournal(dst);
  t.equal(got.lastSeq, badSeq - 1, 'the receiver kept the records before it, none after');
  const want = await digestJournal(src, badSeq - 1);
  t.equal(got.digest, want.digest, 'and they are the source records');
});
