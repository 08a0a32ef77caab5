/**
 * Record boundaries without decoding payloads. The sender only needs to know where
 * each record starts and ends and its seq and time (for resuming and for the RPO
 * lag); the receiver decodes and checks everything. RecordFramer splits a stream's
 * bytes into its header and raw records (header CRCs checked, seq order checked);
 * WireStreamWriter puts raw records back together into a new valid stream that
 * starts at any seq, computing its own END trailer.
 */
import { createHash, type Hash } from 'node:crypto';
import { DrError } from '../errors.js';
import { ByteQueue } from '../format/byte-queue.js';
import {
  HEADER_SIZE, RECORD_HEADER_SIZE, RecordType, decodeHeader, decodeRecordHeader, encodeHeader, encodeRecord,
  type StreamHeader,
} from '../format/layout.js';
import { nowMicros } from '../format/codec.js';

export interface RawRecord {
  /** 0 for VOLUME records */
  seq: number;
  time: number;
  /** the 32-byte record header first, then the payload pieces */
  parts: Buffer[];
  /** total bytes */
  length: number;
}

export type FramedItem =
  | { kind: 'header'; header: StreamHeader; bytes: Buffer }
  | { kind: 'volume'; record: RawRecord }
  | { kind: 'record'; record: RawRecord }
  | { kind: 'end'; record: RawRecord };

export class RecordFramer {
  header: StreamHeader | null = null;
  lastSeq = 0;
  ended = false;
  /** bytes consumed */
  offset = 0;
  private queue = new ByteQueue();
  private pending: { code: number; seq: number; time: number; headerBytes: Buffer; payloadLength: number } | null = null;

  /** Bytes held that do not yet form a whole record. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  push(chunk: Buffer, out: FramedItem[] = []): FramedItem[] {
    if (chunk.length === 0) return out;
    if (this.ended) throw new DrError('DR_TRAILING_DATA', `data after the END record at byte ${this.offset}`);
    this.queue.push(chunk);
    try {
      this.drain(out);
    } catch (err) {
      if (err instanceof DrError) {
        throw new DrError(err.code, `${err.message} at byte ${this.offset} (last good seq ${this.lastSeq})`, { offset: this.offset, lastGoodSeq: this.lastSeq });
      }
      throw err;
    }
    return out;
  }

  /** Take n bytes as pieces (no copy unless `copy`). */
  private take(n: number, copy: boolean): Buffer[] {
    return copy ? [this.queue.take(n)] : this.queue.takeParts(n);
  }

  private drain(out: FramedItem[]): void {
    if (this.header === null) {
      if (this.queue.length < HEADER_SIZE) return;
      const hb = this.take(HEADER_SIZE, true)[0]!;
      this.header = decodeHeader(hb);
      this.lastSeq = this.header.firstSeq - 1;
      this.offset = HEADER_SIZE;
      out.push({ kind: 'header', header: this.header, bytes: hb });
    }
    while (!this.ended) {
      if (this.pending === null) {
        if (this.queue.length < RECORD_HEADER_SIZE) return;
        const headerBytes = this.take(RECORD_HEADER_SIZE, true)[0]!;
        const h = decodeRecordHeader(headerBytes);
        const unsequenced = h.code === RecordType.VOLUME || h.code === RecordType.END;
        if (!unsequenced && h.seq !== this.lastSeq + 1) {
          throw new DrError('DR_SEQ_ORDER', `seq ${h.seq} follows ${this.lastSeq} (must be ${this.lastSeq + 1})`);
        }
        this.pending = { code: h.code, seq: h.seq, time: h.time, headerBytes, payloadLength: h.payloadLength };
      }
      const p = this.pending;
      if (this.queue.length < p.payloadLength) return;
      const parts = [p.headerBytes, ...(p.payloadLength > 0 ? this.take(p.payloadLength, false) : [])];
      const record: RawRecord = { seq: p.seq, time: p.time, parts, length: RECORD_HEADER_SIZE + p.payloadLength };
      this.pending = null;
      this.offset += record.length;
      if (p.code === RecordType.END) {
        this.ended = true;
        if (this.queue.length > 0) throw new DrError('DR_TRAILING_DATA', 'data after the END record');
        out.push({ kind: 'end', record });
      } else if (p.code === RecordType.VOLUME) {
        out.push({ kind: 'volume', record });
      } else {
        this.lastSeq = p.seq;
        out.push({ kind: 'record', record });
      }
    }
  }
}

/** Builds a valid stream from raw records: header, volumes, records, and its own END trailer. */
export class WireStreamWriter {
  private digest: Hash = createHash('sha256');
  recordCount = 0;
  byteCount = 0;
  lastTime = 0;

  constructor(readonly header: Omit<StreamHeader, 'type'>) {}

  start(): Buffer {
    const b = encodeHeader(this.header);
    this.digest.update(b);
    this.byteCount += b.length;
    return b;
  }

  /** Account for a raw VOLUME or sequenced record about to be sent. */
  add(r: RawRecord): Buffer[] {
    this.digest.update(r.parts[0]!);
    this.recordCount++;
    this.byteCount += r.length;
    if (r.time > this.lastTime) this.lastTime = r.time;
    return r.parts;
  }

  /** Account for whole records sent as one slice: `headers` are their 32-byte headers, `bytes` their total length. */
  addSlice(records: Array<{ time: number; header: Buffer }>, bytes: number): void {
    for (const r of records) this.digest.update(r.header);
    this.recordCount += records.length;
    this.byteCount += bytes;
    const last = records[records.length - 1];
    if (last && last.time > this.lastTime) this.lastTime = last.time;
  }

  end(): Buffer[] {
    return encodeRecord({
      type: 'end', seq: 0, time: Math.max(nowMicros(), this.lastTime),
      recordCount: this.recordCount, byteCount: this.byteCount, digest: this.digest.digest(),
    });
  }
}
