/**
 * Bytes received in chunks of any size, consumed from the front: the one buffer every
 * incremental decoder here uses (the stream parser, the ship framer, the frame decoder).
 * Nothing is copied unless a requested piece spans chunks.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** bytes held */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first n bytes (n <= length) without consuming them. */
  peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const c of this.chunks) {
      filled += c.copy(out, filled, 0, Math.min(c.length, n - filled));
      if (filled === n) break;
    }
    return out;
  }

  /** Consume n bytes (n <= length) as one buffer: a slice when they lie in one chunk, else a copy. */
  take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      this.drop(n);
      return first.subarray(0, n);
    }
    const out = this.peek(n);
    this.drop(n);
    return out;
  }

  /** Consume n bytes (n <= length) as slices of the chunks they lie in (no copy). */
  takeParts(n: number): Buffer[] {
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      const piece = c.length <= left ? c : c.subarray(0, left);
      parts.push(piece);
      this.drop(piece.length);
      left -= piece.length;
    }
    return parts;
  }

  /** Consume n bytes (n <= length) and forget them. */
  drop(n: number): void {
    this.length -= n;
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
  }
}
