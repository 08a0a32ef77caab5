/**
 * Bulk reading for dr-ship send from a journal store. A sealed segment is immutable
 * and durable (the appender fdatasyncs it before writing its index), and its records
 * are already in wire format, so they are read in large slices into a small ring of
 * reused buffers (reads on libuv's thread pool, so the event loop stays free to keep
 * the pipe into ssh full) and sent as they are: no copy, no payload checksum pass in
 * JS. Only the record headers are looked at (their own checksum, seq order, seq and
 * time for the lag, the header for the END digest); the receiver checks every record
 * in full. The open (last) segment is left to the store's reader, which knows how
 * far the appender has made it durable.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import { DrError } from '../errors.js';
import { RECORD_HEADER_SIZE, RecordType, decodeRecordHeader } from '../format/layout.js';
import type { JournalStore, SegmentEntry } from '../store/index.js';

const read = promisify(fs.read);
const open = promisify(fs.open);
const close = promisify(fs.close);

/** bytes per read (and per slice); also the largest compressed-frame batch */
export const SLICE_BYTES = 4 * 1024 * 1024;
/** buffers in the ring: reading ahead while earlier slices are still being written */
const RING = 4;

export interface SliceRecord {
  seq: number;
  time: number;
  /** the record's 32-byte header (a view into the slice) */
  header: Buffer;
}

export interface Slice {
  /** whole records, back to back, exactly as stored */
  bytes: Buffer;
  records: SliceRecord[];
  /** hand the buffer back once `bytes` has been written out */
  release(): void;
}

/** The sealed segments' records from `fromSeq` on, in slices. */
export class SealedSlices {
  private free: Buffer[] = [];
  private allocated = 0;
  private waiting: (() => void) | null = null;
  private segIndex: number;
  private pos = 0;
  private fd: number | null = null;
  private nextSeq: number;
  /** the first seq the sealed segments do not hold (where the store's reader takes over) */
  readonly endSeq: number;

  constructor(
    private readonly store: JournalStore,
    fromSeq: number,
    private readonly signal: AbortSignal,
  ) {
    const segs = store.segments;
    this.segIndex = segs.findIndex((s) => s.summary.lastSeq >= fromSeq);
    let end = fromSeq;
    if (this.segIndex < 0) this.segIndex = segs.length;
    for (let i = this.segIndex; i < segs.length && isSealed(segs[i]!); i++) end = segs[i]!.summary.lastSeq + 1;
    this.endSeq = Math.max(fromSeq, end);
    this.nextSeq = fromSeq;
  }

  /** The sealed segment holding `nextSeq`, if any. */
  private get segment(): SegmentEntry | undefined {
    if (this.nextSeq >= this.endSeq) return undefined;
    let s = this.store.segments[this.segIndex];
    while (s && s.summary.lastSeq < this.nextSeq) s = this.store.segments[++this.segIndex];
    return s && isSealed(s) ? s : undefined;
  }

