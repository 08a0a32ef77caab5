/**
 * Segment files and their index files.
 *
 * A segment is a complete journal stream on its own (header, VOLUME records, the
 * records of a seq range, END once sealed); the open (last) segment has no END yet.
 * Its index file (written once, when the segment is sealed) holds a JSON summary
 * (seq/time range, counts, marks, flush points, sparse seq/time -> offset points)
 * and the extent table: one entry per WRITE/ZERO record, for the point-in-time reader.
 * docs/STORE.md describes both layouts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { DrError } from '../errors.js';
import {
  HEADER_SIZE, RECORD_HEADER_SIZE, WRITE_DATA_AT, decodeHeader, decodePayload, decodeRecordHeader, encodeHeader, encodeRecord,
  recordCrcMatches, idToString, type RecordHeader, type StreamHeader, type VolumeRecord,
  type MarkKind, type EndRecord, type MarkRecord, type RecordFields, RecordType,
} from '../format/layout.js';
import { nowMicros } from '../format/codec.js';
import { HeaderDigest } from '../format/header-digest.js';
import { ioError, preadSync, writeFileDurable } from './files.js';
import type { ReadBuffers } from './read-buffers.js';

export const SEGMENTS = 'segments';
/** a sparse index point at least every this many bytes of a segment */
export const SPARSE_EVERY = 256 * 1024;
/** float64 fields per extent: seq, volume, offset, length, data position (-1 = zeroes) */
export const EXTENT_FIELDS = 5;
const IDX_MAGIC = Buffer.from('DRJIDX01', 'latin1');

export function segmentFile(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.drj`;
}
export function indexFile(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.idx`;
}
export function parseSegmentFile(name: string): number | null {
  const m = /^(\d{20})\.drj$/.exec(name);
  return m ? Number(m[1]) : null;
}

export interface MarkInfo { seq: number; time: number; name: string; kind: MarkKind; id: string }

export interface SegmentSummary {
  firstSeq: number;
  /** firstSeq - 1 when the segment holds no record yet */
  lastSeq: number;
  firstTime: number;
  lastTime: number;
  records: number;
  writeBytes: number;
  zeroBytes: number;
  /** offset of the first sequenced record (after header and VOLUME records) */
  headerEnd: number;
  /** offset just past the last record (where END starts when sealed) */
  dataEnd: number;
  /** file size: dataEnd plus the END record when sealed */
  size: number;
  sealed: boolean;
  volumeCount: number;
  marks: MarkInfo[];
  /** [seq, time] of every FLUSH */
  flushes: Array<[number, number]>;
  /** [seq, time, offset]: the first record and then one at least every SPARSE_EVERY bytes */
  sparse: Array<[number, number, number]>;
  extentCount: number;
  /** index file only: a second extent table sorted by (volume, offset) follows the first */
  sortedExtents?: boolean;
  /** index file only: the longest extent, to bound searches in the sorted table */
  maxExtentLength?: number;
}

/** Growable array of float64 rows (at most 5 fields: pushed without an argument array). */
export class RowList {
  data: Float64Array;
  length = 0;
  constructor(readonly width: number, initial = 1024) {
    this.data = new Float64Array(initial * width);
  }
  push(a: number, b = 0, c = 0, d = 0, e = 0): void {
    const at = this.length * this.width;
    if (at + this.width > this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    const data = this.data;
    data[at] = a;
    if (this.width > 1) {
      data[at + 1] = b;
      if (this.width > 2) {
        data[at + 2] = c;
        if (this.width > 3) {
          data[at + 3] = d;
          if (this.width > 4) data[at + 4] = e;
        }
      }
    }
    this.length++;
  }
  view(): Float64Array {
    return this.data.subarray(0, this.length * this.width);
  }
}

/** Accumulates what a segment holds as records are written to it or read from it. */
export class SegmentBuilder {
  readonly summary: SegmentSummary;
  readonly extents = new RowList(EXTENT_FIELDS);
  /** offset of every record, by seq - firstSeq (kept for the open segment) */
  readonly offsets = new RowList(1, 4096);
  readonly volumes: VolumeRecord[] = [];
  /** running digest and counts for the END trailer */
  private digest = new HeaderDigest();
  streamRecordCount = 0;
  private lastSparse = -Infinity;

