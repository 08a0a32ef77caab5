/**
 * The catalogue of hostile and broken journal streams, built byte by byte from the
 * layout of docs/FORMAT.md (sections 3 to 6) with the CRCs recomputed, so that each
 * entry reaches the check it is meant for (a bad CRC would hide everything else).
 * Every entry names the DR_ codes a reader may answer with.
 *
 * Base stream: group G, one volume `disk0` (64 KiB, block 4096) declared at index 0,
 * records seq `first`.. (default 10), then END. `prefix(first)` gives a store with
 * seqs 1..first-1 of the same group and volume, to append the entries to.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { DrCode } from '../../src/errors.js';
import { rand } from './reliability-common.js';

export const GROUP = Buffer.alloc(16, 0x47);
export const VOL_ID = Buffer.alloc(16, 0x56);
export const VOL_SIZE = 65536;
export const T0 = 1_795_000_000_000_000;
const MAGIC = Buffer.from([0x89, 0x44, 0x52, 0x4a, 0x0d, 0x0a, 0x1a, 0x0a]);

export function rawHeader(o: { firstSeq: number; version?: number; size?: number; incompat?: number; group?: Buffer; badCrc?: boolean }): Buffer {
  const b = Buffer.alloc(64);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(o.version ?? 1, 8);
  b.writeUInt16LE(o.size ?? 64, 10);
  b.writeUInt32LE(o.incompat ?? 0, 12);
  (o.group ?? GROUP).copy(b, 20);
  b.writeBigUInt64LE(BigInt(o.firstSeq), 36);
  b.writeBigUInt64LE(BigInt(T0 - 10), 44);
  b.writeUInt32LE((crc32(b.subarray(0, 60)) ^ (o.badCrc ? 1 : 0)) >>> 0, 60);
  return b;
}

/** One record with correct CRCs (unless told otherwise); `length` overrides the header's length field. */
export function rawRecord(type: number, flags: number, seq: number | bigint, time: number, payload: Buffer, o: { length?: number; badCrc?: boolean } = {}): Buffer {
  const h = Buffer.alloc(32);
  h.writeUInt16LE(type, 0);
  h.writeUInt16LE(flags, 2);
  h.writeUInt32LE(o.length ?? payload.length, 4);
  h.writeBigUInt64LE(BigInt(seq), 8);
  h.writeBigUInt64LE(BigInt(time), 16);
  h.writeUInt32LE(crc32(h.subarray(0, 24)), 24);
  h.writeUInt32LE((crc32(payload, crc32(h.subarray(0, 28))) ^ (o.badCrc ? 1 : 0)) >>> 0, 28);
  return Buffer.concat([h, payload]);
}

export function volumePayload(o: { index?: number; blockSize?: number; size?: number | bigint; id?: Buffer; name?: Buffer | string } = {}): Buffer {
  const name = Buffer.isBuffer(o.name) ? o.name : Buffer.from(o.name ?? 'disk0');
  const p = Buffer.alloc(34 + name.length);
  p.writeUInt32LE(o.index ?? 0, 0);
  p.writeUInt32LE(o.blockSize ?? 4096, 4);
  p.writeBigUInt64LE(BigInt(o.size ?? VOL_SIZE), 8);
  (o.id ?? VOL_ID).copy(p, 16);
  p.writeUInt16LE(name.length, 32);
  name.copy(p, 34);
  return p;
}

export function writePayload(volume: number, offset: number | bigint, data: Buffer, reserved = 0): Buffer {
  const p = Buffer.alloc(16);
  p.writeUInt32LE(volume, 0);
  p.writeUInt32LE(reserved, 4);
  p.writeBigUInt64LE(BigInt(offset), 8);
  return Buffer.concat([p, data]);
}

export function zeroPayload(volume: number, offset: number | bigint, length: number | bigint): Buffer {
  const p = Buffer.alloc(24);
  p.writeUInt32LE(volume, 0);
  p.writeBigUInt64LE(BigInt(offset), 8);
  p.writeBigUInt64LE(BigInt(length), 16);
  return p;
}

