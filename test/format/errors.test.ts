// The catalogue of format errors: each DR_ code from a crafted stream, with the byte
// offset and last good seq the reader must report.
import t from 'tap';
import { crc32 } from 'node:zlib';
import { StreamParser, StreamWriter } from '../../src/format/codec.js';
import { encodeRecord, type SequencedRecord } from '../../src/format/layout.js';
import { DrError } from '../../src/errors.js';

const T0 = 1_795_000_000_000_000;
const vol = { name: 'disk0', size: 65536, blockSize: 4096, id: Buffer.alloc(16, 1) };

function base(records: Array<Omit<SequencedRecord, 'seq' | 'time'>> = []) {
  const w = new StreamWriter({ groupId: Buffer.alloc(16, 7), firstSeq: 10, created: T0 });
  const parts = [w.start(), ...w.volume(vol)];
  const starts: number[] = [];
  for (const r of records) {
    starts.push(parts.reduce((n, p) => n + p.length, 0));
    parts.push(...w.record({ ...(r as SequencedRecord), time: T0 + 1 }).parts);
  }
  return { w, parts, starts, bytes: () => Buffer.concat(parts) };
}
const write = (offset: number, n = 16) => ({ type: 'write' as const, volume: 0, offset, data: Buffer.alloc(n, 0x5a) });

/** Re-seal a record's CRCs after tampering with it. */
function reseal(buf: Buffer, at: number): void {
  buf.writeUInt32LE(crc32(buf.subarray(at, at + 24)), at + 24);
  const len = buf.readUInt32LE(at + 4);
  buf.writeUInt32LE(crc32(buf.subarray(at + 32, at + 32 + len), crc32(buf.subarray(at, at + 28))), at + 28);
}

function decode(buf: Buffer): DrError {
  const p = new StreamParser();
  try {
    p.push(buf);
    p.finish();
  } catch (err) {
    return err as DrError;
  }
  throw new Error('stream was accepted');
}

t.test('DR_BAD_MAGIC', async (t) => {
  const e = decode(Buffer.from('hello, not a stream'));
  t.match(e, { code: 'DR_BAD_MAGIC', detail: { offset: 0 } });
});

t.test('DR_UNSUPPORTED_VERSION and DR_UNSUPPORTED_FEATURE', async (t) => {
  const b = base().bytes();
  const v2 = Buffer.from(b);
  v2.writeUInt16LE(2, 8);
  v2.writeUInt32LE(crc32(v2.subarray(0, 60)), 60);
  t.match(decode(v2), { code: 'DR_UNSUPPORTED_VERSION', detail: { offset: 8 } });
  const feat = Buffer.from(b);
  feat.writeUInt32LE(1 << 3, 12);
  feat.writeUInt32LE(crc32(feat.subarray(0, 60)), 60);
  t.match(decode(feat), { code: 'DR_UNSUPPORTED_FEATURE', detail: { offset: 12 } });
  const compat = Buffer.from(b);
  compat.writeUInt32LE(1 << 5, 16); // unknown compatible feature: ignored
  compat.writeUInt32LE(crc32(compat.subarray(0, 60)), 60);
  const p = new StreamParser();
  t.doesNotThrow(() => p.push(compat), 'unknown compatible feature bits are ignored');
});

t.test('DR_BAD_CHECKSUM names the record and the last good seq', async (t) => {
  const s = base([write(0), write(4096), write(8192)]);
  const b = s.bytes();
  b[s.starts[1]! + 40]! ^= 0x01; // a data byte of seq 11
  const e = decode(b);
  t.match(e, { code: 'DR_BAD_CHECKSUM', detail: { offset: s.starts[1], lastGoodSeq: 10 } });
  t.match(e.message, /record checksum mismatch \(seq 11\) at byte \d+ \(last good seq 10\)/);
  const h = s.bytes();
  h[s.starts[2]! + 5]! ^= 0x10; // the length field of seq 12: the header CRC catches it before any payload is read
  t.match(decode(h), { code: 'DR_BAD_CHECKSUM', detail: { offset: s.starts[2], lastGoodSeq: 11 } });
});

t.test('DR_TRUNCATED mid-record and at a record boundary', async (t) => {
  const s = base([write(0), write(4096)]);
  const b = s.bytes();
  t.match(decode(b.subarray(0, s.starts[1]! + 20)), { code: 'DR_TRUNCATED', detail: { offset: s.starts[1], lastGoodSeq: 10 } });
  t.match(decode(b), { code: 'DR_TRUNCATED', message: /without its END trailer/, detail: { offset: b.length, lastGoodSeq: 11 } });
  t.match(decode(b.subarray(0, 30)), { code: 'DR_TRUNCATED', detail: { offset: 0 } });
});

