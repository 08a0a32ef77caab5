/**
 * Checks the CRCs of a stream's records ahead of its parser, chunk by chunk, knowing
 * only where records start and how long they are (layout.ts: record header). It never
 * judges a stream: at the first record it cannot vouch for (a CRC that does not match,
 * a length over the limits) it stops, and the parser, which checks everything from
 * there on itself, reports the fault with its usual message. What it returns is how far
 * the stream is verified: every record ending at or before that offset has a matching
 * header CRC and record CRC.
 */
import { crc32Short } from './crc32-short.js';
import { crc32Payload } from './crc32-payload.js';
import { HEADER_SIZE, LIMITS, RECORD_HEADER_SIZE } from './layout.js';

/** Where a walk stands, to go on with it on another thread (plain data: it can be posted). */
export interface WalkerState {
  verifiedEnd: number;
  stopped: boolean;
  skip: number;
  carry: Uint8Array | null;
  carried: number;
}

export class RecordCrcWalker {
  /** stream offset up to which every record's CRCs were found to match */
  verifiedEnd: number;
  private stopped = false;
  /** bytes of the stream header still to skip (the parser checks the header's own CRC) */
  private skip: number;
  /** a record that spans chunks, collected until complete */
  private carry: Buffer | null = null;
  private carried = 0;

  constructor(streamHeaderSize = HEADER_SIZE) {
    this.skip = streamHeaderSize;
    this.verifiedEnd = streamHeaderSize;
  }

  /** Where this walk stands; resume() goes on from there (the next chunk follows the last one pushed here). */
  state(): WalkerState {
    const carry = this.carry === null ? null : new Uint8Array(this.carry);
    return { verifiedEnd: this.verifiedEnd, stopped: this.stopped, skip: this.skip, carry, carried: this.carried };
  }

  static resume(s: WalkerState): RecordCrcWalker {
    const w = new RecordCrcWalker(0);
    w.verifiedEnd = s.verifiedEnd;
    w.stopped = s.stopped;
    w.skip = s.skip;
    w.carry = s.carry === null ? null : Buffer.from(s.carry.buffer, s.carry.byteOffset, s.carry.length);
    w.carried = s.carried;
    return w;
  }

  /** Walk the next chunk of the stream; returns verifiedEnd. */
  push(chunk: Buffer): number {
    if (this.stopped) return this.verifiedEnd;
    const len = chunk.length;
    let off = Math.min(this.skip, len);
    this.skip -= off;
    if (this.carry !== null) {
      off = this.fillCarry(chunk, off);
      if (this.carry !== null || this.stopped) return this.verifiedEnd;
    }
    while (len - off >= RECORD_HEADER_SIZE) {
      const total = this.recordLength(chunk, off);
      if (total < 0) return this.verifiedEnd;
      if (len - off < total) break;
      if (!recordCrcOk(chunk, off, total)) return this.stop();
      off += total;
      this.verifiedEnd += total;
    }
    if (off < len) {
      this.carry = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
      this.carried = 0;
      this.fillCarry(chunk, off);
    }
    return this.verifiedEnd;
  }

  /** Length of the record whose header is at `off`, or -1 (and stop) when its header is not sound. */
  private recordLength(b: Buffer, off: number): number {
    if (crc32Short(b, off, off + 24) !== b.readUInt32LE(off + 24)) return this.stop(-1);
    const payload = b.readUInt32LE(off + 4);
    if (payload > LIMITS.maxPayload) return this.stop(-1);
    return RECORD_HEADER_SIZE + payload;
  }

  /** Add bytes from `chunk` at `off` to the spanning record; check it once complete. Returns the new offset. */
  private fillCarry(chunk: Buffer, off: number): number {
    let carry = this.carry!;
    if (this.carried < RECORD_HEADER_SIZE) {
      const n = Math.min(RECORD_HEADER_SIZE - this.carried, chunk.length - off);
      chunk.copy(carry, this.carried, off, off + n);
      this.carried += n;
      off += n;
      if (this.carried < RECORD_HEADER_SIZE) return off;
      const total = this.recordLength(carry, 0);
      if (total < 0) return off;
      const whole = Buffer.allocUnsafe(total);
      carry.copy(whole, 0, 0, RECORD_HEADER_SIZE);
      carry = this.carry = whole;
    }
    const n = Math.min(carry.length - this.carried, chunk.length - off);
    chunk.copy(carry, this.carried, off, off + n);
    this.carried += n;
    off += n;
    if (this.carried < carry.length) return off;
    this.carry = null;
    if (!recordCrcOk(carry, 0, carry.length)) return this.stop(off);
    this.verifiedEnd += carry.length;
    return off;
  }

  private stop(ret = this.verifiedEnd): number {
    this.stopped = true;
    this.carry = null;
    return ret;
  }
}

/**
 * Record CRC of the record of `total` bytes at `off`: bytes 0..27 of its header, then its
 * payload. Only for a header recordLength() accepted: its bytes 24..27 are then the CRC of
 * bytes 0..23, so the running CRC continues from them instead of going over those again.
 */
function recordCrcOk(b: Buffer, off: number, total: number): boolean {
  const c = crc32Payload(b.subarray(off + RECORD_HEADER_SIZE, off + total), crc32Short(b, off + 24, off + 28, b.readUInt32LE(off + 24)));
  return c === b.readUInt32LE(off + 28);
}
