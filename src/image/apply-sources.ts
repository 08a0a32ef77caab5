/**
 * Feeding the apply engine: from the bytes of a journal stream (a file or standard
 * input) or from a journal store directory (optionally following it). Both drivers
 * leave the replica checkpointed (durable and recorded) at a record boundary
 * whenever they return or throw an input error, and run a ticker that reports
 * status and checkpoints after a second of idle input.
 */
import { read, type Stats, fstatSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { DrError, fromSystemError } from '../errors.js';
import { StreamParser, type StreamItem } from '../format/codec.js';
import type { SequencedRecord, StreamHeader, VolumeRecord } from '../format/layout.js';
import type { Logger } from '../cli/log.js';
import { Applier } from './apply.js';

const READ_SIZE = 4 * 1024 * 1024;
/** write data the executor may have queued before the reader waits for it */
const MAX_QUEUED = 2 * READ_SIZE;
const IDLE_CHECKPOINT_MS = 1000;
const TICK_MS = 500;

export type StopReason = 'end' | 'until' | 'interrupted';

export interface DriveOptions {
  signal: AbortSignal;
  log: Logger;
  /** called about twice a second and once at the end, with input bytes read so far */
  tick?: (inputBytes: number) => void;
}

/** What a driver reports besides the applier's counters. */
export interface DriveResult {
  stop: StopReason;
  inputBytes: number;
}

/**
 * Periodic work while applying: status callbacks and the idle checkpoint. Its
 * checkpoint runs only between records (all apply work is synchronous), and an
 * error there is kept for the driver to throw.
 */
class Ticker {
  lastActivity = Date.now();
  error: unknown = null;
  inputBytes = 0;
  private timer: NodeJS.Timeout;
  /** called when the ticker fails (so a driver blocked on input wakes up) */
  onFail: (() => void) | null = null;

  constructor(private readonly applier: Applier, private readonly tick?: (inputBytes: number) => void) {
    this.timer = setInterval(() => this.onTimer(), TICK_MS);
  }

  private onTimer(): void {
    const a = this.applier;
    if (this.error === null && a.begun && !a.busy && a.appliedSeq !== a.durableSeq && Date.now() - this.lastActivity >= IDLE_CHECKPOINT_MS) {
      a.checkpoint().catch((err: unknown) => {
        this.error = err;
        this.onFail?.();
      });
    }
    this.tick?.(this.inputBytes);
  }

  throwIfFailed(): void {
    if (this.error !== null) throw this.error;
  }

  stop(): void {
    clearInterval(this.timer);
    this.tick?.(this.inputBytes);
  }
}

/**
 * Await `p`, or 'stopped' as soon as `stop` is called. (Not Promise.race against a
 * long-lived promise: every race would leave a reaction on it holding its result,
 * here a chunk of input, for as long as that promise lives.)
 */
class Waker {
  private wake: (() => void) | null = null;
  stopped = false;

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  wait<T>(p: Promise<T>): Promise<T | 'stopped'> {
    if (this.stopped) return Promise.resolve('stopped');
    return new Promise<T | 'stopped'>((res, rej) => {
      this.wake = () => res('stopped');
      p.then(res, rej);
    }).finally(() => {
      this.wake = null;
    });
  }
}

/**
 * Read buffers, used again once the parser and the applier are done with them (so
 * a long stream does not cost a fresh buffer, its page faults and its garbage
 * collection for every chunk). A chunk's buffer goes back to the pool when every
 * byte of it lies before the parser's offset (all its records decoded) and the
 * applier has written what it gathered.
 */
class ReadPool {
  private free: Buffer[] = [];
  private inUse: Array<{ buf: Buffer; end: number }> = [];
  private fed = 0;

  get(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
  }

  /** `n` bytes were read into `buf`: the chunk to parse. Short reads (pipes) are copied out so the buffer is free at once. */
  chunk(buf: Buffer, n: number): Buffer {
    this.fed += n;
    if (n >= READ_SIZE / 2) {
      this.inUse.push({ buf, end: this.fed });
      return buf.subarray(0, n);
    }
    const copy = Buffer.from(buf.subarray(0, n));
    this.free.push(buf);
    return copy;
  }

  /** Every input byte before `offset` is decoded and written. */
  release(offset: number): void {
    while (this.inUse.length > 0 && this.inUse[0]!.end <= offset) this.free.push(this.inUse.shift()!.buf);
  }
}

/**
 * Chunks of a file descriptor, read ahead one chunk (so reading overlaps applying).
 * Falls back to `fallback` if the descriptor is non-blocking.
 */
async function* readChunks(fd: number, pool: ReadPool, fallback: () => Readable): AsyncGenerator<Buffer> {
  const readOnce = (): Promise<Buffer> =>
    new Promise((res, rej) => {
      const buf = pool.get();
      read(fd, buf, 0, READ_SIZE, null, (err, n) => {
        if (err) rej(err);
        else res(pool.chunk(buf, n));
      });
    });
  let next = readOnce();
  next.catch(() => {});
  for (;;) {
    let chunk: Buffer;
    try {
      chunk = await next;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
        for await (const c of fallback()) yield c as Buffer;
        return;
      }
      throw fromSystemError(err, 'reading the input stream');
    }
    if (chunk.length === 0) return;
    next = readOnce();
    next.catch(() => {});
    yield chunk;
  }
}