  constructor(readonly header: StreamHeader, headerBytes: Buffer) {
    this.digest.raw(headerBytes);
    this.summary = {
      firstSeq: header.firstSeq, lastSeq: header.firstSeq - 1, firstTime: 0, lastTime: 0, records: 0, writeBytes: 0,
      zeroBytes: 0, headerEnd: HEADER_SIZE, dataEnd: HEADER_SIZE, size: HEADER_SIZE, sealed: false, volumeCount: 0,
      marks: [], flushes: [], sparse: [], extentCount: 0,
    };
  }

  addVolume(v: VolumeRecord, hb: Buffer, length: number): void {
    this.volumes.push(v);
    this.digest.update(hb);
    this.streamRecordCount++;
    this.summary.volumeCount++;
    this.summary.headerEnd = this.summary.dataEnd = this.summary.size = this.summary.dataEnd + length;
  }

  /**
   * The record `f` of `length` bytes was written at `offset`; its header is at byte `hbAt`
   * of `hb`. `mark`: the decoded record when it is a MARK (its name and kind go in the index).
   */
  addRecord(f: RecordFields, offset: number, hb: Buffer, hbAt: number, length: number, mark: MarkRecord | null): void {
    const s = this.summary;
    this.digest.update(hb, hbAt);
    this.streamRecordCount++;
    if (s.records === 0) s.firstTime = f.time;
    s.records++;
    s.lastSeq = f.seq;
    s.lastTime = f.time;
    s.dataEnd = s.size = offset + length;
    this.offsets.push(offset);
    if (offset - this.lastSparse >= SPARSE_EVERY) this.addSparse(f, offset);
    switch (f.code) {
      case RecordType.WRITE:
        this.extents.push(f.seq, f.volume, f.offset, f.length, offset + WRITE_DATA_AT);
        s.writeBytes += f.length;
        break;
      case RecordType.ZERO:
        this.extents.push(f.seq, f.volume, f.offset, f.length, -1);
        s.zeroBytes += f.length;
        break;
      case RecordType.FLUSH:
        this.addFlush(f);
        break;
      case RecordType.MARK:
        if (mark === null) throw new Error(`MARK seq ${f.seq} came without its name and kind`);
        this.addMark(mark);
        break;
      default:
        break;
    }
    s.extentCount = this.extents.length;
  }

  // The rarer entries are added by methods of their own, which the optimiser does not
  // inline into addRecord(): the first entry of each segment's new (empty) arrays changes
  // their element kind, which would otherwise throw addRecord's optimised code away once
  // more for later segments (a 1 GiB append optimised it 5 times, now 2).
  private addSparse(f: RecordFields, offset: number): void {
    this.summary.sparse.push([f.seq, f.time, offset]);
    this.lastSparse = offset;
  }

  private addFlush(f: RecordFields): void {
    this.summary.flushes.push([f.seq, f.time]);
  }

  private addMark(rec: MarkRecord): void {
    this.summary.marks.push({ seq: rec.seq, time: rec.time, name: rec.name, kind: rec.kind, id: idToString(rec.id) });
  }

  /** The END trailer for what has been added so far. */
  endRecord(time: number): Buffer[] {
    const end: EndRecord = {
      type: 'end', seq: 0, time: Math.max(time, this.summary.lastTime), recordCount: this.streamRecordCount,
      byteCount: this.summary.dataEnd, digest: this.digest.digest(),
    };
    return encodeRecord(end);
  }