  private async buffer(): Promise<Buffer | null> {
    for (;;) {
      const b = this.free.pop();
      if (b) return b;
      if (this.allocated < RING) {
        this.allocated++;
        return Buffer.allocUnsafeSlow(SLICE_BYTES);
      }
      if (this.signal.aborted) return null;
      await new Promise<void>((resolve) => {
        const done = () => {
          this.signal.removeEventListener('abort', done);
          this.waiting = null;
          resolve();
        };
        this.waiting = done;
        this.signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  private release(b: Buffer): void {
    if (b.length === SLICE_BYTES) this.free.push(b);
    this.waiting?.();
  }

  /** The next slice, or null when the sealed segments are done (or the read was abandoned). */
  async next(): Promise<Slice | null> {
    const seg = this.segment;
    if (!seg || this.signal.aborted) {
      await this.close();
      return null;
    }
    if (this.fd === null) {
      try {
        this.fd = await open(seg.data, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new DrError('DR_OUTSIDE_WINDOW', `segment ${seg.data} was pruned while seq ${this.nextSeq} was being shipped from it`);
        }
        throw new DrError('DR_IO', `cannot open segment ${seg.data}: ${(err as Error).message}`);
      }
      this.pos = this.nextSeq === seg.firstSeq ? seg.summary.headerEnd : this.store.locate(this.nextSeq).offset;
    }
    const want = seg.summary.dataEnd - this.pos;
    const pooled = await this.buffer();
    if (!pooled) return null;
    // A record larger than a ring buffer gets a buffer of its own.
    let buf = pooled;
    let got = await this.readAt(seg, buf, Math.min(want, buf.length));
    let records = this.walk(seg, buf.subarray(0, got));
    if (records.count === 0) {
      const need = records.need;
      if (this.pos + need > seg.summary.dataEnd) throw corrupt(seg, this.pos, 'a record runs past the end of the segment data');
      this.release(pooled);
      buf = Buffer.allocUnsafeSlow(need);
      got = await this.readAt(seg, buf, need);
      records = this.walk(seg, buf.subarray(0, got));
      if (records.count === 0) throw corrupt(seg, this.pos, 'a record runs past the end of the segment data');
    }
    this.pos += records.bytes;
    this.nextSeq = records.list[records.list.length - 1]!.seq + 1;
    if (this.pos >= seg.summary.dataEnd) {
      if (this.nextSeq !== seg.summary.lastSeq + 1) throw corrupt(seg, this.pos, `the records end at seq ${this.nextSeq - 1}, its index says ${seg.summary.lastSeq}`);
      await this.closeFd();
      this.segIndex++;
    }
    const owned = buf;
    return { bytes: buf.subarray(0, records.bytes), records: records.list, release: () => this.release(owned) };
  }

  private async readAt(seg: SegmentEntry, buf: Buffer, n: number): Promise<number> {
    let got = 0;
    while (got < n) {
      let r: number;
      try {
        r = (await read(this.fd!, buf, got, n - got, this.pos + got)).bytesRead;
      } catch (err) {
        throw new DrError('DR_IO', `cannot read segment ${seg.data}: ${(err as Error).message}`);
      }
      if (r === 0) throw corrupt(seg, this.pos + got, `the file ends before the ${seg.summary.dataEnd} bytes of data its index gives`);
      got += r;
    }
    return got;
  }

  /** The whole records at the start of `b`: their seqs, times and headers (header checksums and seq order checked). */
  private walk(seg: SegmentEntry, b: Buffer): { count: number; bytes: number; list: SliceRecord[]; need: number } {
    const list: SliceRecord[] = [];
    let at = 0;
    let seq = this.nextSeq;
    let need = 0;
    while (at + RECORD_HEADER_SIZE <= b.length) {
      const header = b.subarray(at, at + RECORD_HEADER_SIZE);
      let h;
      try {
        h = decodeRecordHeader(header);
      } catch (err) {
        throw corrupt(seg, this.pos + at, (err as Error).message);
      }
      if (h.code === RecordType.VOLUME || h.code === RecordType.END || h.seq !== seq) {
        throw corrupt(seg, this.pos + at, `found ${h.code === RecordType.END ? 'END' : h.code === RecordType.VOLUME ? 'VOLUME' : `seq ${h.seq}`} where seq ${seq} was expected`);
      }
      const len = RECORD_HEADER_SIZE + h.payloadLength;
      if (at + len > b.length) {
        need = len;
        break;
      }
      list.push({ seq: h.seq, time: h.time, header });
      seq++;
      at += len;
    }
    return { count: list.length, bytes: at, list, need: need || RECORD_HEADER_SIZE };
  }

  private async closeFd(): Promise<void> {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    await close(fd).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.closeFd();
    this.segIndex = this.store.segments.length;
  }
}

function isSealed(s: SegmentEntry): boolean {
  return s.summary.sealed === true;
}

function corrupt(seg: SegmentEntry, offset: number, why: string): DrError {
  return new DrError('DR_STORE_CORRUPT', `segment ${seg.data} is corrupt at byte ${offset}: ${why}`, { offset, file: seg.data });
}
