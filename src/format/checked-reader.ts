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
 *
 * A worker thread takes 25-70 ms to start here. Until it is up, the main thread reads
 * and walks the first chunks itself (a head start, at most HEAD_START_MAX bytes), then
 * hands the worker the reading: the number of chunks read and the walk's state. A file
 * small enough to be through in about that time is read on the main thread alone, and no
 * worker is started.
 */
import { fstatSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { fromSystemError } from '../errors.js';
import { RecordCrcWalker } from './crc-walker.js';
import { CTRL, readChunk } from './checked-reader-shared.js';

/** files up to this size are read on the main thread only */
const NO_WORKER_BELOW = 16 << 20;
/** the most the main thread reads before it waits for the reader thread to take over */
const HEAD_START_MAX = 64 << 20;

export interface CheckedChunk {
  chunk: Buffer;
  /** every record ending at or before this stream offset has matching CRCs */
  verifiedEnd: number;
}

type Reply = { k: number; n: number; verifiedEnd: number } | { k: number; error: { message: string; code?: string; errno?: number; syscall?: string } };

export class CheckedFileReader {
  private readonly worker: Worker | null = null;
  private readonly bufs: Buffer[];
  private readonly ctrl: Int32Array;
  private readonly replies: Reply[] = [];
  private wake: (() => void) | null = null;
  private dead: Error | null = null;
  private stopped = false;
  /** the walk of the head start; null once the worker reads */
  private walker: RecordCrcWalker | null = new RecordCrcWalker();
  /** chunks and bytes read by the head start */
  private readHere = 0;
  private readHereBytes = 0;

  /**
   * `fd` is read from its current position. `buffers` chunks of `chunkSize` bytes are in
   * use at once: a chunk's memory is read into again once release() was called for it.
   */
  constructor(private readonly fd: number, private readonly name: string, private readonly chunkSize: number, buffers: number) {
    const shared = Array.from({ length: buffers }, () => new SharedArrayBuffer(chunkSize));
    this.bufs = shared.map((b) => Buffer.from(b));
    const control = new SharedArrayBuffer(CTRL.size * 4);
    this.ctrl = new Int32Array(control);
    if (fileSize(fd) <= NO_WORKER_BELOW) return;
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

  private nextEvent(): Promise<void> {
    return new Promise<void>((resolve) => { this.wake = resolve; }).then(() => { this.wake = null; });
  }

  /** The chunks in file order; each must be release()d, in order, once nothing uses its memory. */
  async *chunks(): AsyncGenerator<CheckedChunk> {
    while (this.walker !== null) {
      if (this.stopped) return;
      // no thread (a small file) or a thread that could not start: this one reads it all
      const thread = this.worker !== null && this.dead === null;
      if (thread && Atomics.load(this.ctrl, CTRL.ready) === 1) {
        this.handOver();
        break;
      }
      const ringFull = this.readHere - Atomics.load(this.ctrl, CTRL.released) >= this.bufs.length;
      if (ringFull && !thread) throw new Error('CheckedFileReader: every buffer is held and no reader thread can wait for one');
      if (ringFull || (thread && this.readHere * this.chunkSize >= HEAD_START_MAX)) {
        await sleep(1); // the reader thread is about to take over
        continue;
      }
      const c = this.readChunkHere();
      if (c === null) return;
      yield c;
    }
    for (;;) {
      while (this.replies.length === 0) {
        if (this.dead && !this.stopped) throw fromSystemError(this.dead, `cannot read ${this.name}`);
        if (this.stopped) return;
        await this.nextEvent();
      }
      const r = this.replies.shift()!;
      if ('error' in r) throw fromSystemError(Object.assign(new Error(r.error.message), r.error), `cannot read ${this.name}`);
      if (r.n === 0) return;
      yield { chunk: this.bufs[r.k % this.bufs.length]!.subarray(0, r.n), verifiedEnd: r.verifiedEnd };
    }
  }

  /** For diagnostics: bytes read on this thread, and whether a reader thread read the rest. */
  get readAt(): { mainThreadBytes: number; readerThread: boolean } {
    return { mainThreadBytes: this.readHereBytes, readerThread: this.walker === null };
  }

  /** Head start: read and walk the next chunk on this thread; null at the end of the file. */
  private readChunkHere(): CheckedChunk | null {
    const buf = this.bufs[this.readHere % this.bufs.length]!;
    let read: { n: number; verifiedEnd: number };
    try {
      read = readChunk(this.fd, buf, this.walker!);
    } catch (err) {
      throw fromSystemError(err, `cannot read ${this.name}`);
    }
    if (read.n === 0) return null;
    this.readHere++;
    this.readHereBytes += read.n;
    return { chunk: buf.subarray(0, read.n), verifiedEnd: read.verifiedEnd };
  }

  /** The worker reads from here on: the file position is past the chunks read here, the walk goes on where it stands. */
  private handOver(): void {
    this.worker!.postMessage({ k: this.readHere, walker: this.walker!.state() });
    this.walker = null;
    Atomics.store(this.ctrl, CTRL.handedOver, 1);
    Atomics.notify(this.ctrl, CTRL.handedOver);
  }

  /** The oldest chunk not yet released may be read into again. */
  release(): void {
    Atomics.add(this.ctrl, CTRL.released, 1);
    // waking a sleeping thread costs ~80 us here: only when it waits for this
    if (Atomics.load(this.ctrl, CTRL.waiting) !== 0) Atomics.notify(this.ctrl, CTRL.released);
  }

  async close(): Promise<void> {
    this.stopped = true;
    Atomics.store(this.ctrl, CTRL.stop, 1);
    Atomics.compareExchange(this.ctrl, CTRL.handedOver, 0, 2);
    Atomics.notify(this.ctrl, CTRL.released);
    Atomics.notify(this.ctrl, CTRL.handedOver);
    this.wake?.();
    await this.worker?.terminate();
  }
}

function fileSize(fd: number): number {
  try {
    return fstatSync(fd).size;
  } catch {
    return Infinity;
  }
}
