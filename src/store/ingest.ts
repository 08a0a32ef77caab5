/**
 * A journal stream's bytes, chunk by chunk, into a store: decoded and checked by a
 * StreamParser into RecordViews (numbers and places, no record objects), each record
 * appended as it was received (the appender keeps the chunk's memory, nothing is
 * copied) and written out on the thread pool while the caller reads and decodes the
 * next chunk. Used by `dr-journal append` and `dr-ship receive`;
 * when to make records durable (sync) is theirs to decide.
 */
import { StreamParser } from '../format/codec.js';
import { RecordType, type StreamHeader } from '../format/layout.js';
import { RecordViews } from '../format/record-views.js';
import type { Appender } from './appender.js';

/** decoded bytes held back to be handed over together */
const BATCH = 1 << 20;
/** longest a decoded record is held back (a FLUSH in it waits that long for its sync) */
const HOLD_MS = 5;

export interface IngestHooks {
  /** may refuse a stream (throw) before any of its records is appended */
  onHeader?(h: StreamHeader): void;
  /** a FLUSH or MARK was handed to the appender: a point to make durable */
  onPoint?(): void;
  /** a hand-over that ran by itself (held records, input quiet) failed */
  onError?(err: unknown): void;
}

export class StreamIngest {
  readonly parser = new StreamParser();
  header: StreamHeader | null = null;
  /** records appended (new to the store) and skipped (already stored, identical) */
  appended = 0;
  skipped = 0;
  firstAppended: number | null = null;
  /** seq of the last record taken (appended or skipped), 0 if none */
  lastSeq = 0;
  /** bytes of the records taken */
  bytes = 0;
  private begun = false;
  private writing: Promise<void> = Promise.resolve();
  private handing: Promise<unknown> = Promise.resolve();
  /** records decoded and not yet handed to the appender */
  private readonly views = new RecordViews();
  /** bytes decoded into items not yet handed to the appender, and since when */
  private decoded = 0;
  private heldSince = 0;
  private holdTimer: NodeJS.Timeout | null = null;

  constructor(private readonly app: Appender, private readonly hooks: IngestHooks = {}) {}

  /**
   * Decode `chunk` and append its records. From small reads (a pipe gives 64 KiB at a
   * time), records are held back until BATCH bytes of them were decoded or the oldest
   * was held HOLD_MS, so the appender writes out once per batch, not once per read; with
   * `reused` (memory the caller refills) they are handed over at once. Resolves when
   * nothing more is to be done for this chunk (with `reused`, the caller may then refill
   * its chunk before this one: its bytes are written). `verifiedEnd`: the records ending
   * before this stream offset had their CRCs checked (CheckedFileReader). A bad record
   * throws after the records before it were appended.
   */
  async push(chunk: Buffer, opts: { verifiedEnd?: number; reused?: boolean } = {}): Promise<void> {
    if (opts.verifiedEnd !== undefined) this.parser.trustChecksumsBelow(opts.verifiedEnd);
    const before = this.parser.offset;
    let bad: unknown = null;
    try {
      this.parser.pushViews(chunk, this.views);
    } catch (err) {
      bad = err;
    }
    // the parser copies an incomplete record it holds, so reused memory may be refilled
    if (opts.reused) this.parser.detach();
    if (this.decoded === 0) this.heldSince = Date.now();
    this.decoded += this.parser.offset - before;
    if (bad === null && !opts.reused && this.decoded < BATCH && Date.now() - this.heldSince < HOLD_MS) {
      if (this.decoded > 0) this.holdTimer ??= setTimeout(() => this.flush().catch((err: unknown) => this.hooks.onError?.(err)), HOLD_MS).unref();
      return;
    }
    await this.handOver();
    if (bad) throw bad;
  }

  /** Hand the records decoded so far to the appender. */
  flush(): Promise<void> {
    return this.handOver();
  }

  /** One hand-over at a time (a flush() may come while a push() waits for the write before it), in order. */
  private handOver(): Promise<void> {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const run = async (): Promise<void> => {
      await this.writing;
      if (this.views.length === 0) return;
      let point = false;
      try {
        point = this.take();
      } finally {
        this.views.clear();
        this.decoded = 0;
        this.writing = this.app.writeOut();
        this.writing.catch(() => undefined); // awaited by the next hand-over or finish()
      }
      if (point) this.hooks.onPoint?.();
    };
    const next = this.handing.then(run);
    this.handing = next.catch(() => undefined);
    return next;
  }

  private take(): boolean {
    let point = false;
    const views = this.views;
    for (let i = 0; i < views.length; i++) {
      const v = views.list[i]!;
      const item = v.item;
      if (item === null || (item.type !== 'header' && item.type !== 'volume' && item.type !== 'end')) {
        // a sequenced record
        this.begin();
        if (this.app.appendView(v)) {
          this.appended++;
          this.firstAppended ??= v.seq;
          if (v.code === RecordType.FLUSH || v.code === RecordType.MARK) point = true;
        } else this.skipped++;
        this.lastSeq = v.seq;
        this.bytes += v.total;
      } else if (item.type === 'header') {
        this.hooks.onHeader?.(item);
        this.header = item;
      } else if (item.type === 'end') this.begin();
    }
    return point;
  }

  private begin(): void {
    if (this.begun) return;
    this.app.begin(this.header!, this.parser.volumes);
    this.begun = true;
  }

  /** The stream ended with its END trailer. */
  get ended(): boolean {
    return this.parser.ended;
  }

  /** Hand over what was decoded and wait until it is written out (not yet durable: that is the appender's sync()). */
  async written(): Promise<void> {
    await this.flush();
    await this.writing;
  }

  /** At the end of input: written(), then the stream must be complete (DR_TRUNCATED otherwise). */
  async finish(): Promise<void> {
    await this.written();
    if (this.header) this.begin(); // a stream of no records still declares its group and volumes
    this.parser.finish();
  }
}
