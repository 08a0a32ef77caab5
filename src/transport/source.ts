/**
 * What dr-ship send reads: a journal store directory (resumable from any seq the
 * store still holds, optionally following new records) or a stream on standard
 * input (records kept in a bounded buffer until the receiver acknowledges them).
 */
import type { Readable } from 'node:stream';
import { DrError } from '../errors.js';
import { encodeRecord, type StreamHeader } from '../format/layout.js';
import { nowMicros } from '../format/codec.js';
import { JournalStore } from '../store/index.js';
import type { Logger } from '../cli/log.js';
import { sleep } from './rate.js';
import { RecordFramer, type FramedItem, type RawRecord } from './framer.js';
import { SealedSlices } from './sealed-slices.js';

/** Records to be put into a new stream by the sender (standard input). */
export interface RecordRead {
  kind: 'records';
  header: Omit<StreamHeader, 'type' | 'firstSeq'>;
  volumes: RawRecord[];
  /** records from the requested seq on; ends when the source has nothing more to give */
  records: AsyncIterable<RawRecord>;
}

/**
 * A journal store's records from the requested seq: first those of its sealed
 * segments, in large slices sent as they are stored (sealed-slices.ts), then the
 * rest through the store's own reader (following the appender with --follow), which
 * gives a complete stream: the sender uses its records only.
 */
export interface StoreRead {
  kind: 'store';
  header: Omit<StreamHeader, 'type' | 'firstSeq'>;
  volumes: RawRecord[];
  sealed: SealedSlices;
  /** the stream from seq `sealed.endSeq` on (called once the sealed slices are done) */
  rest(): AsyncIterable<Buffer>;
  /** the store's last seq when reading started (for the progress bar's total) */
  lastSeq: number;
  /** stop reading (the connection is gone) */
  close(): Promise<void>;
}

export type SourceRead = RecordRead | StoreRead;

export interface ShipSource {
  readonly name: string;
  /** Start reading at fromSeq; null when there is nothing at all to ship (an empty store). */
  open(fromSeq: number, signal: AbortSignal): Promise<SourceRead | null>;
  /** Everything up to seq is durable on the receiver: buffered copies may go. */
  acked(seq: number): void;
  /** Called with each record as it is first read (for the lag). */
  onRecord?: (seq: number, time: number) => void;
  /** An input fault found after the valid prefix was shipped (stdin cut short or corrupt). */
  readonly inputError: DrError | null;
  /** Nothing left unread: a stop signal loses nothing (a store keeps its records anyway). */
  readonly complete: boolean;
  close(): Promise<void>;
}

export class StoreSource implements ShipSource {
  readonly inputError = null;
  readonly complete = true;
  onRecord?: (seq: number, time: number) => void;
  constructor(
    readonly dir: string,
    private readonly follow: boolean,
    private readonly log: Logger,
  ) {}

  get name(): string {
    return this.dir;
  }

  async open(fromSeq: number, signal: AbortSignal): Promise<SourceRead | null> {
    // A fresh view per connection: another process may have appended since.
    let store = await JournalStore.open(this.dir, { readOnly: true, log: this.log });
    // Following a store that holds nothing yet: wait for its first stream.
    while (store.groupId === null && this.follow && !signal.aborted) {
      await store.close();
      await sleep(1000, signal);
      store = await JournalStore.open(this.dir, { readOnly: true, log: this.log });
    }
    if (signal.aborted) {
      await store.close();
      return null;
    }
    let closed = false;
    const closeStore = async () => {
      if (!closed) {
        closed = true;
        await store.close();
      }
    };
    try {
      if (store.groupId === null) {
        await closeStore();
        return null;
      }
      if (fromSeq - 1 > store.lastSeq && store.groupId !== null) {
        throw new DrError('DR_CONFLICT', `the receiver already has seq ${fromSeq - 1}, beyond the last seq ${store.lastSeq} of ${this.dir}: it is not a replica of this journal`);
      }
      if (!this.follow && fromSeq > store.lastSeq) {
        await closeStore();
        return null;
      }
      if (fromSeq < store.firstSeq) {
        throw new DrError('DR_OUTSIDE_WINDOW', `the receiver needs seq ${fromSeq} onwards, but ${this.dir} only holds seq ${store.firstSeq}..${store.lastSeq} (older records were pruned)`);
      }
    } catch (err) {
      await closeStore();
      throw err;
    }
    const groupId = store.groupId;
    const sealed = new SealedSlices(store, fromSeq, signal);
    let stream: Readable | null = null;
    const close = async () => {
      stream?.destroy();
      await sealed.close();
      await closeStore();
    };
    const follow = this.follow;
    async function* rest(): AsyncGenerator<Buffer> {
      stream = store.catStream({ fromSeq: sealed.endSeq, follow, signal, pollMs: 25 });
      stream.on('error', () => {
        /* reported through the iterator */
      });
      try {
        for await (const c of stream) yield c as Buffer;
      } finally {
        await close();
      }
    }
    const volumes = store.volumes.map((v): RawRecord => {
      const parts = encodeRecord(v);
      return { seq: 0, time: v.time, parts, length: parts.reduce((n, p) => n + p.length, 0) };
    });
    return {
      kind: 'store', header: { groupId, created: nowMicros(), compatFeatures: 0 }, volumes, sealed, rest,
      lastSeq: store.lastSeq, close,
    };
  }

