/**
 * The sender's side of the pipe into COMMAND: batches record pieces into large
 * writes (one writev per batch), compresses batches into frames when brotli was
 * negotiated, honours the rate limit, and waits for the pipe to drain
 * (backpressure), giving up at once when the connection is abandoned.
 */
import type { Writable } from 'node:stream';
import { FRAME_MAX, encodeFrames } from './compress.js';
import type { Codec } from './protocol.js';
import type { TokenBucket } from './rate.js';

const BATCH = 1024 * 1024;

export interface WireCounters {
  /** stream bytes handed to the output */
  streamBytes: number;
  /** bytes written into the pipe (after compression) */
  wireBytes: number;
}

export class WireOutput {
  private batch: Buffer[] = [];
  private batchBytes = 0;

  constructor(
    private readonly sink: Writable,
    private readonly codec: Codec,
    private readonly bucket: TokenBucket,
    private readonly signal: AbortSignal,
    readonly counters: WireCounters,
  ) {}

  /** Queue pieces; writes out when a batch is full. */
  async write(parts: Buffer[]): Promise<void> {
    for (const p of parts) {
      if (p.length === 0) continue;
      this.batch.push(p);
      this.batchBytes += p.length;
      this.counters.streamBytes += p.length;
      if (this.batchBytes >= Math.min(BATCH, this.bucket.chunk)) await this.flush();
    }
  }

  /** Write out whatever is queued. */
  async flush(): Promise<void> {
    while (this.batchBytes > 0 && !this.signal.aborted) {
      const limit = this.codec === 'brotli' ? FRAME_MAX : Math.min(BATCH * 4, this.bucket.chunk);
      const pieces = this.takeUpTo(limit);
      if (this.codec === 'brotli') {
        const raw = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
        await this.send(await encodeFrames(raw));
      } else {
        await this.send(pieces);
      }
    }
  }

  private takeUpTo(limit: number): Buffer[] {
    const out: Buffer[] = [];
    let n = 0;
    while (this.batch.length && n < limit) {
      const p = this.batch[0]!;
      if (n + p.length <= limit) {
        out.push(p);
        n += p.length;
        this.batch.shift();
      } else {
        out.push(p.subarray(0, limit - n));
        this.batch[0] = p.subarray(limit - n);
        n = limit;
      }
    }
    this.batchBytes -= n;
    return out;
  }

  private async send(pieces: Buffer[]): Promise<void> {
    let n = 0;
    for (const p of pieces) n += p.length;
    await this.bucket.take(n, this.signal);
    if (this.signal.aborted) return;
    let ok = true;
    this.sink.cork();
    for (const p of pieces) ok = this.sink.write(p);
    this.sink.uncork();
    this.counters.wireBytes += n;
    if (!ok) await this.drained();
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      if (this.signal.aborted || this.sink.destroyed) return resolve();
      const done = () => {
        this.sink.off('drain', done);
        this.sink.off('close', done);
        this.signal.removeEventListener('abort', done);
        resolve();
      };
      this.sink.on('drain', done);
      this.sink.on('close', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }
}
