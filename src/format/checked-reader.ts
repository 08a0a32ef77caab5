/**
 * A large stream file read on a second thread, with its record CRCs checked there.
 * CRC-32 of every byte is about a quarter of what appending a stream costs the main
 * thread, and handing each read to the thread pool costs the main thread about as much
 * as the read itself on this kind of machine (a wake-up of another CPU per request), so
 * the worker does both: it reads the file into a ring of shared buffers, checks each
 * chunk's records (RecordCrcWalker), and the main thread gets chunks already read with
 * the stream offset up to which every record's CRCs match, for its parser's
 * trustChecksumsBelow(). Anything the worker cannot vouch for is left to the parser,
 * which then checks and reports exactly as without it.
 */
import { Worker } from 'node:worker_threads';
import { fromSystemError } from '../errors.js';

export interface CheckedChunk {
  chunk: Buffer;
  /** every record ending at or before this stream offset has matching CRCs */
  verifiedEnd: number;
}

type Reply = { k: number; n: number; verifiedEnd: number } | { k: number; error: { message: string; code?: string; errno?: number; syscall?: string } };

export class CheckedFileReader {
  private readonly worker: Worker;
  private readonly bufs: Buffer[];
  private readonly ctrl: Int32Array;
  private readonly replies: Reply[] = [];
  private wake: (() => void) | null = null;
  private dead: Error | null = null;
  private stopped = false;

  /**
   * `fd` is read from its current position. `buffers` chunks of `chunkSize` bytes are in
   * use at once: a chunk's memory is read into again once release() was called for it.
   */
  constructor(fd: number, private readonly name: string, chunkSize: number, buffers: number) {
    const shared = Array.from({ length: buffers }, () => new SharedArrayBuffer(chunkSize));
    this.bufs = shared.map((b) => Buffer.from(b));
    const control = new SharedArrayBuffer(12);
    this.ctrl = new Int32Array(control);
    this.worker = new Worker(new URL('./checked-reader-worker.js', import.meta.url), { workerData: { fd, buffers: shared, control } });
    this.worker.on('message', (r: Reply) => this.arrived(r));
    this.worker.on('error', (err) => this.died(err));
    this.worker.on('exit', () => this.died(new Error('reader thread exited')));
  }

  private arrived(r: Reply): void {
    this.replies.push(r);
    this.wake?.();
  }

  private died(err: Error): void {
    this.dead ??= err;
    this.wake?.();
  }

  /** The chunks in file order; each must be release()d, in order, once nothing uses its memory. */
  async *chunks(): AsyncGenerator<CheckedChunk> {
    for (;;) {
      while (this.replies.length === 0) {
        if (this.dead && !this.stopped) throw fromSystemError(this.dead, `cannot read ${this.name}`);
        if (this.stopped) return;
        await new Promise<void>((resolve) => { this.wake = resolve; });
        this.wake = null;
      }
      const r = this.replies.shift()!;
      if ('error' in r) throw fromSystemError(Object.assign(new Error(r.error.message), r.error), `cannot read ${this.name}`);
      if (r.n === 0) return;
      yield { chunk: this.bufs[r.k % this.bufs.length]!.subarray(0, r.n), verifiedEnd: r.verifiedEnd };
    }
  }

  /** The oldest chunk not yet released may be read into again. */
  release(): void {
    Atomics.add(this.ctrl, 0, 1);
    // waking a sleeping thread costs ~80 us here: only when it waits for this
    if (Atomics.load(this.ctrl, 2) !== 0) Atomics.notify(this.ctrl, 0);
  }

  async close(): Promise<void> {
    this.stopped = true;
    Atomics.store(this.ctrl, 1, 1);
    Atomics.notify(this.ctrl, 0);
    this.wake?.();
    await this.worker.terminate();
  }
}