export interface StreamInput {
  fd: number;
  name: string;
  /** a Readable over the same input, for descriptors that cannot be read with read(2) directly */
  fallback: () => Readable;
}

/** Size of the input if it is a regular file (for a progress bar with a total). */
export function inputSize(fd: number): number | null {
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch {
    return null;
  }
  return st.isFile() ? st.size : null;
}

/** Apply a journal stream read from `input`. */
export async function applyFromStream(applier: Applier, input: StreamInput, opts: DriveOptions): Promise<DriveResult> {
  const parser = new StreamParser();
  const ticker = new Ticker(applier, opts.tick);
  const waker = new Waker();
  const onAbort = () => waker.stop();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  if (opts.signal.aborted) waker.stop();
  ticker.onFail = onAbort;
  let header: StreamHeader | null = null;
  const items: StreamItem[] = [];
  const pool = new ReadPool();
  const chunks = readChunks(input.fd, pool, input.fallback);
  const begin = () => {
    if (!applier.begun && header) applier.begin(header.groupId, header.firstSeq, parser.volumes);
  };
  try {
    return await drive();
  } catch (err) {
    await applier.checkpointAfterError();
    throw annotate(err, applier, input.name);
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    ticker.stop();
    void chunks.return(undefined).catch(() => {});
  }

  async function drive(): Promise<DriveResult> {
    for (;;) {
      const next = await waker.wait(chunks.next());
      ticker.throwIfFailed();
      if (next === 'stopped' || opts.signal.aborted) {
        await applier.checkpoint();
        return { stop: 'interrupted', inputBytes: parser.offset };
      }
      if (next.done) break;
      items.length = 0;
      let inputError: unknown = null;
      try {
        parser.push(next.value, items);
      } catch (err) {
        inputError = err;
      }
      // Records decoded before a fault are good: apply them, then stop.
      for (const it of items) {
        if (it.type === 'header') header = it;
        else if (it.type === 'volume') continue;
        else {
          begin();
          if (it.type === 'end') continue;
          if (!applier.apply(it)) {
            await applier.checkpoint();
            return { stop: 'until', inputBytes: parser.offset };
          }
        }
      }
      // Written runs free their read buffers; decode the next chunk while these are written.
      applier.flushRun();
      const decoded = parser.offset;
      applier.afterQueued(() => pool.release(decoded));
      ticker.inputBytes = decoded;
      ticker.lastActivity = Date.now();
      if (inputError !== null) throw inputError;
      await applier.waitBelow(MAX_QUEUED);
    }
    begin();
    parser.finish();
    await applier.checkpoint();
    if (applier.begun && !applier.reachedUntil) checkUntilSeen(applier);
    return { stop: 'end', inputBytes: parser.offset };
  }
}

/** An --until point that the whole input never reached is an error (the replica is at the end of the input). */
function checkUntilSeen(applier: Applier): void {
  const u = applier.untilPoint;
  if (u.kind === 'latest' || u.kind === 'time') return;
  if (u.kind === 'seq' && applier.appliedSeq >= u.seq) return;
  const what = u.kind === 'seq' ? `seq:${u.seq}` : `mark:${u.name}`;
  throw new DrError('DR_BAD_POINT', `the input ended before ${what}: everything in it was applied`, { lastGoodSeq: applier.appliedSeq });
}