t.test('DR_SEQ_ORDER and DR_TIME_ORDER', async (t) => {
  const s = base([write(0)]);
  const skip = encodeRecord({ type: 'flush', seq: 12, time: T0 + 2 });
  const at = s.bytes().length;
  t.match(decode(Buffer.concat([s.bytes(), ...skip])), { code: 'DR_SEQ_ORDER', detail: { offset: at, lastGoodSeq: 10 } });
  const dup = encodeRecord({ type: 'flush', seq: 10, time: T0 + 2 });
  t.match(decode(Buffer.concat([s.bytes(), ...dup])), { code: 'DR_SEQ_ORDER' });
  const back = encodeRecord({ type: 'flush', seq: 11, time: T0 });
  t.match(decode(Buffer.concat([s.bytes(), ...back])), { code: 'DR_TIME_ORDER', detail: { offset: at } });
});

t.test('DR_LENGTH_LIMIT before allocating', async (t) => {
  const s = base([write(0)]);
  const b = s.bytes();
  b.writeUInt32LE(0xfffffff0, s.starts[0]! + 4);
  b.writeUInt32LE(crc32(b.subarray(s.starts[0]!, s.starts[0]! + 24)), s.starts[0]! + 24);
  const p = new StreamParser();
  t.throws(() => p.push(b.subarray(0, s.starts[0]! + 32)), { code: 'DR_LENGTH_LIMIT' }, 'refused from the header alone');
});

t.test('DR_UNKNOWN_RECORD; ignorable records are skipped', async (t) => {
  const s = base();
  const at = s.bytes().length;
  const mandatory = encodeRecord({ type: 'unknown', code: 0x0042, flags: 0, payload: Buffer.from('x'), seq: 10, time: T0 });
  t.match(decode(Buffer.concat([s.bytes(), ...mandatory])), { code: 'DR_UNKNOWN_RECORD', detail: { offset: at } });
});

t.test('DR_BAD_RECORD and DR_OUT_OF_RANGE', async (t) => {
  const s = base();
  const at = s.bytes().length;
  const undeclared = encodeRecord({ type: 'write', volume: 3, offset: 0, data: Buffer.alloc(4), seq: 10, time: T0 });
  const e = decode(Buffer.concat([s.bytes(), ...undeclared]));
  t.match(e, { code: 'DR_BAD_RECORD', message: /volume 3, which was never declared/, detail: { offset: at } });
  const past = encodeRecord({ type: 'write', volume: 0, offset: 65536 - 8, data: Buffer.alloc(16), seq: 10, time: T0 });
  t.match(decode(Buffer.concat([s.bytes(), ...past])), { code: 'DR_OUT_OF_RANGE', message: /past the end of volume disk0/ });
  const zpast = encodeRecord({ type: 'zero', volume: 0, offset: 2 ** 52, length: 2 ** 52 - 1, seq: 10, time: T0 });
  t.match(decode(Buffer.concat([s.bytes(), ...zpast])), { code: 'DR_OUT_OF_RANGE' });
  const w = s.bytes();
  const escaping = encodeRecord({ type: 'volume', seq: 0, time: T0, index: 1, blockSize: 4096, size: 4096, id: Buffer.alloc(16), name: 'ok' });
  // tamper the name into "../x" and reseal: a hostile writer cannot smuggle a path
  const v = Buffer.concat(escaping);
  v.write('..', 32 + 34);
  reseal(v, 0);
  t.match(decode(Buffer.concat([w, v])), { code: 'DR_BAD_RECORD', message: /bad volume name/ });
});

t.test('DR_TRAILER_MISMATCH and DR_TRAILING_DATA', async (t) => {
  const s = base([write(0), write(4096)]);
  const endParts = s.w.end(T0 + 5);
  const good = Buffer.concat([...s.parts, ...endParts]);
  const p = new StreamParser();
  p.push(good);
  t.doesNotThrow(() => p.finish(), 'the untouched stream is complete');
  const endAt = good.length - 80;
  const miscount = Buffer.from(good);
  miscount.writeUInt32LE(99, endAt + 32);
  reseal(miscount, endAt);
  t.match(decode(miscount), { code: 'DR_TRAILER_MISMATCH', message: /END counts 99 records, stream has 3/ });
  // a dropped record (seq renumbered so order checks pass) is caught by the digest
  const dropped = Buffer.concat([...base([write(0)]).parts, ...endParts]);
  const d = decode(dropped);
  t.equal(d.code, 'DR_TRAILER_MISMATCH');
  t.match(decode(Buffer.concat([good, Buffer.from('x')])), { code: 'DR_TRAILING_DATA' });
});
