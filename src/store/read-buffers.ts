/**
 * A bounded set of reused read buffers for a RecordWalker whose records are handed on
 * (dr-journal cat: slices of them are written to standard output). A fresh buffer per
 * read made cat's memory grow with the journal (the freed 1 MiB buffers stay in the
 * allocator's heap once its mmap threshold has risen: peak 115 / 132 / 160 MiB at
 * 256 MiB / 1 GiB / 4 GiB of journal). A buffer is counted in use while the walker reads
 * from it and while any slice of it handed on is not yet released (ref/unref); reading
 * waits (whenFree) while all of them are in use. A read larger than `size` (a record
 * bigger than a buffer) gets a buffer of its own, not counted.
 */
export class ReadBuffers {
  private readonly free: Buffer[] = [];
  private readonly refs = new Map<ArrayBufferLike, { buf: Buffer; n: number }>();
  private waiting: (() => void) | null = null;

  constructor(readonly size: number, readonly max: number) {}

  /** A buffer of at least `n` bytes, in use by the caller (one reference). */
  take(n: number): Buffer {
    if (n > this.size) return Buffer.allocUnsafeSlow(n);
    const buf = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    this.refs.set(buf.buffer, { buf, n: 1 });
    return buf;
  }

  /** One more user of the buffer `view` is a view of. */
  ref(view: Buffer): void {
    const e = this.refs.get(view.buffer);
    if (e) e.n++;
  }

  /** One user fewer: the last one gives the buffer back. */
  unref(view: Buffer): void {
    const e = this.refs.get(view.buffer);
    if (!e || --e.n > 0) return;
    this.refs.delete(view.buffer);
    this.free.push(e.buf);
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  /** Every buffer is in use: a read now would have to wait. */
  get exhausted(): boolean {
    return this.free.length === 0 && this.refs.size >= this.max;
  }

  /** Resolves once a buffer was given back. */
  whenFree(): Promise<void> {
    return new Promise((resolve) => {
      const before = this.waiting;
      this.waiting = () => {
        before?.();
        resolve();
      };
    });
  }
}
