/**
 * The bytes a socket delivered and nobody consumed yet, kept as the chunks they
 * arrived in. Request bodies leave as slices of those chunks (no copy); only small
 * headers that straddle two chunks are copied.
 */
export class ChunkQueue {
  private list: Buffer[] = [];
  private head = 0;
  /** bytes queued */
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.list.push(b);
    this.length += b.length;
  }

  /** Remove and return `n` bytes as one Buffer (copied only if they span chunks). */
  takeContiguous(n: number): Buffer {
    const first = this.list[this.head];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      this.consumeFirst(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const s of this.take(n)) {
      s.copy(out, filled);
      filled += s.length;
    }
    return out;
  }

  /** Remove and return `n` bytes as slices of the received chunks. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = this.list[this.head]!;
      if (c.length <= need) {
        out.push(c);
        need -= c.length;
        this.consumeFirst(c.length);
      } else {
        out.push(c.subarray(0, need));
        this.consumeFirst(need);
        need = 0;
      }
    }
    return out;
  }

  /** Drop up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let dropped = 0;
    while (dropped < n && this.length > 0) {
      const c = this.list[this.head]!;
      const k = Math.min(c.length, n - dropped);
      this.consumeFirst(k);
      dropped += k;
    }
    return dropped;
  }

  private consumeFirst(n: number): void {
    const c = this.list[this.head]!;
    this.length -= n;
    if (n === c.length) {
      this.list[this.head] = undefined as unknown as Buffer;
      this.head++;
      if (this.head > 64 && this.head * 2 > this.list.length) {
        this.list = this.list.slice(this.head);
        this.head = 0;
      }
    } else {
      this.list[this.head] = c.subarray(n);
    }
  }
}
