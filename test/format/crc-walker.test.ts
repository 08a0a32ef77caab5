// RecordCrcWalker checks record CRCs ahead of the parser: whatever the chunking, it must
// vouch for exactly the records whose CRCs match, and stop at the first one that does not
// (the parser then reports it as always). StreamParser.trustChecksumsBelow() must skip
// only the checks already made.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { RecordCrcWalker } from '../../src/format/crc-walker.js';
import { StreamParser } from '../../src/format/codec.js';
import { DrError } from '../../src/errors.js';
import { genStream } from '../helpers/store-streams.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures');

function walk(bytes: Buffer, sizes: (i: number) => number): number {
  const w = new RecordCrcWalker();
  let end = 0;
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, Math.min(sizes(i), bytes.length - at));
    end = w.push(bytes.subarray(at, at + n));
    at += n;
  }
  return end;
}

t.test('golden fixtures are verified to their last byte, fed whole or one byte at a time', async (t) => {
  for (const f of ['small.drj', 'group.drj', 'ignorable.drj', 'live.drj']) {
    const bytes = fs.readFileSync(path.join(fixtures, f));
    t.equal(walk(bytes, () => bytes.length), bytes.length, `${f} whole`);
    t.equal(walk(bytes, () => 1), bytes.length, `${f} byte by byte`);
    t.equal(walk(bytes, (i) => (i * 7919) % 300 + 1), bytes.length, `${f} in uneven chunks`);
  }
});

t.test('a damaged record stops the walk at its start, whatever the chunking', async (t) => {
  const g = genStream({ seed: 7, records: 200, flushEvery: 20, maxBlocks: 3 });
  const victim = g.records.find((r) => r.seq >= 120 && r.type === 'write')!.seq;
  const [start, end] = g.ranges.get(victim)!;
  for (const [what, at] of [['payload', end - 3], ['header CRC field', start + 24], ['record CRC field', start + 29], ['length', start + 5]] as const) {
    const bad = Buffer.from(g.bytes);
    bad[at] = bad[at]! ^ 0x40;
    for (const chunk of [1, 1000, 65536, bad.length]) t.equal(walk(bad, () => chunk), start, `${what}, chunks of ${chunk}`);
  }
});

t.test('the parser trusts only what it was told, and still reports a bad record as before', async (t) => {
  const g = genStream({ seed: 8, records: 100, flushEvery: 10, maxBlocks: 2 });
  const victim = g.records.find((r) => r.seq >= 50 && r.type === 'write')!.seq;
  const [start, end] = g.ranges.get(victim)!;
  const bad = Buffer.from(g.bytes);
  bad[end - 1] = bad[end - 1]! ^ 1;
  const errorOf = (trust: (p: StreamParser) => void): string => {
    const p = new StreamParser();
    trust(p);
    try {
      p.push(bad);
      return 'no error';
    } catch (err) {
      return (err as DrError).message;
    }
  };
  const plain = errorOf(() => undefined);
  t.equal(plain, `record checksum mismatch (seq ${victim}) at byte ${start} (last good seq ${victim - 1})`);
  t.equal(errorOf((p) => p.trustChecksumsBelow(walk(bad, () => 4096))), plain, 'trusting the walker: same error');
  // told (wrongly) that the damaged record is fine, the parser does skip its check: the trust is real
  t.equal(errorOf((p) => p.trustChecksumsBelow(end)), 'no error');
});

t.test('a walk handed to another thread goes on exactly where it stood', async (t) => {
  // CheckedFileReader walks the first chunks on the main thread, then posts state() to its
  // reader thread, which resume()s: at any split, the result must be the unsplit walk's
  const good = genStream({ seed: 9, records: 60, flushEvery: 7, maxBlocks: 3 }).bytes;
  const bad = Buffer.from(good);
  bad[good.length - 200] = bad[good.length - 200]! ^ 0x10;
  for (const [what, bytes] of [['intact', good], ['damaged near the end', bad]] as const) {
    const whole = walk(bytes, () => bytes.length);
    let differ = 0;
    for (let cut = 1; cut < bytes.length; cut += 97) {
      const first = new RecordCrcWalker();
      first.push(bytes.subarray(0, cut));
      const second = RecordCrcWalker.resume(structuredClone(first.state()));
      let end = second.verifiedEnd;
      for (let at = cut; at < bytes.length; at += 1000) end = second.push(bytes.subarray(at, Math.min(at + 1000, bytes.length)));
      if (end !== whole) differ++;
    }
    t.equal(differ, 0, `${what}: the same verified end at every split (${whole})`);
  }
});
