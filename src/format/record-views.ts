/**
 * Records as StreamParser.pushViews() decodes them for a consumer that stores them as
 * they came (the journal store's ingest): per record its fields as numbers and where its
 * bytes are, with no record object and no Buffer view made. A stream is mostly WRITE,
 * ZERO and FLUSH records; only the other kinds (and the stream header) come with their
 * decoded object as well. The view objects are reused from one batch to the next.
 */
import type { StreamHeader, StreamRecord, RecordHeader } from './layout.js';

export interface RecordView extends RecordHeader {
  /** the whole record is bytes[at, at + total): a chunk as pushed, or a copy of a record that spanned chunks */
  bytes: Buffer;
  at: number;
  total: number;
  /** the decoded stream header, or record of a kind other than WRITE, ZERO, FLUSH and HEARTBEAT; else null */
  item: StreamHeader | StreamRecord | null;
}

const NO_BYTES = Buffer.alloc(0);

export class RecordViews {
  /** list[0 .. length-1] are this batch's records, in stream order */
  readonly list: RecordView[] = [];
  length = 0;

  /** Add a record: a copy of `h`, where its bytes are, and its decoded object if any. */
  add(h: RecordHeader, bytes: Buffer, at: number, total: number, item: StreamRecord | null): void {
    const v = this.next(bytes, at, total, item);
    v.code = h.code;
    v.flags = h.flags;
    v.payloadLength = h.payloadLength;
    v.seq = h.seq;
    v.time = h.time;
    v.headerCrc = h.headerCrc;
    v.recordCrc = h.recordCrc;
    v.volume = h.volume;
    v.offset = h.offset;
    v.length = h.length;
  }

  /** Add the stream header (its numbers all 0). */
  addHeader(header: StreamHeader, bytes: Buffer, at: number, total: number): void {
    const v = this.next(bytes, at, total, header);
    v.code = v.flags = v.payloadLength = v.seq = v.time = v.headerCrc = v.recordCrc = v.volume = v.offset = v.length = 0;
  }

  private next(bytes: Buffer, at: number, total: number, item: RecordView['item']): RecordView {
    let v = this.list[this.length];
    if (v === undefined) {
      v = { code: 0, flags: 0, payloadLength: 0, seq: 0, time: 0, headerCrc: 0, recordCrc: 0, volume: 0, offset: 0, length: 0, bytes, at, total, item };
      this.list.push(v);
    }
    v.bytes = bytes;
    v.at = at;
    v.total = total;
    v.item = item;
    this.length++;
    return v;
  }

  /** Forget this batch (and its memory: nothing keeps a chunk alive through a view object). */
  clear(): void {
    for (let i = 0; i < this.length; i++) {
      const v = this.list[i]!;
      v.bytes = NO_BYTES;
      v.item = null;
    }
    this.length = 0;
  }
}
