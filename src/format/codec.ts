/**
 * Incremental, synchronous encoder and decoder state for one stream. The layouts
 * live in layout.ts; this module adds the stream-level rules: header first, volume
 * declarations before sequenced records, seq +1 each record, time never going
 * backwards, the running digest and the END trailer. The Node stream Transforms in
 * streams.ts and the journal store both build on these two classes.
 */
import { ByteQueue } from './byte-queue.js';
import { HeaderDigest } from './header-digest.js';
import { DrError } from '../errors.js';
import {
  HEADER_SIZE, RECORD_HEADER_SIZE, decodeHeader, decodePayload, decodeRecordHeader, encodeHeader, encodeRecord,
  readPayloadFields, recordCrcMatches, u32, type EndRecord, type RecordHeader, type SequencedRecord, type StreamHeader,
  type StreamRecord, type VolumeRecord, RecordType, IGNORABLE_BIT,
} from './layout.js';
import type { RecordViews } from './record-views.js';

/** A sequenced record as given to the writer: seq and time may be left for it to fill. */
export type RecordInput = SequencedRecord extends infer R
  ? R extends SequencedRecord ? Omit<R, 'seq' | 'time'> & { seq?: number; time?: number } : never
  : never;

export function nowMicros(): number {
  return Date.now() * 1000;
}

export interface WriterOptions {
  groupId: Buffer;
  firstSeq: number;
  created?: number;
  compatFeatures?: number;
}

/** Produces the bytes of one stream, record by record, keeping the trailer's counts and digest. */
export class StreamWriter {
  readonly header: StreamHeader;
  private digest = new HeaderDigest();
  private volumeCount = 0;
  private sequenced = false;
  /** records written so far (volumes included, END excluded) */
  recordCount = 0;
  /** bytes written so far */
  byteCount = 0;
  /** seq the next sequenced record gets */
  nextSeq: number;
  lastTime = 0;
  ended = false;

  constructor(opts: WriterOptions) {
    this.header = {
      type: 'header',
      groupId: opts.groupId,
      firstSeq: opts.firstSeq,
      created: opts.created ?? nowMicros(),
      compatFeatures: opts.compatFeatures ?? 0,
    };
    this.nextSeq = opts.firstSeq;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** The 64-byte stream header: always the first bytes of the stream. */
  start(): Buffer {
    const b = encodeHeader(this.header);
    this.digest.raw(b);
    this.byteCount += b.length;
    return b;
  }

  volume(v: Omit<VolumeRecord, 'type' | 'seq' | 'time' | 'index'> & { time?: number }): Buffer[] {
    if (this.sequenced) throw new DrError('DR_BAD_RECORD', 'volumes must be declared before the first sequenced record');
    const rec: VolumeRecord = { ...v, type: 'volume', seq: 0, index: this.volumeCount, time: v.time ?? this.header.created };
    const parts = encodeRecord(rec);
    this.volumeCount++;
    this.emitted(parts);
    return parts;
  }

  /** Encode a sequenced record; fills seq and time (never earlier than the last) when absent. */
  record(input: RecordInput): { record: SequencedRecord; parts: Buffer[] } {
    if (this.ended) throw new DrError('DR_BAD_RECORD', 'record after END');
    const seq = input.seq ?? this.nextSeq;
    if (seq !== this.nextSeq) throw new DrError('DR_SEQ_ORDER', `seq ${seq} given where ${this.nextSeq} was next`);
    const time = Math.max(input.time ?? nowMicros(), this.lastTime);
    const record = { ...input, seq, time } as SequencedRecord;
    const parts = encodeRecord(record);
    this.sequenced = true;
    this.nextSeq++;
    this.lastTime = time;
    this.emitted(parts);
    return { record, parts };
  }

  /** The END trailer. */
  end(time?: number): Buffer[] {
    const rec: EndRecord = {
      type: 'end', seq: 0, time: Math.max(time ?? nowMicros(), this.lastTime),
      recordCount: this.recordCount, byteCount: this.byteCount, digest: this.digest.digest(),
    };
    this.ended = true;
    const parts = encodeRecord(rec);
    for (const p of parts) this.byteCount += p.length;
    return parts;
  }

  private emitted(parts: Buffer[]): void {
    this.recordCount++;
    this.digest.update(parts[0]!);
    for (const p of parts) this.byteCount += p.length;
  }
}

export interface ParserOptions {
  /** volumes to assume already declared (a journal segment continues a store's volumes) */
  volumes?: VolumeRecord[];
  /** skip the running digest (readers that do not need to check the trailer) */
  noDigest?: boolean;
}

/** Decoded item: the header first, then records. */
export type StreamItem = StreamHeader | StreamRecord;

/**
 * Incremental decoder. Feed chunks of any size with push(); it returns every item
 * completed by that chunk. Errors are DrErrors naming the byte offset of the record
 * at fault and the last good seq. finish() checks that the stream was complete.
 */
export class StreamParser {
  header: StreamHeader | null = null;
  readonly volumes: VolumeRecord[];
  /** seq of the last sequenced record decoded, 0 if none */
  lastSeq = 0;
  lastTime = 0;
  ended = false;
  /** bytes consumed, i.e. the offset of the next record */
  offset = 0;
  recordCount = 0;
  private queue = new ByteQueue();
  /** header of the record whose payload has not fully arrived yet */
  private pendingHeader: RecordHeader | null = null;
  /** the one header object every record's header is decoded into (nothing keeps it past its record) */
  private readonly header1: RecordHeader = { code: 0, flags: 0, payloadLength: 0, seq: 0, time: 0, headerCrc: 0, recordCrc: 0, volume: 0, offset: 0, length: 0 };
  private digest: HeaderDigest | null;
  private sawSequenced = false;
  private failed: DrError | null = null;
  /** records ending at or before this stream offset had their CRCs checked already (CrcPrecheck) */
  private crcCheckedEnd = 0;