/** Add where the replica stands (and what to do next) to an input error. */
function annotate(err: unknown, applier: Applier, inputName: string): unknown {
  if (!(err instanceof DrError)) return err;
  const where = applier.begun ? `; ${applier.describe()}` : '';
  // Faults of the input itself (they carry a byte offset) name the input.
  const from = err.detail.offset !== undefined ? `${inputName}: ` : '';
  if (err.code === 'DR_TRUNCATED') {
    return new DrError('DR_TRUNCATED', `${from}${err.message}${where}; rerun with the rest of the stream to continue`, err.detail);
  }
  return new DrError(err.code, `${from}${err.message}${where}`, err.detail);
}

// ------------------------------------------------------------------ journal store

/** The part of the journal store API (src/store/) that dr-apply uses. */
export interface JournalSource {
  readonly dir: string;
  groupId: Buffer | null;
  volumes: VolumeRecord[];
  firstSeq: number;
  lastSeq: number;
  lastTime: number;
  close(): Promise<void>;
  records(opts?: { fromSeq?: number; untilSeq?: number; follow?: boolean; signal?: AbortSignal }): AsyncIterable<SequencedRecord>;
  resolvePoint(point: string): { seq: number; time: number };
}

/** Open a journal store read-only (the store code is loaded only for --journal). */
export async function openJournal(dir: string, log: Logger): Promise<JournalSource> {
  const { JournalStore } = await import('../store/index.js');
  return JournalStore.open(dir, { readOnly: true, log });
}

/**
 * Apply the records of a journal store from the replica's next seq; with `follow`,
 * keep applying new records as they are appended until the signal aborts.
 * `untilText` is the --until point, resolved against the store.
 */
export async function applyFromJournal(
  applier: Applier, store: JournalSource, opts: DriveOptions & { follow: boolean; untilText?: string },
): Promise<DriveResult> {
  if (!store.groupId) throw new DrError('DR_NO_STORE', `journal store ${store.dir} is empty: nothing to apply yet`);
  let untilSeq: number | undefined;
  if (opts.untilText !== undefined && opts.untilText !== 'latest') untilSeq = store.resolvePoint(opts.untilText).seq;
  else if (!opts.follow) untilSeq = store.lastSeq;
  try {
    applier.begin(store.groupId, store.firstSeq, store.volumes);
  } catch (err) {
    if (err instanceof DrError && err.code === 'DR_SEQ_GAP' && store.firstSeq > 1) {
      throw new DrError('DR_OUTSIDE_WINDOW', `${err.message} (journal store ${store.dir} holds seq ${store.firstSeq}..${store.lastSeq}: older records were folded into its base images)`, err.detail);
    }
    throw err;
  }
  if (untilSeq !== undefined && untilSeq < applier.appliedSeq) {
    throw new DrError('DR_BAD_POINT', `the replica is already at seq ${applier.appliedSeq}, past ${opts.untilText ?? `seq:${untilSeq}`} (seq ${untilSeq}; a replica cannot go back: use dr-restore)`);
  }
  if (untilSeq !== undefined) applier.limitToSeq(untilSeq);
  const ticker = new Ticker(applier, opts.tick);
  const internal = new AbortController();
  const onAbort = () => internal.abort();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  ticker.onFail = () => internal.abort();
  try {
    if (untilSeq === undefined || untilSeq > applier.appliedSeq) {
      const iter = store.records({ fromSeq: applier.appliedSeq + 1, untilSeq, follow: opts.follow, signal: internal.signal });
      for await (const rec of iter) {
        ticker.throwIfFailed();
        if (opts.signal.aborted) break;
        if (!applier.apply(rec)) break;
        ticker.lastActivity = Date.now();
        if (applier.queuedBytes > MAX_QUEUED) await applier.waitBelow(MAX_QUEUED);
        if (store.lastTime > applier.newestTime) applier.newestTime = store.lastTime;
      }
    }
    ticker.throwIfFailed();
    await applier.checkpoint();
    if (opts.signal.aborted) return { stop: 'interrupted', inputBytes: 0 };
    if (untilSeq !== undefined && applier.appliedSeq < untilSeq) {
      throw new DrError('DR_TRUNCATED', `journal store ${store.dir} ended at seq ${applier.appliedSeq} before seq ${untilSeq}; ${applier.describe()}`, { lastGoodSeq: applier.appliedSeq });
    }
    return { stop: applier.reachedUntil || untilSeq !== undefined ? 'until' : 'end', inputBytes: 0 };
  } catch (err) {
    await applier.checkpointAfterError();
    throw err;
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    ticker.stop();
  }
}
