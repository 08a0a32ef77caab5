/**
 * The journal stream format v1: every byte layout in one place.
 *
 * docs/FORMAT.md and man/dr-journal.5 are the specification; this module is its
 * only implementation. All integers are little-endian and unsigned. Offsets in the
 * comments are relative to the start of the structure they describe.
 *
 *   stream  = header *volume *record [end]
 *   header  = 64 bytes
 *   record  = record-header (32 bytes) payload (payload-length bytes)
 */
import crypto from 'node:crypto';
import { crc32 } from 'node:zlib';
import { crc32Short } from './crc32-short.js';
import { crc32Payload } from './crc32-payload.js';
import { DrError } from '../errors.js';

export const MAGIC = Buffer.from([0x89, 0x44, 0x52, 0x4a, 0x0d, 0x0a, 0x1a, 0x0a]); // "\x89DRJ\r\n\x1a\n"
export const FORMAT_VERSION = 1;
export const HEADER_SIZE = 64;
export const RECORD_HEADER_SIZE = 32;

/** Record type codes. Bit 15 set = ignorable: an old reader may skip the record. */
export const RecordType = {
  VOLUME: 0x0001,
  WRITE: 0x0002,
  ZERO: 0x0003,
  FLUSH: 0x0004,
  MARK: 0x0005,
  SIGNATURE: 0x0006,
  HEARTBEAT: 0x0007,
  END: 0x0008,
} as const;
export const IGNORABLE_BIT = 0x8000;

/** Flag bits defined per record type; any other bit set is refused. */
export const WRITE_FLAG_FUA = 0x0001;
export const ZERO_FLAG_DISCARD = 0x0001;

/** Limits a reader enforces before allocating anything. */
export const LIMITS = {
  /** largest WRITE data */
  maxWriteData: 32 * 1024 * 1024,
  /** largest payload of any record, known or unknown */
  maxPayload: 32 * 1024 * 1024 + 16,
  /** largest payload of an unknown ignorable record */
  maxIgnorablePayload: 1024 * 1024,
  maxVolumes: 4096,
  maxVolumeName: 64,
  maxMarkName: 255,
  /** every integer that is an offset, size, length, seq or time is below 2^53 */
  maxInteger: Number.MAX_SAFE_INTEGER,
  minBlockSize: 512,
  maxBlockSize: 1024 * 1024,
} as const;

export const MARK_KINDS = ['crash', 'app', 'user'] as const;
export type MarkKind = (typeof MARK_KINDS)[number];
export const HASH_ALGORITHMS = { sha256: 1 } as const;
export type HashAlgorithm = keyof typeof HASH_ALGORITHMS;
const DIGEST_SIZE: Record<number, number> = { 1: 32 };

export interface StreamHeader {
  type: 'header';
  /** 16 bytes identifying the volume group (consistency group) */
  groupId: Buffer;
  /** seq of the first sequenced record (>= 1) */
  firstSeq: number;
  /** microseconds since the Unix epoch */
  created: number;
  compatFeatures: number;
}

export interface VolumeRecord {
  type: 'volume';
  seq: 0;
  time: number;
  index: number;
  blockSize: number;
  size: number;
  /** 16 bytes identifying the volume */
  id: Buffer;
  name: string;
}
export interface WriteRecord { type: 'write'; seq: number; time: number; volume: number; offset: number; data: Buffer; fua?: boolean }
export interface ZeroRecord { type: 'zero'; seq: number; time: number; volume: number; offset: number; length: number; discard?: boolean }
export interface FlushRecord { type: 'flush'; seq: number; time: number }
export interface MarkRecord { type: 'mark'; seq: number; time: number; kind: MarkKind; id: Buffer; name: string }
export interface SignatureRecord {
  type: 'signature'; seq: number; time: number; volume: number; offset: number; length: number;
  algorithm: HashAlgorithm; digest: Buffer;
}
export interface HeartbeatRecord { type: 'heartbeat'; seq: number; time: number }
/** An ignorable record of a type this reader does not know. */
export interface UnknownRecord { type: 'unknown'; seq: number; time: number; code: number; flags: number; payload: Buffer }
export interface EndRecord { type: 'end'; seq: 0; time: number; recordCount: number; byteCount: number; digest: Buffer }

/** Records that take a sequence number. */
export type SequencedRecord =
  | WriteRecord | ZeroRecord | FlushRecord | MarkRecord | SignatureRecord | HeartbeatRecord | UnknownRecord;
