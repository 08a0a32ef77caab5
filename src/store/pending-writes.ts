/**
 * Bytes on their way to the end of one file, in file order: copies in a staging buffer
 * (appends whose memory the caller reuses at once) and views of borrowed memory (a
 * caller that keeps its buffer until the write is done, so nothing is copied).
 * Adjacent pieces of the same memory are merged: the records of one received chunk
 * go out as one piece of one write, not one piece per record.
 */
export class PendingWrites {
  private readonly staging: Buffer;
  private staged = 0;
  /** pieces as (memory, byte offset, length): merging needs no new Buffer view per record */
  private mem: ArrayBufferLike[] = [];
  private offsets: number[] = [];
  private lengths: number[] = [];
  /** bytes held */
  bytes = 0;
  /** the Buffer last given to borrowRange(), and its memory */
  private lastBorrowed: Buffer | null = null;
  private lastMem: ArrayBufferLike | null = null;
  private lastBase = 0;

  constructor(stagingSize: number) {
    this.staging = Buffer.allocUnsafeSlow(stagingSize);
  }

  /** Whether `len` more bytes fit in the staging buffer. */
  fits(len: number): boolean {
    return this.staged + len <= this.staging.length;
  }

  /** Copy `parts` (which fit) into the staging buffer. */
  copy(parts: Buffer[]): void {
    for (const p of parts) {
      const at = this.staged;
      p.copy(this.staging, at);
      this.staged += p.length;
      this.add(this.staging.buffer, this.staging.byteOffset + at, p.length);
    }
  }

  /** Keep a view of `part`: its memory must stay as it is until the bytes are taken and written. */
  borrow(part: Buffer): void {
    this.add(part.buffer, part.byteOffset, part.length);
  }

  /** borrow(b.subarray(at, at + length)) without making that view (a record of a received chunk). */
  borrowRange(b: Buffer, at: number, length: number): void {
    // a Buffer's .buffer is a call into the runtime: once per chunk, not per record
    if (b !== this.lastBorrowed) {
      this.lastBorrowed = b;
      this.lastMem = b.buffer;
      this.lastBase = b.byteOffset;
    }
    this.add(this.lastMem!, this.lastBase + at, length);
  }

  private add(mem: ArrayBufferLike, offset: number, length: number): void {
    if (length === 0) return;
    this.bytes += length;
    const last = this.mem.length - 1;
    if (last >= 0 && this.mem[last] === mem && this.offsets[last]! + this.lengths[last]! === offset) {
      this.lengths[last] = this.lengths[last]! + length;
      return;
    }
    this.mem.push(mem);
    this.offsets.push(offset);
    this.lengths.push(length);
  }

  /**
   * Everything held, as buffers to write, and forget it. The staging buffer is reused by
   * the next copy(): write the taken buffers before copying more.
   */
  take(): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < this.mem.length; i++) out.push(Buffer.from(this.mem[i]!, this.offsets[i]!, this.lengths[i]!));
    this.mem.length = 0;
    this.offsets.length = 0;
    this.lengths.length = 0;
    this.staged = 0;
    this.bytes = 0;
    this.lastBorrowed = this.lastMem = null;
    return out;
  }
}