  constructor(opts: ParserOptions = {}) {
    this.volumes = opts.volumes ? [...opts.volumes] : [];
    this.digest = opts.noDigest ? null : new HeaderDigest();
  }

  /** Bytes received but not yet part of a complete record. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  /**
   * Items decoded before an error are left in `out`, so callers can use the valid prefix.
   * With `raws`, each item's bytes as received (64 for the header, header and payload for a
   * record) are pushed there too, one per item: views of `chunk` where the item lies in it,
   * so they stay valid as long as the chunk's memory does (see detach()).
   */
  push(chunk: Buffer, out: StreamItem[] = [], raws?: Buffer[]): StreamItem[] {
    this.feed(chunk, out, raws, null);
    return out;
  }

  /**
   * push() for a consumer that keeps records as they came: each record goes to `views`
   * as numbers and a place in memory (RecordViews), the same checks made, and only
   * records of other kinds than WRITE, ZERO, FLUSH and HEARTBEAT decoded into objects.
   * The memory is `chunk`'s where a record lies in it (see detach()).
   */
  pushViews(chunk: Buffer, views: RecordViews): void {
    this.feed(chunk, null, undefined, views);
  }

  private feed(chunk: Buffer, out: StreamItem[] | null, raws: Buffer[] | undefined, views: RecordViews | null): void {
    if (this.failed) throw this.failed;
    if (chunk.length === 0) return;
    if (this.ended) throw this.fail(new DrError('DR_TRAILING_DATA', 'data after the END record'), this.offset);
    this.queue.push(chunk);
    try {
      this.drain(out, raws, views);
    } catch (err) {
      if (err instanceof DrError && !this.failed) throw this.fail(err, this.offset);
      throw err;
    } finally {
      this.digest?.flush();
    }
  }

  /**
   * The CRCs of every record ending at or before stream offset `end` are known to match
   * (CrcPrecheck verified them on another thread): push() does not compute them again.
   */
  trustChecksumsBelow(end: number): void {
    this.crcCheckedEnd = end;
  }

  /**
   * Copy the bytes of an incomplete record still held, so the caller may fill the
   * buffers it pushed again (a reader that reuses its read buffers calls this before).
   */
  detach(): void {
    this.queue.detach();
  }

  /** Call at end of input: throws DR_TRUNCATED unless the stream ended with a valid END. */
  finish(): void {
    if (this.failed) throw this.failed;
    if (this.ended) return;
    const where = this.header === null ? 'stream header' : this.queue.length > 0 ? 'record' : 'END trailer';
    const what = this.queue.length > 0 || this.header === null ? `truncated ${where}` : 'stream ends without its END trailer';
    throw this.fail(new DrError('DR_TRUNCATED', what), this.offset);
  }

  private fail(err: DrError, offset: number): DrError {
    const at = err.detail.offset !== undefined ? offset + err.detail.offset : offset;
    const e = new DrError(err.code, `${err.message} at byte ${at} (last good seq ${this.lastSeq})`, {
      ...err.detail, offset: at, lastGoodSeq: this.lastSeq,
    });
    this.failed = e;
    return e;
  }