export type StreamRecord = VolumeRecord | SequencedRecord | EndRecord;

/**
 * What a journal store keeps of every record, as plain numbers: its type code, seq and
 * time, and for WRITE, ZERO and SIGNATURE records the volume range they name (`length`:
 * a WRITE's data bytes); 0 for the other types.
 */
export interface RecordFields {
  code: number;
  seq: number;
  time: number;
  volume: number;
  offset: number;
  length: number;
}

/**
 * A decoded record header. decodeRecordHeader() fills the header's fields and sets the
 * range fields to 0; decodePayload() and readPayloadFields() fill those from the payload.
 */
export interface RecordHeader extends RecordFields {
  flags: number;
  payloadLength: number;
  headerCrc: number;
  recordCrc: number;
}

// ---------------------------------------------------------------- helpers

// The fields every record has are read with these rather than Buffer's readUInt16LE and
// readUInt32LE, which check their argument and the bounds and are too big for the
// optimiser to inline into a decoder's loop (a call each, 8 per record: a quarter of
// what decoding a record cost). Callers check that the bytes are there.
function u16(b: Uint8Array, off: number): number {
  return b[off]! | (b[off + 1]! << 8);
}
export function u32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16)) + b[off + 3]! * 0x100_0000;
}

// u64 fields as two 32-bit halves: a number below 2^53 has a high half below 2^21. (Going
// through BigInt costs a heap object per field, several per record.)
const TWO_32 = 0x1_0000_0000;
function u64(buf: Buffer, off: number, what: string): number {
  const hi = u32(buf, off + 4);
  if (hi > 0x1f_ffff) throw new DrError('DR_LENGTH_LIMIT', `${what} ${buf.readBigUInt64LE(off)} is over the limit of 2^53-1`);
  return hi * TWO_32 + u32(buf, off);
}
function putU64(buf: Buffer, off: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    buf.writeBigUInt64LE(BigInt(v), off); // throws as before for what does not fit
    return;
  }
  buf.writeUInt32LE(v % TWO_32, off);
  buf.writeUInt32LE(Math.floor(v / TWO_32), off + 4);
}
function checkInt(v: number, what: string, min = 0, max: number = LIMITS.maxInteger): void {
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new DrError('DR_BAD_RECORD', `${what} ${v} is not an integer in ${min}..${max}`);
}

