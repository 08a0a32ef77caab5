/**
 * Where a tap's records go, appended synchronously and in order: a journal stream
 * on a file descriptor (standard output), or a journal store directory through its
 * Appender. Both encode each record once with a StreamWriter and write the parts
 * with writev, so a record is written in the same synchronous step that orders it.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import { DrError, fromSystemError } from '../errors.js';
import { StreamWriter, type RecordInput } from '../format/codec.js';
import type { SequencedRecord, VolumeRecord } from '../format/layout.js';
import type { Logger } from '../cli/log.js';
import { JournalStore, type Appender } from '../store/index.js';
import { writevAllSync } from '../store/files.js';

const fdatasync = promisify(fs.fdatasync);
const fsync = promisify(fs.fsync);

export interface VolumeDecl {
  name: string;
  size: number;
  blockSize: number;
  id: Buffer;
}

export interface JournalSink {
  readonly groupId: Buffer;
  /** seq the next record gets */
  readonly nextSeq: number;
  /** Encode and write one record now (synchronously); returns it with its seq and time. */
  append(input: RecordInput): SequencedRecord;
  /** Hand every record appended so far to the kernel, so a crash of this process cannot lose it (no fsync). */
  handOff(): void;
  /** Make every record appended so far durable. */
  sync(): Promise<void>;
  /** Finish the journal (the END trailer of a stream) and release it. */
  close(): Promise<void>;
  /** what it writes to, for messages */
  readonly what: string;
}

/** A journal stream written to a file descriptor (a pipe or a file). */
export class StreamSink implements JournalSink {
  readonly writer: StreamWriter;
  private readonly isFile: boolean;
  private failed: DrError | null = null;

  constructor(
    private readonly fd: number,
    readonly what: string,
    opts: { groupId: Buffer; firstSeq: number; volumes: VolumeDecl[] },
  ) {
    this.writer = new StreamWriter({ groupId: opts.groupId, firstSeq: opts.firstSeq });
    this.isFile = fs.fstatSync(fd).isFile();
    const parts = [this.writer.start()];
    for (const v of opts.volumes) parts.push(...this.writer.volume({ name: v.name, size: v.size, blockSize: v.blockSize, id: v.id }));
    this.write(parts);
  }

  get groupId(): Buffer {
    return this.writer.header.groupId;
  }
  get nextSeq(): number {
    return this.writer.nextSeq;
  }

  private write(parts: Buffer[]): void {
    if (this.failed) throw this.failed;
    try {
      writevAllSync(this.fd, parts);
    } catch (err) {
      this.failed = fromSystemError(err, `writing the journal stream to ${this.what}`);
      throw this.failed;
    }
  }

  append(input: RecordInput): SequencedRecord {
    if (this.failed) throw this.failed;
    const { record, parts } = this.writer.record(input);
    this.write(parts);
    return record;
  }

  handOff(): void {
    // every record was written to the descriptor as it was appended
  }

  async sync(): Promise<void> {
    if (this.failed) throw this.failed;
    // A pipe has nothing to sync: durability is the reader's (dr-journal append, dr-ship) once it has the bytes.
    if (!this.isFile) return;
    try {
      await fdatasync(this.fd);
    } catch (err) {
      throw fromSystemError(err, `syncing the journal stream to ${this.what}`);
    }
  }

  async close(): Promise<void> {
    if (this.failed) return;
    this.write(this.writer.end());
    if (this.isFile) await fsync(this.fd).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- journal store (src/store)

type StoreLike = JournalStore;
type AppenderLike = Appender;

/** Open the journal store in `dir` (creating it when absent). */
export function openStore(dir: string, log?: Logger): Promise<JournalStore> {
  return JournalStore.open(dir, { create: true, log });
}

/** Records appended to a journal store directory through its Appender. */
export class StoreSink implements JournalSink {
  private writer!: StreamWriter;
  private appender!: AppenderLike;

  private constructor(private readonly store: StoreLike, readonly what: string) {}

  static async open(store: StoreLike, dir: string, opts: { groupId: Buffer; volumes: VolumeDecl[] }): Promise<StoreSink> {
    const s = new StoreSink(store, `journal ${dir}`);
    s.appender = await store.appender();
    s.writer = new StreamWriter({ groupId: opts.groupId, firstSeq: s.appender.nextSeq });
    const volumes: VolumeRecord[] = opts.volumes.map((v, index) => ({
      type: 'volume', seq: 0, time: s.writer.header.created, index, blockSize: v.blockSize, size: v.size, id: v.id, name: v.name,
    }));
    s.writer.start();
    for (const v of opts.volumes) s.writer.volume({ name: v.name, size: v.size, blockSize: v.blockSize, id: v.id });
    s.appender.begin(s.writer.header, volumes);
    return s;
  }

  get groupId(): Buffer {
    return this.writer.header.groupId;
  }
  get nextSeq(): number {
    return this.writer.nextSeq;
  }

  append(input: RecordInput): SequencedRecord {
    const { record, parts } = this.writer.record(input);
    try {
      this.appender.append(record, parts);
    } catch (err) {
      // The store did not take it (a full disk, say): continue numbering from what it expects.
      const h = this.writer.header;
      this.writer = new StreamWriter({ groupId: h.groupId, firstSeq: this.appender.nextSeq, created: h.created });
      throw err instanceof DrError ? err : fromSystemError(err, `appending to ${this.what}`);
    }
    return record;
  }

  handOff(): void {
    try {
      this.appender.handOff();
    } catch (err) {
      throw err instanceof DrError ? err : fromSystemError(err, `writing ${this.what}`);
    }
  }

  sync(): Promise<void> {
    return this.appender.sync();
  }

  async close(): Promise<void> {
    await this.appender.close();
    await this.store.close();
  }
}
