/**
 * The running SHA-256 of a stream's END trailer: the 64-byte stream header, then the
 * 32-byte header of every record. Record headers are collected and given to the hash
 * one batch at a time (one update per 256 records, not per record); the value is the
 * same as updating record by record.
 */
import { createHash, type Hash } from 'node:crypto';
import { RECORD_HEADER_SIZE } from './layout.js';

const BATCH = 256 * RECORD_HEADER_SIZE;

export class HeaderDigest {
  private readonly hash: Hash = createHash('sha256');
  private batch: Buffer | null = null;
  private batched = 0;

  /** Digest `bytes` whole (the stream header), after the record headers given before them. */
  raw(bytes: Buffer): void {
    this.flush();
    this.hash.update(bytes);
  }

  /** Add the record header at byte `from` of `hb` (which may hold the whole record, or many). */
  update(hb: Buffer, from = 0): void {
    const batch = (this.batch ??= Buffer.allocUnsafe(BATCH));
    // 32 bytes by hand: a Buffer.copy call costs more than the copy (twice per record when appending)
    const at = this.batched;
    for (let i = 0; i < RECORD_HEADER_SIZE; i++) batch[at + i] = hb[from + i]!;
    this.batched = at + RECORD_HEADER_SIZE;
    if (this.batched === BATCH) this.flush();
  }

  /** The SHA-256 of everything given so far; more may be added afterwards. */
  digest(): Buffer {
    this.flush();
    return this.hash.copy().digest();
  }

  /** Give the collected record headers to the hash now. */
  flush(): void {
    if (this.batched === 0) return;
    this.hash.update(this.batch!.subarray(0, this.batched));
    this.batched = 0;
  }
}