const VOLUME_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
/** Volume names become file and tar entry names: a strict alphabet, no path tricks. */
export function checkVolumeName(name: string): void {
  if (!VOLUME_NAME.test(name) || Buffer.byteLength(name) > LIMITS.maxVolumeName) {
    throw new DrError('DR_BAD_RECORD', `bad volume name ${JSON.stringify(name)}: use 1-64 of A-Z a-z 0-9 . _ - not starting with . or -`);
  }
}
export function checkMarkName(name: string): void {
  const len = Buffer.byteLength(name);
  // eslint-disable-next-line no-control-regex
  if (len < 1 || len > LIMITS.maxMarkName || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new DrError('DR_BAD_RECORD', `bad mark name ${JSON.stringify(name)}: 1-255 bytes of UTF-8 without control characters`);
  }
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------- stream header

/**
 *  off size field
 *    0    8 magic 89 44 52 4a 0d 0a 1a 0a
 *    8    2 version (1)
 *   10    2 header size (64)
 *   12    4 incompatible feature bits (none defined in v1; any set bit is refused)
 *   16    4 compatible feature bits (none defined in v1; unknown bits are ignored)
 *   20   16 group id
 *   36    8 first seq
 *   44    8 created, microseconds since 1970-01-01T00:00:00Z
 *   52    8 reserved, zero
 *   60    4 CRC-32 of bytes 0..59
 */
export function encodeHeader(h: Omit<StreamHeader, 'type'>): Buffer {
  if (h.groupId.length !== 16) throw new DrError('DR_BAD_RECORD', 'group id must be 16 bytes');
  checkInt(h.firstSeq, 'first seq', 1);
  checkInt(h.created, 'creation time');
  const b = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(FORMAT_VERSION, 8);
  b.writeUInt16LE(HEADER_SIZE, 10);
  b.writeUInt32LE(0, 12);
  b.writeUInt32LE(h.compatFeatures >>> 0, 16);
  h.groupId.copy(b, 20);
  putU64(b, 36, h.firstSeq);
  putU64(b, 44, h.created);
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
  return b;
}

/** Decode the 64-byte stream header. Throws DrError with the failing check. */
export function decodeHeader(b: Buffer): StreamHeader {
  if (!b.subarray(0, 8).equals(MAGIC)) throw new DrError('DR_BAD_MAGIC', 'not a drkit journal stream (bad magic)', { offset: 0 });
  const version = b.readUInt16LE(8);
  if (version !== FORMAT_VERSION) throw new DrError('DR_UNSUPPORTED_VERSION', `stream format version ${version} is not supported (this reader knows 1)`, { offset: 8 });
  if (b.readUInt32LE(60) !== crc32(b.subarray(0, 60))) throw new DrError('DR_BAD_CHECKSUM', 'stream header checksum mismatch', { offset: 60 });
  const size = b.readUInt16LE(10);
  if (size !== HEADER_SIZE) throw new DrError('DR_UNSUPPORTED_VERSION', `stream header size ${size} is not 64`, { offset: 10 });
  const incompat = b.readUInt32LE(12);
  if (incompat !== 0) throw new DrError('DR_UNSUPPORTED_FEATURE', `stream requires unknown features 0x${incompat.toString(16)}`, { offset: 12 });
  if (b.readBigUInt64LE(52) !== 0n) throw new DrError('DR_BAD_RECORD', 'reserved header bytes are not zero', { offset: 52 });
  const firstSeq = u64(b, 36, 'first seq');
  if (firstSeq < 1) throw new DrError('DR_BAD_RECORD', 'first seq is 0', { offset: 36 });
  return {
    type: 'header',
    groupId: Buffer.from(b.subarray(20, 36)),
    firstSeq,
    created: u64(b, 44, 'creation time'),
    compatFeatures: b.readUInt32LE(16),
  };
}

// ---------------------------------------------------------------- record header

/**
 *  off size field
 *    0    2 type (bit 15 = ignorable)
 *    2    2 flags (per type; undefined bits must be zero)
 *    4    4 payload length
 *    8    8 seq (0 for VOLUME and END)
 *   16    8 time, microseconds since the epoch
 *   24    4 header CRC: CRC-32 of bytes 0..23
 *   28    4 record CRC: CRC-32 of bytes 0..27 followed by the payload
 */
/** The record header at byte `at` of `b` (a decoder holding the whole record passes it rather than a view of its header). */
export function decodeRecordHeader(b: Buffer, crcChecked = false, into?: RecordHeader, at = 0): RecordHeader {
  if (b.length - at < RECORD_HEADER_SIZE) throw new RangeError(`a record header needs ${RECORD_HEADER_SIZE} bytes`);
  const headerCrc = u32(b, at + 24);
  if (!crcChecked && headerCrc !== crc32Short(b, at, at + 24)) throw new DrError('DR_BAD_CHECKSUM', 'record header checksum mismatch');
  const code = u16(b, at);
  const payloadLength = u32(b, at + 4);
  const limit = code & IGNORABLE_BIT && !knownType(code) ? LIMITS.maxIgnorablePayload : LIMITS.maxPayload;
  if (payloadLength > limit) throw new DrError('DR_LENGTH_LIMIT', `record payload length ${payloadLength} is over the limit of ${limit}`);
  const flags = u16(b, at + 2);
  const seq = u64(b, at + 8, 'seq');
  const time = u64(b, at + 16, 'time');
  const recordCrc = u32(b, at + 28);
  if (into === undefined) return { code, flags, payloadLength, seq, time, headerCrc, recordCrc, volume: 0, offset: 0, length: 0 };
  // a decoder going through records one at a time fills one object again and again
  into.code = code;
  into.flags = flags;
  into.payloadLength = payloadLength;
  into.seq = seq;
  into.time = time;
  into.headerCrc = headerCrc;
  into.recordCrc = recordCrc;
  into.volume = 0;
  into.offset = 0;
  into.length = 0;
  return into;
}

export function knownType(code: number): boolean {
  return code >= RecordType.VOLUME && code <= RecordType.END;
}

function recordHeader(code: number, flags: number, payloadLength: number, seq: number, time: number, payload: Buffer[]): Buffer {
  checkInt(seq, 'seq');
  checkInt(time, 'time');
  const h = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
  h.writeUInt16LE(code, 0);
  h.writeUInt16LE(flags, 2);
  h.writeUInt32LE(payloadLength, 4);
  putU64(h, 8, seq);
  putU64(h, 16, time);
  const headerCrc = crc32Short(h, 0, 24);
  h.writeUInt32LE(headerCrc, 24);
  let c = crc32Short(h, 24, 28, headerCrc); // the record CRC covers bytes 0..27: continue from 0..23's
  for (const p of payload) c = crc32Payload(p, c);
  h.writeUInt32LE(c, 28);
  return h;
}

// ---------------------------------------------------------------- payloads

/**
 * Encode one record as buffers to be written in order: the record header, then
 * the payload pieces (WRITE data is passed through without a copy).
 */
export function encodeRecord(r: StreamRecord): Buffer[] {
  const body = encodePayload(r);
  const length = body.reduce((n, p) => n + p.length, 0);
  if (length > LIMITS.maxPayload) throw new DrError('DR_LENGTH_LIMIT', `record payload length ${length} is over the limit`);
  const flags = r.type === 'write' ? (r.fua ? WRITE_FLAG_FUA : 0) : r.type === 'zero' ? (r.discard ? ZERO_FLAG_DISCARD : 0) : r.type === 'unknown' ? r.flags : 0;
  return [recordHeader(recordCode(r), flags, length, r.seq, r.time, body), ...body];
}

/** The type code of a record. */
export function recordCode(r: StreamRecord): number {
  switch (r.type) {
    case 'volume': return RecordType.VOLUME;
    case 'write': return RecordType.WRITE;
    case 'zero': return RecordType.ZERO;
    case 'flush': return RecordType.FLUSH;
    case 'mark': return RecordType.MARK;
    case 'signature': return RecordType.SIGNATURE;
    case 'heartbeat': return RecordType.HEARTBEAT;
    case 'end': return RecordType.END;
    case 'unknown': return r.code;
  }
}

/** The RecordFields of a record, into `into` (one object filled again for record after record). */
export function recordFields(r: SequencedRecord, into: RecordFields): RecordFields {
  into.code = recordCode(r);
  into.seq = r.seq;
  into.time = r.time;
  const ranged = r.type === 'write' || r.type === 'zero' || r.type === 'signature';
  into.volume = ranged ? r.volume : 0;
  into.offset = ranged ? r.offset : 0;
  into.length = r.type === 'write' ? r.data.length : r.type === 'zero' || r.type === 'signature' ? r.length : 0;
  return into;
}

function encodePayload(r: StreamRecord): Buffer[] {
  switch (r.type) {
    case 'volume': {
      // 0 u32 index | 4 u32 block size | 8 u64 size | 16 16B id | 32 u16 name length | 34 name
      checkVolumeName(r.name);
      checkInt(r.index, 'volume index', 0, LIMITS.maxVolumes - 1);
      if (!isPowerOfTwo(r.blockSize) || r.blockSize < LIMITS.minBlockSize || r.blockSize > LIMITS.maxBlockSize) {
        throw new DrError('DR_BAD_RECORD', `block size ${r.blockSize} is not a power of two in 512..1M`);
      }
      checkInt(r.size, 'volume size');
      if (r.id.length !== 16) throw new DrError('DR_BAD_RECORD', 'volume id must be 16 bytes');
      const name = Buffer.from(r.name, 'utf8');
      const p = Buffer.alloc(34 + name.length);
      p.writeUInt32LE(r.index, 0);
      p.writeUInt32LE(r.blockSize, 4);
      putU64(p, 8, r.size);
      r.id.copy(p, 16);
      p.writeUInt16LE(name.length, 32);
      name.copy(p, 34);
      return [p];
    }
    case 'write': {
      // 0 u32 volume | 4 u32 reserved | 8 u64 offset | 16 data
      if (r.data.length < 1 || r.data.length > LIMITS.maxWriteData) throw new DrError('DR_LENGTH_LIMIT', `write of ${r.data.length} bytes: must be 1..${LIMITS.maxWriteData}`);
      checkInt(r.offset + r.data.length, 'write end');
      const p = Buffer.alloc(16);
      p.writeUInt32LE(r.volume, 0);
      putU64(p, 8, r.offset);
      return [p, r.data];
    }
    case 'zero': {
      // 0 u32 volume | 4 u32 reserved | 8 u64 offset | 16 u64 length
      checkInt(r.length, 'zero length', 1);
      checkInt(r.offset + r.length, 'zero end');
      const p = Buffer.alloc(24);
      p.writeUInt32LE(r.volume, 0);
      putU64(p, 8, r.offset);
      putU64(p, 16, r.length);
      return [p];
    }
    case 'mark': {
      // 0 u8 kind | 1 u8 reserved | 2 u16 name length | 4 16B id | 20 name
      checkMarkName(r.name);
      if (r.id.length !== 16) throw new DrError('DR_BAD_RECORD', 'mark id must be 16 bytes');
      const name = Buffer.from(r.name, 'utf8');
      const p = Buffer.alloc(20 + name.length);
      p.writeUInt8(MARK_KINDS.indexOf(r.kind) + 1, 0);
      p.writeUInt16LE(name.length, 2);
      r.id.copy(p, 4);
      name.copy(p, 20);
      return [p];
    }
    case 'signature': {
      // 0 u32 volume | 4 u8 algorithm | 5 u8 digest length | 6 u16 reserved | 8 u64 offset | 16 u64 length | 24 digest
      const alg = HASH_ALGORITHMS[r.algorithm];
      if (r.digest.length !== DIGEST_SIZE[alg]) throw new DrError('DR_BAD_RECORD', `${r.algorithm} digest must be ${DIGEST_SIZE[alg]} bytes`);
      checkInt(r.length, 'signature length', 1);
      checkInt(r.offset + r.length, 'signature end');
      const p = Buffer.alloc(24 + r.digest.length);
      p.writeUInt32LE(r.volume, 0);
      p.writeUInt8(alg, 4);
      p.writeUInt8(r.digest.length, 5);
      putU64(p, 8, r.offset);
      putU64(p, 16, r.length);
      r.digest.copy(p, 24);
      return [p];
    }
    case 'end': {
      // 0 u64 record count | 8 u64 byte count | 16 32B SHA-256 running digest
      const p = Buffer.alloc(48);
      putU64(p, 0, r.recordCount);
      putU64(p, 8, r.byteCount);
      r.digest.copy(p, 16);
      return [p];
    }
    case 'flush':
    case 'heartbeat':
      return [];
    case 'unknown':
      return [r.payload];
  }
}

// Checks of decodePayload, as functions of their own rather than closures made per record.
function payloadSize(length: number, min: number, max = min): void {
  if (length < min || length > max) throw new DrError('DR_BAD_RECORD', `payload of ${length} bytes is the wrong size for this record type`);
}
function volumeAt(volumes: ReadonlyArray<VolumeRecord>, v: number, offset: number, length: number, what: string): void {
  const vol = volumes[v];
  if (!vol) throw new DrError('DR_BAD_RECORD', `${what} names volume ${v}, which was never declared`);
  if (offset + length > vol.size) {
    throw new DrError('DR_OUT_OF_RANGE', `${what} ${offset}+${length} is past the end of volume ${vol.name} (${vol.size} bytes)`);
  }
}
function reservedZero(p: Buffer, off: number, n: number): void {
  for (let i = off; i < off + n; i++) if (p[i] !== 0) throw new DrError('DR_BAD_RECORD', 'reserved payload bytes are not zero');
}

/**
 * Check the payload of a record whose payload is numbers only, the records every stream
 * is made of (WRITE, ZERO, FLUSH, HEARTBEAT), and read its volume range into `h`, with
 * no object made: true. Any other type: false, and nothing is checked (decodePayload()
 * decodes those). Arguments as for decodePayload().
 */
export function readPayloadFields(h: RecordHeader, p: Buffer, volumes: ReadonlyArray<VolumeRecord>, at = 0): boolean {
  const code = h.code;
  const len = h.payloadLength;
  if (code === RecordType.WRITE) {
    if (h.flags & ~WRITE_FLAG_FUA) unknownFlags(h.flags);
    payloadSize(len, 17, 16 + LIMITS.maxWriteData);
    reservedZero(p, at + 4, 4);
    h.volume = u32(p, at);
    h.offset = u64(p, at + 8, 'write offset');
    h.length = len - 16;
    volumeAt(volumes, h.volume, h.offset, h.length, 'write');
    return true;
  }
  if (code === RecordType.ZERO) {
    if (h.flags & ~ZERO_FLAG_DISCARD) unknownFlags(h.flags);
    payloadSize(len, 24);
    reservedZero(p, at + 4, 4);
    h.volume = u32(p, at);
    h.offset = u64(p, at + 8, 'zero offset');
    h.length = u64(p, at + 16, 'zero length');
    if (h.length < 1) throw new DrError('DR_BAD_RECORD', 'zero record of length 0');
    volumeAt(volumes, h.volume, h.offset, h.length, 'zero range');
    return true;
  }
  if (code === RecordType.FLUSH || code === RecordType.HEARTBEAT) {
    if (h.flags !== 0) unknownFlags(h.flags);
    payloadSize(len, 0);
    return true;
  }
  return false;
}

function unknownFlags(flags: number): never {
  throw new DrError('DR_UNSUPPORTED_FEATURE', `record flags 0x${flags.toString(16)} not understood`);
}

/**
 * Decode a payload whose record CRC has already been checked. `volumes` are the
 * volumes declared so far in this stream, for index and range checks. The payload is
 * `p` from byte `at` on (h.payloadLength bytes): a caller holding the whole record
 * passes it with `at` = 32 rather than cutting out a view of the payload first. Fills
 * the range fields of `h` (RecordFields) as readPayloadFields() does, for SIGNATURE too.
 */
export function decodePayload(h: RecordHeader, p: Buffer, volumes: ReadonlyArray<VolumeRecord>, at = 0): StreamRecord {
  const { seq, time, flags } = h;
  const len = h.payloadLength;
  const end = at + len;
  const type = h.code & ~IGNORABLE_BIT;
  if (readPayloadFields(h, p, volumes, at)) {
    switch (type) {
      case RecordType.WRITE: return { type: 'write', seq, time, volume: h.volume, offset: h.offset, data: p.subarray(at + 16, end), fua: (flags & WRITE_FLAG_FUA) !== 0 };
      case RecordType.ZERO: return { type: 'zero', seq, time, volume: h.volume, offset: h.offset, length: h.length, discard: (flags & ZERO_FLAG_DISCARD) !== 0 };
      case RecordType.FLUSH: return { type: 'flush', seq, time };
      default: return { type: 'heartbeat', seq, time };
    }
  }
  if (!knownType(h.code)) {
    if (h.code & IGNORABLE_BIT) return { type: 'unknown', seq, time, code: h.code, flags, payload: p.subarray(at, end) };
    throw new DrError('DR_UNKNOWN_RECORD', `unknown record type 0x${h.code.toString(16).padStart(4, '0')}`);
  }
  if (flags !== 0) unknownFlags(flags);
  switch (type) {
    case RecordType.VOLUME: {
      payloadSize(len, 35, 34 + LIMITS.maxVolumeName);
      const nameLen = p.readUInt16LE(at + 32);
      if (34 + nameLen !== len) throw new DrError('DR_BAD_RECORD', 'volume name length does not match the payload');
      const name = p.toString('utf8', at + 34, end);
      checkVolumeName(name);
      const index = p.readUInt32LE(at);
      if (index !== volumes.length) throw new DrError('DR_BAD_RECORD', `volume index ${index} declared where ${volumes.length} was expected`);
      if (index >= LIMITS.maxVolumes) throw new DrError('DR_LENGTH_LIMIT', `more than ${LIMITS.maxVolumes} volumes`);
      const blockSize = p.readUInt32LE(at + 4);
      if (!isPowerOfTwo(blockSize) || blockSize < LIMITS.minBlockSize || blockSize > LIMITS.maxBlockSize) {
        throw new DrError('DR_BAD_RECORD', `block size ${blockSize} is not a power of two in 512..1M`);
      }
      if (volumes.some((v) => v.name === name)) throw new DrError('DR_BAD_RECORD', `volume name ${name} declared twice`);
      return { type: 'volume', seq: 0, time, index, blockSize, size: u64(p, at + 8, 'volume size'), id: Buffer.from(p.subarray(at + 16, at + 32)), name };
    }
    case RecordType.MARK: {
      payloadSize(len, 21, 20 + LIMITS.maxMarkName);
      const kind = MARK_KINDS[p.readUInt8(at) - 1];
      if (!kind) throw new DrError('DR_BAD_RECORD', `unknown mark kind ${p.readUInt8(at)}`);
      reservedZero(p, at + 1, 1);
      if (20 + p.readUInt16LE(at + 2) !== len) throw new DrError('DR_BAD_RECORD', 'mark name length does not match the payload');
      const name = p.toString('utf8', at + 20, end);
      checkMarkName(name);
      return { type: 'mark', seq, time, kind, id: Buffer.from(p.subarray(at + 4, at + 20)), name };
    }
    case RecordType.SIGNATURE: {
      payloadSize(len, 25, 24 + 64);
      const alg = p.readUInt8(at + 4);
      const digestLen = DIGEST_SIZE[alg];
      if (digestLen === undefined) throw new DrError('DR_UNSUPPORTED_FEATURE', `unknown signature hash algorithm ${alg}`);
      if (p.readUInt8(at + 5) !== digestLen || len !== 24 + digestLen) throw new DrError('DR_BAD_RECORD', 'signature digest length is wrong');
      reservedZero(p, at + 6, 2);
      const volume = p.readUInt32LE(at);
      const offset = u64(p, at + 8, 'signature offset');
      const length = u64(p, at + 16, 'signature length');
      if (length < 1) throw new DrError('DR_BAD_RECORD', 'signature of length 0');
      volumeAt(volumes, volume, offset, length, 'signature range');
      h.volume = volume;
      h.offset = offset;
      h.length = length;
      return { type: 'signature', seq, time, volume, offset, length, algorithm: 'sha256', digest: Buffer.from(p.subarray(at + 24, end)) };
    }
    default: {
      // END
      payloadSize(len, 48);
      return { type: 'end', seq: 0, time, recordCount: u64(p, at, 'record count'), byteCount: u64(p, at + 8, 'byte count'), digest: Buffer.from(p.subarray(at + 16, at + 48)) };
    }
  }
}

/** where a WRITE record's data starts: after the record header and the payload's volume, reserved and offset fields */
export const WRITE_DATA_AT = RECORD_HEADER_SIZE + 16;

/**
 * Check a WRITE record read back by position (a journal segment's record whose data is
 * wanted without decoding the stream it is in): `head` holds its first WRITE_DATA_AT
 * bytes, `data` its data. Null if it is a WRITE of `length` data bytes to `volume` at
 * `offset` whose checksums match; otherwise what is wrong, for an error message.
 */
export function writeRecordProblem(head: Buffer, data: Buffer, volume: number, offset: number, length: number): string | null {
  const v = head.readUInt32LE(RECORD_HEADER_SIZE);
  const o = head.readUInt32LE(RECORD_HEADER_SIZE + 8) + head.readUInt32LE(RECORD_HEADER_SIZE + 12) * 2 ** 32;
  // the expected case first, with no object made (a restore checks one record per 4 KiB block after random writes)
  if (
    data.length === length && head.readUInt16LE(0) === RecordType.WRITE && head.readUInt32LE(4) === length + 16 && v === volume && o === offset
    && crc32Payload(data, crc32Short(head, RECORD_HEADER_SIZE, WRITE_DATA_AT, crc32Short(head, 0, 28))) === head.readUInt32LE(28)
  ) return null;
  let h: RecordHeader;
  try {
    h = decodeRecordHeader(head);
  } catch (err) {
    return (err as Error).message;
  }
  if (h.code !== RecordType.WRITE || h.payloadLength !== length + 16 || data.length !== length) {
    return `expected a WRITE of ${length} bytes, found record type 0x${h.code.toString(16)} with a payload of ${h.payloadLength} bytes`;
  }
  if (v !== volume || o !== offset) return `expected a WRITE to volume ${volume} at ${offset}, found one to volume ${v} at ${o} (seq ${h.seq})`;
  return `record checksum mismatch (seq ${h.seq})`;
}

/** Verify the record CRC of a header and its payload pieces. */
export function recordCrcMatches(headerBytes: Buffer, h: RecordHeader, payload: Buffer[]): boolean {
  let c = crc32Short(headerBytes, 0, 28);
  for (const p of payload) c = crc32Payload(p, c);
  return c === h.recordCrc;
}

// ---------------------------------------------------------------- ids

/** A new random 16-byte id (UUID v4 layout). */
export function newId(): Buffer {
  return Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex');
}
/** 16 bytes -> 8-4-4-4-12 hex text. */
export function idToString(id: Buffer): string {
  const h = id.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
export function idFromString(s: string): Buffer {
  const h = s.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(h)) throw new DrError('DR_USAGE', `bad id ${JSON.stringify(s)}: expected 32 hex digits`);
  return Buffer.from(h, 'hex');
}