  /** Offset of the record `seq` in this segment (only while offsets are kept). */
  offsetOf(seq: number): number | null {
    const i = seq - this.summary.firstSeq;
    if (i < 0 || i >= this.offsets.length) return null;
    return this.offsets.data[i]!;
  }
}

/** Header and VOLUME records of a new segment, as bytes plus a builder that has accounted them. */
export function segmentPrologue(groupId: Buffer, firstSeq: number, volumes: VolumeRecord[]): { bytes: Buffer[]; builder: SegmentBuilder } {
  const header: StreamHeader = { type: 'header', groupId, firstSeq, created: nowMicros(), compatFeatures: 0 };
  const hb = encodeHeader(header);
  const builder = new SegmentBuilder(header, hb);
  const bytes: Buffer[] = [hb];
  for (const v of volumes) {
    const parts = encodeRecord(v);
    const length = parts.reduce((n, p) => n + p.length, 0);
    builder.addVolume(v, parts[0]!, length);
    bytes.push(...parts);
  }
  return { bytes, builder };
}

/** A record located in a segment file. `payload` is a view into the walker's buffer. */
export interface RawRecord {
  offset: number;
  h: RecordHeader;
  hb: Buffer;
  payload: Buffer;
  /** the buffer hb and payload are views of, and where this record starts in it */
  buf: Buffer;
  at: number;
}

/**
 * Reads the records of a segment file in order, in big chunks, checking every
 * checksum. next() returns null at a clean or torn end of the readable data;
 * it throws DR_STORE_CORRUPT (via `corrupt`) on a bad checksum.
 */
export class RecordWalker {
  private buf: Buffer = Buffer.alloc(0);
  private bufPos = 0;
  pos: number;
  /** bytes the file had the last time the walker looked */
  fileSize = 0;
  /** `buffers`: read into these (reused) instead of a new buffer per read; `chunk` is then their size */
  constructor(readonly fd: number, readonly file: string, start: number, private readonly limit = Infinity, private readonly chunk = 4 << 20, private readonly buffers?: ReadBuffers) {
    this.pos = start;
  }

  private ensure(n: number): boolean {
    const have = this.bufPos + this.buf.length - this.pos;
    if (have >= n) return true;
    const want = Math.min(Math.max(n, this.chunk), this.limit - this.pos);
    if (want < n) return false;
    const b = this.buffers ? this.buffers.take(want) : Buffer.allocUnsafe(want);
    let got = 0;
    try {
      got = preadSync(this.fd, want, this.pos, b).length;
    } catch (err) {
      this.buffers?.unref(b);
      throw ioError(err, `cannot read segment ${this.file}`);
    }
    this.buffers?.unref(this.buf);
    this.buf = b.subarray(0, got);
    this.bufPos = this.pos;
    this.fileSize = Math.max(this.fileSize, this.pos + got);
    return got >= n;
  }

  /** Read the 64-byte stream header at position 0. */
  header(): { header: StreamHeader; hb: Buffer } | null {
    if (!this.ensure(HEADER_SIZE)) return null;
    const hb = Buffer.from(this.buf.subarray(this.pos - this.bufPos, this.pos - this.bufPos + HEADER_SIZE));
    let header: StreamHeader;
    try {
      header = decodeHeader(hb);
    } catch (err) {
      throw corrupt(this.file, 0, (err as Error).message);
    }
    this.pos += HEADER_SIZE;
    return { header, hb };
  }

  /** The next complete record; its checksum is checked unless its seq is <= `trustUpTo` (records known durable). */
  next(trustUpTo = 0): RawRecord | null {
    if (!this.ensure(RECORD_HEADER_SIZE)) return null;
    let at = this.pos - this.bufPos;
    const hb = this.buf.subarray(at, at + RECORD_HEADER_SIZE);
    let h: RecordHeader;
    try {
      h = decodeRecordHeader(hb);
    } catch (err) {
      throw corrupt(this.file, this.pos, (err as Error).message);
    }
    if (!this.ensure(RECORD_HEADER_SIZE + h.payloadLength)) return null;
    at = this.pos - this.bufPos;
    const hb2 = this.buf.subarray(at, at + RECORD_HEADER_SIZE);
    const payload = this.buf.subarray(at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + h.payloadLength);
    if ((h.seq === 0 || h.seq > trustUpTo) && !recordCrcMatches(hb2, h, [payload])) throw corrupt(this.file, this.pos, `record checksum mismatch (seq ${h.seq})`);
    const rec: RawRecord = { offset: this.pos, h, hb: hb2, payload, buf: this.buf, at };
    this.pos += RECORD_HEADER_SIZE + h.payloadLength;
    return rec;
  }

