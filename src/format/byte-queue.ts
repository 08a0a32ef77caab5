/**
 * Bytes received in chunks of any size, consumed from the front: the one buffer every
 * incremental decoder here uses (the stream parser, the ship framer, the frame decoder,
 * the NBD server's request reader).
 * Nothing is copied unless a requested piece spans chunks. Consuming only moves an
 * offset into the first chunk (no new Buffer view per step): decoders consume a few
 * bytes hundreds of thousands of times per second.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** index of the first chunk still held */
  private first = 0;
  /** bytes of chunks[first] already consumed */
  private head = 0;
  /** bytes held */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first chunk still held (undefined when empty); its unread bytes start at frontOffset. */
  get front(): Buffer | undefined {
    return this.chunks[this.first];
  }

  /** Where the unread bytes start in `front`. */
  get frontOffset(): number {
    return this.head;
  }

  /** The first n bytes (n <= length) without consuming them. */
  peek(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const c0 = this.chunks[this.first]!;
    if (c0.length - this.head >= n) return c0.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = this.first; filled < n; i++) {
      const c = this.chunks[i]!;
      const from = i === this.first ? this.head : 0;
      filled += c.copy(out, filled, from, Math.min(c.length, from + n - filled));
    }
    return out;
  }

  /** Consume n bytes (n <= length) as one buffer: a slice when they lie in one chunk, else a copy. */
  take(n: number): Buffer {
    const out = this.peek(n);
    this.drop(n);
    return out;
  }

  /** Consume n bytes (n <= length) as slices of the chunks they lie in (no copy). */
  takeParts(n: number): Buffer[] {
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[this.first]!;
      const take = Math.min(c.length - this.head, left);
      parts.push(this.head === 0 && take === c.length ? c : c.subarray(this.head, this.head + take));
      this.drop(take);
      left -= take;
    }
    return parts;
  }

  /** Consume n bytes (n <= length) and forget them. */
  drop(n: number): void {
    this.length -= n;
    let left = n;
    while (left > 0) {
      const c = this.chunks[this.first]!;
      const rest = c.length - this.head;
      if (rest <= left) {
        left -= rest;
        this.chunks[this.first++] = undefined as unknown as Buffer;
        this.head = 0;
      } else {
        this.head += left;
        left = 0;
      }
    }
    if (this.first === this.chunks.length) {
      this.chunks.length = 0;
      this.first = 0;
    } else if (this.first >= 64) {
      this.chunks.splice(0, this.first);
      this.first = 0;
    }
  }

  /**
   * Copy the bytes still held into one new buffer, so the caller may reuse the memory
   * of the chunks it pushed (a reader that fills the same buffers again and again).
   */
  detach(): void {
    if (this.length === 0) return;
    const own = Buffer.allocUnsafe(this.length);
    let filled = 0;
    for (let i = this.first; i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      filled += c.copy(own, filled, i === this.first ? this.head : 0);
    }
    this.chunks = [own];
    this.first = 0;
    this.head = 0;
  }
}
