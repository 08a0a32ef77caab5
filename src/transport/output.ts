/**
 * The sender's side of the pipe into COMMAND: batches record pieces into large
 * writes (one writev per batch), compresses batches into frames when brotli was
 * negotiated, honours the rate limit, and keeps up to IN_FLIGHT bytes queued on the
 * pipe (backpressure), giving up at once when the connection is abandoned.
 *
 * Why a budget and not 'drain': the pipe (a socket pair) holds only about 200 KiB,
 * which ssh empties in half a millisecond. Waiting for 'drain' after each batch means
 * the pipe runs dry while the next batch is prepared, and ssh idles; with several MiB
 * queued, libuv refills the pipe whenever the event loop is free.
 */
import type { Writable } from 'node:stream';
import { setImmediate as setImmediateP } from 'node:timers/promises';
import { FRAME_MAX, encodeFrames } from './compress.js';
import type { Codec } from './protocol.js';
import type { TokenBucket } from './rate.js';

const BATCH = 1024 * 1024;
/** bytes handed to the pipe and not yet taken by it before writing waits */
const IN_FLIGHT = 8 * 1024 * 1024;

export interface WireCounters {
  /** stream bytes handed to the output */
  streamBytes: number;
  /** bytes written into the pipe (after compression) */
  wireBytes: number;
}

export class WireOutput {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private inFlight = 0;
  private room: (() => void) | null = null;

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

  /**
   * Send one large buffer of whole records (after what is batched); `written` is
   * called once the pipe has taken all of it, so its memory may be reused.
   */
  async writeSlice(bytes: Buffer, onWritten: () => void): Promise<void> {
    let called = false;
    const written = () => {
      if (!called) {
        called = true;
        onWritten();
      }
    };
    await this.flush();
    this.counters.streamBytes += bytes.length;
    // Compression is done a MiB at a time with a turn of the event loop in between, so
    // libuv refills the pipe while the next MiB is compressed.
    const step = this.codec === 'brotli' ? BATCH : Math.min(BATCH * 4, this.bucket.chunk);
    for (let off = 0; off < bytes.length && !this.signal.aborted; off += step) {
      const piece = bytes.subarray(off, Math.min(bytes.length, off + step));
      const last = off + step >= bytes.length;
      if (this.codec === 'brotli') {
        if (off > 0) await setImmediateP();
        await this.send(await encodeFrames(piece), last ? written : undefined);
      } else await this.send([piece], last ? written : undefined);
    }
    if (this.signal.aborted) written();
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

  private async send(pieces: Buffer[], written?: () => void): Promise<void> {
    let n = 0;
    for (const p of pieces) n += p.length;
    await this.bucket.take(n, this.signal);
    if (this.signal.aborted || this.sink.destroyed) {
      written?.();
      return;
    }
    this.inFlight += n;
    // Writes complete in order: the last piece's callback means the pipe took them all.
    const taken = () => {
      this.inFlight -= n;
      written?.();
      if (this.inFlight <= IN_FLIGHT) this.room?.();
    };
    this.sink.cork();
    for (let i = 0; i < pieces.length; i++) {
      if (i === pieces.length - 1) this.sink.write(pieces[i]!, taken);
      else this.sink.write(pieces[i]!);
    }
    this.sink.uncork();
    this.counters.wireBytes += n;
    if (this.inFlight > IN_FLIGHT) await this.roomFor();
  }

  private roomFor(): Promise<void> {
    return new Promise((resolve) => {
      if (this.signal.aborted || this.sink.destroyed) return resolve();
      const done = () => {
        this.room = null;
        this.sink.off('close', done);
        this.signal.removeEventListener('abort', done);
        resolve();
      };
      this.room = done;
      this.sink.on('close', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }
}