  acked(): void {}

  async close(): Promise<void> {}
}

/**
 * A stream on standard input. Records stay buffered until acknowledged so a new
 * connection can resend them; when the buffer holds --buffer bytes, reading stops
 * (the writer into our stdin blocks) until acknowledgements free room. Nothing is
 * ever dropped unacknowledged.
 */
export class StdinSource implements ShipSource {
  readonly name = 'standard input';
  onRecord?: (seq: number, time: number) => void;
  inputError: DrError | null = null;
  private header: StreamHeader | null = null;
  private volumes: RawRecord[] = [];
  private buffer: RawRecord[] = [];
  private head = 0;
  private bytes = 0;
  private done = false;
  private volumesComplete = false;
  private waiters: Array<() => void> = [];
  private paused = false;
  private ackedSeq = 0;
  /** the highest buffered byte count seen (reported in status) */
  peakBytes = 0;

  constructor(
    private readonly input: Readable,
    private readonly limit: number,
  ) {
    const framer = new RecordFramer();
    const out: FramedItem[] = [];
    input.on('data', (chunk: Buffer) => {
      if (this.done) return;
      try {
        framer.push(chunk, out);
      } catch (err) {
        this.take(out);
        this.finish(err instanceof DrError ? err : new DrError('DR_IO', `reading standard input: ${(err as Error).message}`));
        return;
      }
      this.take(out);
      if (this.bytes >= this.limit && !this.paused) {
        this.paused = true;
        input.pause();
      }
    });
    input.on('end', () => {
      if (this.done) return;
      if (!framer.ended) {
        const what = framer.header === null ? 'no stream header' : framer.pendingBytes > 0 ? `a truncated record after seq ${framer.lastSeq}` : `no END trailer after seq ${framer.lastSeq}`;
        this.finish(new DrError('DR_TRUNCATED', `standard input ended with ${what}; the records before it were shipped`, { lastGoodSeq: framer.lastSeq }));
      } else this.finish(null);
    });
    input.on('error', (err) => this.finish(new DrError('DR_IO', `reading standard input: ${err.message}`)));
  }

  private take(items: FramedItem[]): void {
    for (const it of items) {
      if (it.kind === 'header') this.header = it.header;
      else if (it.kind === 'volume') this.volumes.push(it.record);
      else if (it.kind === 'record') {
        this.volumesComplete = true;
        if (it.record.seq <= this.ackedSeq) continue;
        this.buffer.push(it.record);
        this.bytes += it.record.length;
        if (this.bytes > this.peakBytes) this.peakBytes = this.bytes;
        this.onRecord?.(it.record.seq, it.record.time);
      } else this.volumesComplete = true;
    }
    items.length = 0;
    this.wake();
  }

  private finish(err: DrError | null): void {
    this.done = true;
    this.volumesComplete = true;
    this.inputError = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async open(fromSeq: number, signal: AbortSignal): Promise<SourceRead | null> {
    while (!this.volumesComplete && !signal.aborted) await this.wait(signal);
    if (signal.aborted) return null;
    if (!this.header) {
      if (this.inputError) throw this.inputError;
      return null;
    }
    const header = this.header;
    if (fromSeq < header.firstSeq) {
      throw new DrError('DR_SEQ_GAP', `the receiver has records up to seq ${fromSeq - 1}, but the stream on standard input starts at seq ${header.firstSeq}`);
    }
    const first = this.buffer[this.head];
    if (first && fromSeq < first.seq) {
      throw new DrError('DR_SEQ_GAP', `the receiver asks for seq ${fromSeq} onwards, but it acknowledged up to seq ${first.seq - 1} before: its store lost records`);
    }
    const self = this;
    async function* records(): AsyncGenerator<RawRecord> {
      let next = fromSeq;
      for (;;) {
        if (signal.aborted) return;
        const start = self.buffer[self.head];
        if (start && next < start.seq) next = start.seq;
        const idx = start ? self.head + (next - start.seq) : -1;
        const rec = idx >= self.head ? self.buffer[idx] : undefined;
        if (rec) {
          next++;
          yield rec;
          continue;
        }
        if (self.done) return;
        await self.wait(signal);
      }
    }
    return { kind: 'records', header: { groupId: header.groupId, created: header.created, compatFeatures: header.compatFeatures }, volumes: this.volumes, records: records() };
  }

  acked(seq: number): void {
    if (seq > this.ackedSeq) this.ackedSeq = seq;
    while (this.head < this.buffer.length && this.buffer[this.head]!.seq <= seq) {
      this.bytes -= this.buffer[this.head]!.length;
      this.buffer[this.head] = undefined as unknown as RawRecord;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.buffer.length) {
      this.buffer = this.buffer.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.bytes < this.limit) {
      this.paused = false;
      this.input.resume();
    }
  }

  /** All input read (and every record acknowledged, as the sender only stops then). */
  get complete(): boolean {
    return this.done && this.head >= this.buffer.length;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  async close(): Promise<void> {
    this.input.pause();
  }
}