export function markPayload(name: Buffer | string, kind = 2): Buffer {
  const n = Buffer.isBuffer(name) ? name : Buffer.from(name);
  const p = Buffer.alloc(20 + n.length);
  p.writeUInt8(kind, 0);
  p.writeUInt16LE(n.length, 2);
  Buffer.alloc(16, 0x4d).copy(p, 4);
  n.copy(p, 20);
  return p;
}

export function signaturePayload(volume: number, offset: number, length: number, algorithm = 1, digest = Buffer.alloc(32)): Buffer {
  const p = Buffer.alloc(24);
  p.writeUInt32LE(volume, 0);
  p.writeUInt8(algorithm, 4);
  p.writeUInt8(digest.length, 5);
  p.writeBigUInt64LE(BigInt(offset), 8);
  p.writeBigUInt64LE(BigInt(length), 16);
  return Buffer.concat([p, digest]);
}

/** END over `bytes` (the whole stream so far) with `records` records: count, byte count, running digest. */
export function endRecord(bytes: Buffer, o: { countDelta?: number; badDigest?: boolean } = {}): Buffer {
  // the running digest: SHA-256 of the stream header and every record header before END
  const h = createHash('sha256').update(bytes.subarray(0, 64));
  let off = 64;
  let count = 0;
  while (off < bytes.length) {
    const len = bytes.readUInt32LE(off + 4);
    h.update(bytes.subarray(off, off + 32));
    off += 32 + len;
    count++;
  }
  const p = Buffer.alloc(48);
  p.writeBigUInt64LE(BigInt(count + (o.countDelta ?? 0)), 0);
  p.writeBigUInt64LE(BigInt(bytes.length), 8);
  const d = h.digest();
  if (o.badDigest) d[0]! ^= 0xff;
  d.copy(p, 16);
  return rawRecord(8, 0, 0, T0 + 100_000_000_000, p);
}

export interface Hostile {
  name: string;
  bytes: Buffer;
  codes: DrCode[];
  /** the valid records before the fault (a reader may keep them) */
  goodRecords: number;
}

const W = (seq: number, i: number, base = T0) =>
  rawRecord(2, 0, seq, base + i * 10, writePayload(0, (i * 4096) % VOL_SIZE, Buffer.alloc(4096, 0x20 + (i % 64))));

/** A valid body: `n` writes, a flush and a mark, from seq `first`. */
export function goodRecords(first: number, n: number): Buffer[] {
  const out: Buffer[] = [];
  const base = T0 + first * 1000;
  for (let i = 0; i < n; i++) out.push(W(first + i, i, base));
  out.push(rawRecord(4, 0, first + n, base + n * 10, Buffer.alloc(0)));
  out.push(rawRecord(5, 0, first + n + 1, base + n * 10 + 1, markPayload(`good-${first}`)));
  return out;
}

/** The store prefix: seqs 1..first-1, a valid stream with END. */
export function prefix(first: number): Buffer {
  const head = Buffer.concat([rawHeader({ firstSeq: 1 }), rawRecord(1, 0, 0, T0 - 10, volumePayload()), ...goodRecords(1, first - 3)]);
  return Buffer.concat([head, endRecord(head)]);
}

