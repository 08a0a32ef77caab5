/**
 * A token bucket for the bytes written to the transport. Tokens accrue at `rate`
 * bytes per second up to a burst of 1/20 s worth (one write chunk); a write of n bytes
 * takes n tokens and waits while the bucket is in debt. The bucket starts empty and an
 * idle spell (connecting, waiting for records) earns at most one chunk, so even a short
 * transfer stays within a few percent of the limit.
 */
export class TokenBucket {
  private tokens = 0;
  private last = performance.now();

  /** rate in bytes per second; 0 or Infinity = unlimited */
  constructor(private rate: number) {}

  get limit(): number {
    return this.rate;
  }

  setRate(rate: number): void {
    if (rate === this.rate) return;
    this.refill();
    this.rate = rate;
    if (this.unlimited) this.tokens = 0;
    else this.tokens = Math.min(this.tokens, this.burst);
  }

  private get unlimited(): boolean {
    return !(this.rate > 0) || !Number.isFinite(this.rate);
  }

  private get burst(): number {
    return Math.max(this.rate / 20, 16 * 1024);
  }

  private refill(): void {
    const now = performance.now();
    if (!this.unlimited) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Largest write that keeps the rate smooth: about 1/20 s of traffic. */
  get chunk(): number {
    return this.unlimited ? Infinity : Math.max(4096, Math.floor(this.rate / 20));
  }

  /** Take n tokens; resolves when the write may go ahead (or at once when the signal aborts). */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited) return;
    this.refill();
    this.tokens -= n;
    while (this.tokens < 0 && !signal?.aborted && !this.unlimited) {
      const waitMs = Math.min(1000, (-this.tokens / this.rate) * 1000);
      await sleep(Math.max(1, waitMs), signal);
      this.refill();
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
