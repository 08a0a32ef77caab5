/**
 * Memory for decoded bytes that is used again instead of allocated anew: views are cut
 * from large slabs one after another, and recycle() makes every slab free once nothing
 * refers to what was cut from them (the caller knows when: its bytes were written out).
 * Why: a receiver decoding compressed frames made a fresh 256 KiB buffer per frame,
 * 1 GiB of new memory per GiB shipped, paid in page faults (zero-filling by the kernel)
 * and garbage collection; here the same few MiB are reused.
 */
const SLAB = 4 * 1024 * 1024;

export class ReusableSlabs {
  private readonly free: Buffer[] = [];
  private readonly used: Buffer[] = [];
  private slab: Buffer | null = null;
  private at = 0;

  /**
   * `n` bytes of memory with unspecified contents, valid until recycle(). Larger requests
   * than a slab get memory of their own (not reused).
   */
  take(n: number): Buffer {
    if (n > SLAB) return Buffer.allocUnsafeSlow(n);
    if (this.slab === null || this.at + n > this.slab.length) {
      if (this.slab !== null) this.used.push(this.slab);
      this.slab = this.free.pop() ?? Buffer.allocUnsafeSlow(SLAB);
      this.at = 0;
    }
    const out = this.slab.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** Everything taken so far is no longer referred to: reuse it all. */
  recycle(): void {
    this.free.push(...this.used.splice(0));
    this.at = 0;
  }
}