  /** Decode the complete records held: into `out` (and `raws`) as objects, or into `views`. */
  private drain(out: StreamItem[] | null, raws: Buffer[] | undefined, views: RecordViews | null): void {
    const queue = this.queue;
    if (this.header === null) {
      // Check the magic as soon as it can be seen, so a wrong input fails early.
      if (queue.length < HEADER_SIZE) {
        const head = queue.peek(queue.length);
        const magic = Buffer.from([0x89, 0x44, 0x52, 0x4a, 0x0d, 0x0a, 0x1a, 0x0a]);
        if (!magic.subarray(0, Math.min(8, head.length)).equals(head.subarray(0, Math.min(8, head.length)))) {
          throw new DrError('DR_BAD_MAGIC', 'not a drkit journal stream (bad magic)');
        }
        return;
      }
      const hb = queue.take(HEADER_SIZE);
      this.header = decodeHeader(hb);
      this.digest?.raw(hb);
      this.offset = HEADER_SIZE;
      this.lastSeq = this.header.firstSeq - 1;
      if (views !== null) views.addHeader(this.header, hb, 0, HEADER_SIZE);
      else {
        out!.push(this.header);
        raws?.push(hb);
      }
    }
    for (;;) {
      let h = this.pendingHeader;
      // the whole record is bytes[at, at + total): the front chunk itself when it lies in it (the common case)
      let bytes: Buffer | null = null;
      let at = 0;
      if (h === null) {
        if (queue.length < RECORD_HEADER_SIZE) return;
        const front = queue.front!;
        const from = queue.frontOffset;
        if (front.length - from >= RECORD_HEADER_SIZE && front.length - from >= RECORD_HEADER_SIZE + u32(front, from + 4)) {
          bytes = front;
          at = from;
        }
        const trusted = this.offset + RECORD_HEADER_SIZE <= this.crcCheckedEnd;
        h = decodeRecordHeader(bytes ?? queue.peek(RECORD_HEADER_SIZE), trusted, this.header1, at);
        this.checkOrder(h);
        this.pendingHeader = h;
      }
      const total = RECORD_HEADER_SIZE + h.payloadLength;
      if (bytes === null) {
        if (queue.length < total) return;
        bytes = queue.peek(total);
      }
      if (this.offset + total > this.crcCheckedEnd && !recordCrcMatches(bytes.subarray(at, at + RECORD_HEADER_SIZE), h, [bytes.subarray(at + RECORD_HEADER_SIZE, at + total)])) {
        throw new DrError('DR_BAD_CHECKSUM', `record checksum mismatch (seq ${h.seq})`);
      }
      const payloadAt = at + RECORD_HEADER_SIZE;
      const rec = views !== null && readPayloadFields(h, bytes, this.volumes, payloadAt) ? null : decodePayload(h, bytes, this.volumes, payloadAt);
      const code = h.code;
      if (code === RecordType.END) this.checkEnd(rec as EndRecord);
      this.digest?.update(bytes, at);
      queue.drop(total);
      this.pendingHeader = null;
      this.offset += total;
      if (code === RecordType.VOLUME) this.volumes.push(rec as VolumeRecord);
      else if (code !== RecordType.END) {
        this.lastSeq = h.seq;
        this.lastTime = h.time;
        this.sawSequenced = true;
      }
      if (code === RecordType.END) this.ended = true;
      else this.recordCount++;
      if (views !== null) views.add(h, bytes, at, total, rec);
      else {
        out!.push(rec!);
        raws?.push(at === 0 && bytes.length === total ? bytes : bytes.subarray(at, at + total));
      }
      if (this.ended) {
        if (queue.length > 0) throw new DrError('DR_TRAILING_DATA', 'data after the END record');
        return;
      }
    }
  }

  /** Checks that need only the header, so a bad seq is refused before its payload is read. */
  private checkOrder(h: RecordHeader): void {
    const type = h.code & ~IGNORABLE_BIT;
    const unsequenced = h.code === RecordType.VOLUME || h.code === RecordType.END;
    if (unsequenced) {
      if (h.seq !== 0) throw new DrError('DR_SEQ_ORDER', `${type === RecordType.END ? 'END' : 'VOLUME'} record with seq ${h.seq} (must be 0)`);
      if (h.code === RecordType.VOLUME && this.sawSequenced) throw new DrError('DR_BAD_RECORD', 'VOLUME record after the first sequenced record');
      return;
    }
    if (h.seq !== this.lastSeq + 1) throw new DrError('DR_SEQ_ORDER', `seq ${h.seq} follows ${this.lastSeq} (must be ${this.lastSeq + 1})`);
    if (h.time < this.lastTime) throw new DrError('DR_TIME_ORDER', `time of seq ${h.seq} goes backwards`);
  }

  private checkEnd(end: EndRecord): void {
    if (end.recordCount !== this.recordCount) throw new DrError('DR_TRAILER_MISMATCH', `END counts ${end.recordCount} records, stream has ${this.recordCount}`);
    if (end.byteCount !== this.offset) throw new DrError('DR_TRAILER_MISMATCH', `END counts ${end.byteCount} bytes, stream has ${this.offset}`);
    if (this.digest && !this.digest.digest().equals(end.digest)) throw new DrError('DR_TRAILER_MISMATCH', 'END digest does not match the stream');
  }
}