  /** Done with this walker: its read buffer goes back to `buffers` (once nothing else uses it). */
  dispose(): void {
    this.buffers?.unref(this.buf);
    this.buf = Buffer.alloc(0);
    this.bufPos = this.pos;
  }
}

export function corrupt(file: string, offset: number, why: string): DrError {
  return new DrError('DR_STORE_CORRUPT', `segment ${file} is corrupt at byte ${offset}: ${why}`, { offset, file });
}

export interface ScanResult {
  builder: SegmentBuilder | null;
  /** end of the valid prefix */
  validEnd: number;
  fileSize: number;
  sealed: boolean;
  /** why the data after validEnd is not valid (a torn tail, normally) */
  fault: string | null;
}

/**
 * Read a whole segment, checking every record, and summarise it. Stops at the
 * first incomplete or invalid record: what follows is reported as `fault`.
 */
export function scanSegment(file: string, expectSeq?: number, opts: { trustUpTo?: number; resume?: ScanResult } = {}): ScanResult {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw ioError(err, `cannot open segment ${file}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const trustUpTo = opts.trustUpTo ?? 0;
    let b: SegmentBuilder;
    let w: RecordWalker;
    const resume = opts.resume;
    if (resume && resume.builder && !resume.sealed && resume.fault === null && size >= resume.validEnd) {
      // continue a scan of the same open segment where it stopped
      b = resume.builder;
      w = new RecordWalker(fd, file, resume.validEnd);
    } else {
      w = new RecordWalker(fd, file, 0);
      let head: ReturnType<RecordWalker['header']>;
      try {
        head = w.header();
      } catch (err) {
        return { builder: null, validEnd: 0, fileSize: size, sealed: false, fault: (err as Error).message };
      }
      if (!head) return { builder: null, validEnd: 0, fileSize: size, sealed: false, fault: 'incomplete stream header' };
      if (expectSeq !== undefined && head.header.firstSeq !== expectSeq) {
        throw corrupt(file, 36, `header says first seq ${head.header.firstSeq}, file name says ${expectSeq}`);
      }
      b = new SegmentBuilder(head.header, head.hb);
    }
    let sealed = false;
    let fault: string | null = null;
    for (;;) {
      const start = w.pos;
      let r: RawRecord | null;
      try {
        r = w.next(trustUpTo);
      } catch (err) {
        fault = (err as Error).message;
        break;
      }
      if (!r) {
        if (start < size) fault = `incomplete record at byte ${start}`;
        break;
      }
      const len = RECORD_HEADER_SIZE + r.h.payloadLength;
      try {
        const rec = decodePayload(r.h, r.payload, b.volumes);
        if (rec.type === 'volume') {
          if (b.summary.records > 0) throw new Error('VOLUME record after sequenced records');
          b.addVolume(rec, r.hb, len);
        } else if (rec.type === 'end') {
          if (rec.recordCount !== b.streamRecordCount || rec.byteCount !== b.summary.dataEnd) throw new Error('END counts do not match');
          b.summary.size = r.offset + len;
          sealed = true;
          b.summary.sealed = true;
          if (w.pos < size) fault = `${size - w.pos} bytes after END`;
          break;
        } else {
          if (rec.seq !== b.summary.lastSeq + 1) throw new Error(`seq ${rec.seq} follows ${b.summary.lastSeq}`);
          if (rec.time < b.summary.lastTime) throw new Error(`time of seq ${rec.seq} goes backwards`);
          b.addRecord(r.h, r.offset, r.hb, 0, len, rec.type === 'mark' ? rec : null);
        }
      } catch (err) {
        fault = `invalid record at byte ${r.offset}: ${(err as Error).message}`;
        break;
      }
    }
    return { builder: b, validEnd: sealed ? b.summary.size : b.summary.dataEnd, fileSize: size, sealed, fault };
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------- index files

/**
 *  off size
 *    0    8 magic "DRJIDX01"
 *    8    4 JSON summary length J
 *   12    4 CRC-32 of the JSON
 *   16    J JSON summary (SegmentSummary)
 *   ..      zero padding to a multiple of 8
 *    E  40n extents: n rows of 5 little-endian float64 (seq, volume, offset, length, data position or -1)
 *  E+40n  4 CRC-32 of the extent bytes
 */
export function writeIndex(file: string, summary: SegmentSummary, extents: Float64Array): void {
  writeFileDurable(file, encodeIndex(summary, extents));
}

/** The bytes of an index file (layout above). */
export function encodeIndex(summary: SegmentSummary, extents: Float64Array): Buffer[] {
  const n = extents.length / EXTENT_FIELDS;
  const maxExtentLength = longestExtent(extents, n);
  const sorted = rowsInOrder(extents, extentOrder(extents, n));
  const json = Buffer.from(JSON.stringify({ ...summary, sortedExtents: true, maxExtentLength }));
  const head = Buffer.alloc(16);
  IDX_MAGIC.copy(head, 0);
  head.writeUInt32LE(json.length, 8);
  head.writeUInt32LE(crc32(json), 12);
  const pad = Buffer.alloc((8 - ((16 + json.length) % 8)) % 8);
  const ext = Buffer.from(extents.buffer, extents.byteOffset, extents.byteLength);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(crc32(ext), 0);
  // the sorted table: after the first table's CRC, padded to 8, then its own CRC
  const pad2 = Buffer.alloc(4);
  const sext = Buffer.from(sorted.buffer, sorted.byteOffset, sorted.byteLength);
  const tail2 = Buffer.alloc(4);
  tail2.writeUInt32LE(crc32(sext), 0);
  return [head, json, pad, ext, tail, pad2, sext, tail2];
}

// The loops of encodeIndex() are functions of their own: called once per sealed segment,
// each is optimised once and stays so (inside encodeIndex they were optimised mid-loop and
// thrown away again at the code after them, for every segment).

function longestExtent(extents: Float64Array, n: number): number {
  let max = 0;
  for (let i = 0; i < n; i++) max = Math.max(max, extents[i * EXTENT_FIELDS + 3]!);
  return max;
}

/** A copy of an extent table with its rows in `order`. */
function rowsInOrder(extents: Float64Array, order: Uint32Array): Float64Array {
  const sorted = new Float64Array(extents.length);
  for (let i = 0; i < order.length; i++) {
    const from = order[i]! * EXTENT_FIELDS;
    const to = i * EXTENT_FIELDS;
    for (let f = 0; f < EXTENT_FIELDS; f++) sorted[to + f] = extents[from + f]!;
  }
  return sorted;
}

/**
 * Row numbers of an extent table in (volume, offset, seq) order. Sealing a segment sorts
 * its tens of thousands of extents, on the appender's path: when the rows come in seq
 * order and (volume, offset in units of the offsets' common alignment) fits 32 bits,
 * a stable radix sort on that key does it in linear time; else a comparison sort.
 */
function extentOrder(extents: Float64Array, n: number): Uint32Array {
  const order = new Uint32Array(n);
  let inSeqOrder = true;
  let maxVolume = 0;
  let maxOffset = 0;
  let unit = 4096;
  for (let i = 0; i < n; i++) {
    const r = i * EXTENT_FIELDS;
    order[i] = i;
    if (i > 0 && extents[r]! <= extents[r - EXTENT_FIELDS]!) inSeqOrder = false;
    maxVolume = Math.max(maxVolume, extents[r + 1]!);
    const off = extents[r + 2]!;
    maxOffset = Math.max(maxOffset, off);
    while (off % unit !== 0) unit /= 2;
  }
  const span = Math.floor(maxOffset / unit) + 1;
  if (!inSeqOrder || (maxVolume + 1) * span > 2 ** 32) {
    return order.sort((a, b) => {
      const A = a * EXTENT_FIELDS;
      const B = b * EXTENT_FIELDS;
      return extents[A + 1]! - extents[B + 1]! || extents[A + 2]! - extents[B + 2]! || extents[A]! - extents[B]!;
    });
  }
  const keys = new Uint32Array(n);
  for (let i = 0; i < n; i++) keys[i] = extents[i * EXTENT_FIELDS + 1]! * span + extents[i * EXTENT_FIELDS + 2]! / unit;
  // LSD radix sort, 11 bits a pass: each pass is stable, so equal keys stay in seq order
  let from = order;
  let to = new Uint32Array(n);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(keys[from[i]!]! >>> shift) & 2047]!++;
    let sum = 0;
    for (let d = 0; d < 2048; d++) {
      const c = counts[d]!;
      counts[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const row = from[i]!;
      to[counts[(keys[row]! >>> shift) & 2047]!++] = row;
    }
    const swap = from;
    from = to;
    to = swap;
  }
  return from;
}

/** Where the sorted extent table starts (index files with `sortedExtents`). */
export function sortedExtentsAt(idx: ExtentTables): number {
  return idx.extentsAt + idx.summary.extentCount * EXTENT_FIELDS * 8 + 8;
}

/**
 * Extents of one volume that overlap [start, end), from the sorted table of an index
 * file, found by binary search with small reads (the table is not loaded).
 * Rows come back as a flat array of EXTENT_FIELDS numbers each.
 */
export function overlappingExtents(fd: number, file: string, idx: ExtentTables, volume: number, start: number, end: number): number[] {
  const n = idx.summary.extentCount;
  const at = sortedExtentsAt(idx);
  const row = Buffer.alloc(EXTENT_FIELDS * 8);
  const readRow = (i: number): Float64Array => {
    const got = preadSync(fd, row.length, at + i * row.length, row);
    if (got.length !== row.length) throw new DrError('DR_STORE_CORRUPT', `index ${file} is shorter than its extent count`);
    return new Float64Array(row.buffer, row.byteOffset, EXTENT_FIELDS);
  };
  const from = start - (idx.summary.maxExtentLength ?? Infinity);
  // first row with (volume, offset) >= (volume, from)
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const r = readRow(mid);
    if (r[1]! < volume || (r[1] === volume && r[2]! < from)) lo = mid + 1;
    else hi = mid;
  }
  const out: number[] = [];
  const batch = 64;
  const buf = Buffer.alloc(batch * EXTENT_FIELDS * 8);
  for (let i = lo; i < n; i += batch) {
    const k = Math.min(batch, n - i);
    const got = preadSync(fd, k * EXTENT_FIELDS * 8, at + i * EXTENT_FIELDS * 8, buf);
    const rows = new Float64Array(got.buffer, got.byteOffset, Math.floor(got.length / 8));
    for (let j = 0; j < k; j++) {
      const o = j * EXTENT_FIELDS;
      const v = rows[o + 1]!;
      const off = rows[o + 2]!;
      if (v !== volume || off >= end) return out;
      if (off + rows[o + 3]! > start) for (let f = 0; f < EXTENT_FIELDS; f++) out.push(rows[o + f]!);
    }
  }
  return out;
}

export interface IndexFile { summary: SegmentSummary; extentsAt: number }
/** What reading an index file's extent tables needs of it (a reader holding many keeps only this). */
export interface ExtentTables { summary: Pick<SegmentSummary, 'extentCount' | 'sortedExtents' | 'maxExtentLength'>; extentsAt: number }

export function readIndexSummary(file: string): IndexFile | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(err, `cannot open index ${file}`);
  }
  try {
    const head = preadSync(fd, 16, 0);
    if (head.length < 16 || !head.subarray(0, 8).equals(IDX_MAGIC)) return null;
    const jl = head.readUInt32LE(8);
    const json = preadSync(fd, jl, 16);
    if (json.length !== jl || crc32(json) !== head.readUInt32LE(12)) return null;
    const summary = JSON.parse(json.toString('utf8')) as SegmentSummary;
    return { summary, extentsAt: 16 + jl + ((8 - ((16 + jl) % 8)) % 8) };
  } catch (err) {
    if (err instanceof SyntaxError) return null;
    throw ioError(err, `cannot read index ${file}`);
  } finally {
    fs.closeSync(fd);
  }
}

export function readIndexExtents(file: string, idx: ExtentTables, scratch?: { buf: Buffer }): Float64Array {
  const n = idx.summary.extentCount * EXTENT_FIELDS * 8;
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw ioError(err, `cannot open index ${file}`);
  }
  try {
    // with `scratch`, its memory is read into (grown when too small): the table is then
    // valid until the next call with the same scratch
    let buf: Buffer;
    if (scratch) {
      if (scratch.buf.length < n + 4) scratch.buf = Buffer.alloc(Math.max(n + 4, scratch.buf.length * 2));
      buf = scratch.buf;
    } else buf = Buffer.alloc(n + 4);
    const got = preadSync(fd, n + 4, idx.extentsAt, buf);
    if (got.length !== n + 4 || crc32(buf.subarray(0, n)) !== buf.readUInt32LE(n)) {
      throw new DrError('DR_STORE_CORRUPT', `index ${file} is damaged (extent table checksum)`);
    }
    return new Float64Array(buf.buffer, buf.byteOffset, n / 8);
  } finally {
    fs.closeSync(fd);
  }
}

/** Absolute paths of a segment and its index. */
export function segmentPaths(dir: string, firstSeq: number): { data: string; index: string } {
  return { data: path.join(dir, SEGMENTS, segmentFile(firstSeq)), index: path.join(dir, SEGMENTS, indexFile(firstSeq)) };
}