export function catalogue(first = 10, seed = 1): Hostile[] {
  const r = rand(seed);
  const H = () => rawHeader({ firstSeq: first });
  const V = () => rawRecord(1, 0, 0, T0 - 10, volumePayload());
  const good = goodRecords(first, 4); // seqs first..first+5
  const next = first + 6;
  const tn = T0 + first * 1000 + 500; // after the good records, before the next entry's (times never go back across entries)
  const ok = (...tail: Buffer[]) => Buffer.concat([H(), V(), ...good, ...tail]);
  const withEnd = (b: Buffer) => Buffer.concat([b, endRecord(b)]);
  const list: Hostile[] = [];
  const add = (name: string, bytes: Buffer, codes: DrCode[], goodRecords = 0) => list.push({ name, bytes, codes, goodRecords });

  add('not a stream at all', Buffer.from('hello, this is not a journal stream\n'), ['DR_BAD_MAGIC']);
  add('a text-mode transfer (CR LF -> LF in the magic)', Buffer.concat([Buffer.from([0x89, 0x44, 0x52, 0x4a, 0x0a, 0x1a, 0x0a]), ok().subarray(8)]), ['DR_BAD_MAGIC']);
  add('empty input', Buffer.alloc(0), ['DR_TRUNCATED', 'DR_BAD_MAGIC']);
  add('header cut at 30 bytes', H().subarray(0, 30), ['DR_TRUNCATED']);
  add('format version 2', withEnd(Buffer.concat([rawHeader({ firstSeq: first, version: 2 }), V(), ...good])), ['DR_UNSUPPORTED_VERSION']);
  add('header size 128', withEnd(Buffer.concat([rawHeader({ firstSeq: first, size: 128 }), V(), ...good])), ['DR_UNSUPPORTED_VERSION']);
  add('an incompatible feature bit', withEnd(Buffer.concat([rawHeader({ firstSeq: first, incompat: 1 << 7 }), V(), ...good])), ['DR_UNSUPPORTED_FEATURE']);
  add('header CRC wrong', withEnd(Buffer.concat([rawHeader({ firstSeq: first, badCrc: true }), V(), ...good])), ['DR_BAD_CHECKSUM']);
  add('first seq 0', withEnd(Buffer.concat([rawHeader({ firstSeq: 0 }), V()])), ['DR_SEQ_ORDER', 'DR_BAD_RECORD', 'DR_LENGTH_LIMIT']);
  add('first seq 2^60', withEnd(Buffer.concat([rawHeader({ firstSeq: 2 ** 60 }), V()])), ['DR_LENGTH_LIMIT', 'DR_SEQ_ORDER', 'DR_BAD_RECORD']);
  add('record CRC wrong (a data byte flipped)', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(0, 0, Buffer.alloc(512, 1)), { badCrc: true }))), ['DR_BAD_CHECKSUM'], 6);
  add('cut inside a record', ok(W(next, 7, tn)).subarray(0, ok().length + 100), ['DR_TRUNCATED'], 6);
  add('no END trailer', ok(), ['DR_TRUNCATED'], 6);
  add('a seq skipped', withEnd(ok(rawRecord(4, 0, next + 1, tn, Buffer.alloc(0)))), ['DR_SEQ_ORDER'], 6);
  add('a seq repeated', withEnd(ok(rawRecord(4, 0, next - 1, tn, Buffer.alloc(0)))), ['DR_SEQ_ORDER'], 6);
  add('a VOLUME record with seq 5', withEnd(Buffer.concat([H(), rawRecord(1, 0, 5, T0 - 10, volumePayload()), ...good])), ['DR_SEQ_ORDER']);
  add('time going backwards', withEnd(ok(rawRecord(4, 0, next, T0 - 5000, Buffer.alloc(0)))), ['DR_TIME_ORDER'], 6);
  add('a time over 2^53', withEnd(ok(rawRecord(4, 0, next, 2 ** 60, Buffer.alloc(0)))), ['DR_LENGTH_LIMIT'], 6);
  add('WRITE length field 0xfffffff0 (header CRC resealed)', ok(rawRecord(2, 0, next, tn, writePayload(0, 0, Buffer.alloc(64)), { length: 0xfffffff0 })), ['DR_LENGTH_LIMIT'], 6);
  add('WRITE of 32 MiB + 1 claimed, input ends', ok(rawRecord(2, 0, next, tn, writePayload(0, 0, Buffer.alloc(8)), { length: 16 + 32 * 1024 * 1024 + 1 })), ['DR_LENGTH_LIMIT'], 6);
  add('ignorable record over 1 MiB', withEnd(ok(rawRecord(0x8123, 0, next, tn, Buffer.alloc((1 << 20) + 1)))), ['DR_LENGTH_LIMIT'], 6);
  add('unknown mandatory record type 0x0042', withEnd(ok(rawRecord(0x42, 0, next, tn, Buffer.from('x')))), ['DR_UNKNOWN_RECORD'], 6);
  add('WRITE to volume 3, never declared', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(3, 0, Buffer.alloc(16))))), ['DR_BAD_RECORD'], 6);
  add('WRITE to volume 0xffffffff', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(0xffffffff, 0, Buffer.alloc(16))))), ['DR_BAD_RECORD'], 6);
  add('WRITE past the end of the volume', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(0, VOL_SIZE - 8, Buffer.alloc(16))))), ['DR_OUT_OF_RANGE'], 6);
  add('WRITE at offset 2^64-16 (wraps around)', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(0, 2n ** 64n - 16n, Buffer.alloc(32))))), ['DR_OUT_OF_RANGE', 'DR_LENGTH_LIMIT'], 6);
  add('WRITE reserved field set', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(0, 0, Buffer.alloc(16), 7)))), ['DR_BAD_RECORD'], 6);
  add('WRITE with an unknown flag', withEnd(ok(rawRecord(2, 0x40, next, tn, writePayload(0, 0, Buffer.alloc(16))))), ['DR_UNSUPPORTED_FEATURE'], 6);
  add('WRITE of no data', withEnd(ok(rawRecord(2, 0, next, tn, writePayload(0, 0, Buffer.alloc(0))))), ['DR_BAD_RECORD', 'DR_LENGTH_LIMIT'], 6);
  add('ZERO past the end (2^52 + 2^52-1)', withEnd(ok(rawRecord(3, 0, next, tn, zeroPayload(0, 2 ** 52, 2 ** 52 - 1)))), ['DR_OUT_OF_RANGE', 'DR_LENGTH_LIMIT'], 6);
  add('ZERO at offset 2^63', withEnd(ok(rawRecord(3, 0, next, tn, zeroPayload(0, 2n ** 63n, 1)))), ['DR_LENGTH_LIMIT', 'DR_OUT_OF_RANGE'], 6);
  add('ZERO of length 0', withEnd(ok(rawRecord(3, 0, next, tn, zeroPayload(0, 0, 0)))), ['DR_BAD_RECORD'], 6);
  add('ZERO payload of 23 bytes', withEnd(ok(rawRecord(3, 0, next, tn, zeroPayload(0, 0, 1).subarray(0, 23)))), ['DR_BAD_RECORD'], 6);
  add('FLUSH with a payload', withEnd(ok(rawRecord(4, 0, next, tn, Buffer.alloc(4)))), ['DR_BAD_RECORD'], 6);
  add('SIGNATURE past the end', withEnd(ok(rawRecord(6, 0, next, tn, signaturePayload(0, VOL_SIZE - 100, 4096)))), ['DR_OUT_OF_RANGE'], 6);
  add('SIGNATURE with hash algorithm 9', withEnd(ok(rawRecord(6, 0, next, tn, signaturePayload(0, 0, 4096, 9)))), ['DR_UNSUPPORTED_FEATURE'], 6);
  add('MARK kind 9', withEnd(ok(rawRecord(5, 0, next, tn, markPayload('m', 9)))), ['DR_BAD_RECORD'], 6);
  add('MARK name with a control character', withEnd(ok(rawRecord(5, 0, next, tn, markPayload(Buffer.from('bad\x1bname'))))), ['DR_BAD_RECORD'], 6);
  add('MARK name length 0', withEnd(ok(rawRecord(5, 0, next, tn, markPayload(Buffer.alloc(0))))), ['DR_BAD_RECORD'], 6);
  add('MARK name length field past the payload', withEnd(ok(rawRecord(5, 0, next, tn, (() => { const p = markPayload('abc'); p.writeUInt16LE(200, 2); return p; })()))), ['DR_BAD_RECORD'], 6);
  for (const [label, name] of [['../x', '../x'], ['../../etc/passwd', '../../etc/passwd'], ['/tmp/abs', '/tmp/abs'], ['a NUL', Buffer.from('ab\0cd')], ['-leading-dash', '-rf'], ['.', '.'], ['..', '..'], ['a/b', 'a/b']] as Array<[string, string | Buffer]>) {
    add(`VOLUME name ${label}`, withEnd(Buffer.concat([H(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ name }))])), ['DR_BAD_RECORD']);
  }
  add('VOLUME name of 65 bytes', withEnd(Buffer.concat([H(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ name: 'n'.repeat(65) }))])), ['DR_BAD_RECORD', 'DR_LENGTH_LIMIT']);
  add('VOLUME block size 3000', withEnd(Buffer.concat([H(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ blockSize: 3000 }))])), ['DR_BAD_RECORD']);
  add('VOLUME block size 2^31', withEnd(Buffer.concat([H(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ blockSize: 2 ** 31 }))])), ['DR_BAD_RECORD', 'DR_LENGTH_LIMIT']);
  add('VOLUME size 2^60', withEnd(Buffer.concat([H(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ size: 2n ** 60n }))])), ['DR_LENGTH_LIMIT', 'DR_BAD_RECORD']);
  add('VOLUME index 1 first', withEnd(Buffer.concat([H(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ index: 1 }))])), ['DR_BAD_RECORD']);
  add('two VOLUMEs of the same name', withEnd(Buffer.concat([H(), V(), rawRecord(1, 0, 0, T0 - 10, volumePayload({ index: 1, id: Buffer.alloc(16, 9) }))])), ['DR_BAD_RECORD']);
  add('a VOLUME after a sequenced record', withEnd(ok(rawRecord(1, 0, 0, tn, volumePayload({ index: 1, name: 'late' })))), ['DR_BAD_RECORD'], 6);
  {
    const vols: Buffer[] = [];
    for (let i = 0; i < 4097; i++) vols.push(rawRecord(1, 0, 0, T0 - 10, volumePayload({ index: i, name: `v${i}`, size: 4096, id: Buffer.alloc(16, i & 0xff) })));
    add('4097 VOLUME records (huge count)', withEnd(Buffer.concat([H(), ...vols])), ['DR_LENGTH_LIMIT', 'DR_BAD_RECORD']);
  }
  {
    const many: Buffer[] = [];
    for (let i = 0; i < 20000; i++) many.push(rawRecord(7, 0, next + i, tn + i, Buffer.alloc(0)));
    const b = ok(...many);
    add('20000 HEARTBEATs then an END counting 2^40 records', Buffer.concat([b, rawRecord(8, 0, 0, tn + 30000, (() => { const p = endRecord(b).subarray(32); p.writeBigUInt64LE(2n ** 40n, 0); return p; })())]), ['DR_TRAILER_MISMATCH', 'DR_LENGTH_LIMIT'], 20006);
  }
  add('END with a wrong record count', Buffer.concat([ok(), endRecord(ok(), { countDelta: 3 })]), ['DR_TRAILER_MISMATCH'], 6);
  add('END with a wrong digest', Buffer.concat([ok(), endRecord(ok(), { badDigest: true })]), ['DR_TRAILER_MISMATCH'], 6);
  add('END with seq 7', Buffer.concat([ok(), (() => { const e = endRecord(ok()); return rawRecord(8, 0, 7, T0 + 100_000_000_000, e.subarray(32)); })()]), ['DR_SEQ_ORDER'], 6);
  add('a record dropped (renumbered so seqs are in order), END of the whole', (() => {
    const full = Buffer.concat([H(), V(), ...good]);
    const dropped = Buffer.concat([H(), V(), ...goodRecords(first, 3)]);
    return Buffer.concat([dropped, endRecord(full)]);
  })(), ['DR_TRAILER_MISMATCH'], 5);
  add('bytes after END', Buffer.concat([withEnd(ok()), Buffer.from('x')]), ['DR_TRAILING_DATA'], 6);
  add('a second stream after END', Buffer.concat([withEnd(ok()), withEnd(ok())]), ['DR_TRAILING_DATA'], 6);
  {
    const garbage = Buffer.alloc(256 * 1024);
    for (let i = 0; i < garbage.length; i += 4) garbage.writeUInt32LE(Math.floor(r() * 2 ** 32), i);
    add('256 KiB of random bytes after a valid prefix', ok(garbage), ['DR_BAD_CHECKSUM', 'DR_UNKNOWN_RECORD', 'DR_LENGTH_LIMIT', 'DR_BAD_RECORD', 'DR_TRUNCATED'], 6);
    add('zeroes after a valid prefix', ok(Buffer.alloc(64 * 1024)), ['DR_BAD_CHECKSUM', 'DR_UNKNOWN_RECORD', 'DR_BAD_RECORD', 'DR_SEQ_ORDER'], 6);
    add('a stream header where a record should be', ok(H(), V()), ['DR_BAD_CHECKSUM', 'DR_UNKNOWN_RECORD', 'DR_BAD_RECORD', 'DR_LENGTH_LIMIT'], 6);
  }
  return list;
}
