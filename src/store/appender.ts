/**
 * The single appender of a store: takes the append lock, continues the open
 * segment (or starts one), appends records synchronously through a 1 MiB staging
 * buffer (or, with appendView(), straight from the caller's memory, written by
 * writeOut() on the thread pool while the caller decodes its next chunk), seals full
 * segments (END, fdatasync, index file) and makes everything durable on sync():
 * fdatasync of the segment, then the `durable` hint file.
 * A record already stored is compared with the stored one (its 32-byte record
 * header, which carries the CRC of the whole record) and skipped; a gap or a
 * different record is refused before anything is written.
 */
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { DrError, fromSystemError } from '../errors.js';
import {
  RECORD_HEADER_SIZE, RecordType, encodeRecord, idToString, recordFields, type MarkRecord, type RecordFields, type SequencedRecord,
  type StreamHeader, type VolumeRecord,
} from '../format/layout.js';
import type { RecordView } from '../format/record-views.js';
import { nowMicros } from '../format/codec.js';
import { byteLength, preadSync, tempPath, writeFileDurable, writeFileDurableAsync, fsyncDir, fsyncDirAsync, writevAll, writevAllSync } from './files.js';
import { PendingWrites } from './pending-writes.js';
import { LockFile } from './lock.js';
import { RecordWalker, encodeIndex, segmentPaths, segmentPrologue, type SegmentBuilder } from './segment.js';
import { APPEND_LOCK, durablePath, encodeDurable, readWindow, volumeToMeta, writeMeta } from './state.js';
import type { JournalStore, SegmentEntry } from './store.js';

const fdatasync = promisify(fs.fdatasync);
const STAGING = 1 << 20;

export interface Appender {
  /** Per incoming stream: sets the group of a new store (else DR_GROUP_MISMATCH), learns new volumes. */
  begin(header: StreamHeader, volumes: VolumeRecord[]): void;
  /** the seq the store expects next */
  readonly nextSeq: number;
  /**
   * Append one record synchronously; false when it was already stored (and identical).
   * `encoded`: the record's bytes (checked by the caller, e.g. the stream parser) in one or
   * more pieces, the first starting with the 32-byte record header; they are copied.
   */
  append(rec: SequencedRecord, encoded?: Buffer[]): boolean;
  /**
   * Append a sequenced record as a stream parser saw it (StreamParser.pushViews()), its
   * bytes (checked by the parser) not copied: the appender keeps them until writeOut()
   * has resolved, so the caller must not change that memory before then.
   */
  appendView(v: RecordView): boolean;
  /**
   * Write everything appended so far on the thread pool (no fsync); resolves when the
   * kernel has it. Until then append(), begin(), handOff() and syncSync() refuse to run;
   * sync() waits for it.
   */
  writeOut(): Promise<void>;
  /**
   * Hand every staged record to the kernel (a write, no fsync): after it, a crash of this
   * process loses none of them (a power loss still may, until sync). A writer that must
   * never let another file get ahead of the journal (dr-tap's backing stores) calls it first.
   */
  handOff(): void;
  /** Make everything appended durable: fdatasync data, then the durable hint. */
  sync(): Promise<void>;
  syncSync(): void;
  /** last seq that is durable */
  readonly durableSeq: number;
  /** sync, release the lock */
  close(): Promise<void>;
}

/** A segment switch whose syncs and rename are still to run (see StoreAppender.switching). */
interface PendingSwitch {
  /** the old segment: its descriptor, entry, builder and END length */
  fd: number;
  segment: SegmentEntry;
  builder: SegmentBuilder;
  endLength: number;
  /** the new segment: its file under the temporary name, its final name, its descriptor */
  tmp: string;
  file: string;
  newFd: number;
  /** steps done */
  sealed: boolean;
  renamed: boolean;
  running: Promise<void> | null;
}

export class StoreAppender implements Appender {
  private fd: number | null = null;
  private segment: SegmentEntry | null = null;
  private builder: SegmentBuilder | null = null;
  /** file offset where the pending bytes go */
  private writePos = 0;
  private pending = new PendingWrites(STAGING);
  /** a writeOut() still running */
  private writing: Promise<void> | null = null;
  /**
   * A segment switch of borrowed appends whose I/O is still to run (started by writeOut(),
   * on the thread pool, while writing goes on): the old segment has its END and the new
   * segment's file exists under a temporary name with its prologue; still to do are the
   * fdatasync of both, the old one's index, then the rename of the new file to its segment
   * name and the fdatasync of the directory. Records go on being appended and written to
   * the new file meanwhile; none of them is made durable (acknowledged) before all of that
   * is done, so a crash never leaves an unsealed segment before another. Waiting for those
   * syncs before writing on cost 10-40 ms per switch, 16 times per GiB.
   */
  private switching: PendingSwitch | null = null;
  private failed: DrError | null = null;
  private syncChain: Promise<void> = Promise.resolve();
  private syncsInFlight = 0;
  private retired: number[] = [];
  private durableFd: number | null = null;
  private dup: { segment: SegmentEntry; fd: number; walker: RecordWalker } | null = null;
  private closed = false;
  nextSeq = 1;
  lastTime = 0;
  durableSeq = 0;
  /** the last seq whose bytes the kernel has (written, maybe not yet durable) */
  private writtenSeq = 0;
  /** the fields of the record append() takes (one object, filled again for each) */
  private readonly fields: RecordFields = { code: 0, seq: 0, time: 0, volume: 0, offset: 0, length: 0 };

  private constructor(private readonly store: JournalStore, private readonly lock: LockFile) {}

  static create(store: JournalStore): StoreAppender {
    if (store.activeAppender) throw new DrError('DR_LOCKED', `journal store ${store.dir} already has an appender in this process`);
    const lock = LockFile.acquire(path.join(store.dir, APPEND_LOCK), `journal store ${store.dir}`);
    const a = new StoreAppender(store, lock);
    try {
      store.activeAppender = a;
      store.load(true);
      a.nextSeq = store.lastSeq + 1;
      a.lastTime = store.lastTime;
      a.durableSeq = store.lastSeq;
      a.writtenSeq = store.lastSeq;
      const open = store.openBuilder;
      const last = store.segments[store.segments.length - 1];
      if (open && last && last.summary === open.summary) {
        a.fd = fs.openSync(last.data, 'r+');
        a.segment = last;
        a.builder = open;
        a.writePos = open.summary.dataEnd;
      }
    } catch (err) {
      store.activeAppender = null;
      lock.release();
      throw fromSystemError(err, `cannot open journal store ${store.dir} for appending`);
    }
    return a;
  }

  private check(): void {
    if (this.failed) throw this.failed;
    if (this.closed) throw new DrError('DR_USAGE', 'appender is closed');
  }

  /** check(), and no writeOut() running: its bytes and the next ones would share the staging buffer and file range. */
  private checkIdle(): void {
    this.check();
    if (this.writing) throw new DrError('DR_USAGE', 'appender used while writeOut() is still running (await it first)');
  }

  private fail(err: unknown, what: string): DrError {
    const e = fromSystemError(err, what);
    this.failed = e;
    return e;
  }

  begin(header: StreamHeader, volumes: VolumeRecord[]): void {
    this.checkIdle();
    const store = this.store;
    const meta = store.meta;
    let changed = false;
    if (store.groupId === null) {
      store.groupId = Buffer.from(header.groupId);
      meta.groupId = header.groupId.toString('hex');
      changed = true;
    } else if (!store.groupId.equals(header.groupId)) {
      throw new DrError('DR_GROUP_MISMATCH', `the stream is for volume group ${idToString(header.groupId)} but ${store.dir} holds group ${idToString(store.groupId)}`);
    }
    const added: VolumeRecord[] = [];
    for (const v of volumes) {
      const have = store.volumes[v.index];
      if (have) {
        if (have.name !== v.name) {
          throw new DrError('DR_VOLUME_MISMATCH', `volume ${v.index} is ${JSON.stringify(v.name)} in the stream but ${JSON.stringify(have.name)} in ${store.dir}`);
        }
        if (have.size !== v.size || !have.id.equals(v.id) || have.blockSize !== v.blockSize) {
          throw new DrError('DR_VOLUME_MISMATCH', `volume ${v.name} differs from the stored one (stream: ${v.size} bytes, block ${v.blockSize}, id ${idToString(v.id)}; store: ${have.size} bytes, block ${have.blockSize}, id ${idToString(have.id)})`);
        }
      } else if (v.index === store.volumes.length + added.length) {
        added.push({ ...v, id: Buffer.from(v.id) });
      } else {
        throw new DrError('DR_VOLUME_MISMATCH', `volume ${v.name} has index ${v.index}, the store expects ${store.volumes.length + added.length}`);
      }
    }
    const empty = store.lastSeq < store.firstSeq && !store.window;
    if (empty && header.firstSeq !== this.nextSeq) {
      // a new store starts where its first stream starts
      this.dropEmptyOpenSegment();
      this.nextSeq = header.firstSeq;
      store.firstSeq = header.firstSeq;
      store.lastSeq = header.firstSeq - 1;
      this.durableSeq = store.lastSeq;
    }
    if (added.length > 0) {
      // segments declare every volume up front: the next record starts a new segment
      if (this.builder && this.builder.summary.records === 0) this.dropEmptyOpenSegment();
      else if (this.builder) this.seal();
      store.volumes.push(...added);
      meta.volumes = store.volumes.map(volumeToMeta);
      changed = true;
    }
    if (changed) {
      try {
        writeMeta(store.dir, meta);
      } catch (err) {
        throw this.fail(err, `cannot write ${store.dir}/store.json`);
      }
    }
  }

  private dropEmptyOpenSegment(): void {
    if (!this.builder || !this.segment || this.builder.summary.records > 0) return;
    this.finishSwitchSync();
    const seg = this.segment;
    this.retire();
    try {
      fs.unlinkSync(seg.data);
      fsyncDir(path.dirname(seg.data));
    } catch (err) {
      throw this.fail(err, `cannot remove empty segment ${seg.data}`);
    }
    this.store.segments = this.store.segments.filter((s) => s !== seg);
  }

  append(rec: SequencedRecord, encoded?: Buffer[]): boolean {
    this.checkIdle();
    const parts = encoded ?? encodeRecord(rec);
    return this.add(recordFields(rec, this.fields), parts[0]!, 0, byteLength(parts), parts, rec.type === 'mark' ? rec : null);
  }

  appendView(v: RecordView): boolean {
    this.checkIdle();
    return this.add(v, v.bytes, v.at, v.total, null, v.item !== null && v.item.type === 'mark' ? v.item : null);
  }

  /**
   * Append the record `f` of `len` bytes whose header is at byte `at` of `bytes`: copied
   * from `parts` (the whole record), or with `parts` null, bytes[at, at + len) itself kept
   * until written (appendView()). `mark`: the record, when it is a MARK.
   */
  private add(f: RecordFields, bytes: Buffer, at: number, len: number, parts: Buffer[] | null, mark: MarkRecord | null): boolean {
    if (f.seq < this.nextSeq) return this.compareStored(f.seq, bytes.subarray(at, at + RECORD_HEADER_SIZE));
    if (f.seq > this.nextSeq) {
      throw new DrError('DR_SEQ_GAP', `record seq ${f.seq} would leave a gap: ${this.store.dir} holds up to seq ${this.nextSeq - 1} (resend from seq ${this.nextSeq})`, { lastGoodSeq: this.nextSeq - 1 });
    }
    if (this.store.groupId === null) throw new DrError('DR_USAGE', 'append before begin(): the store has no volume group yet');
    if (f.time < this.lastTime) throw new DrError('DR_TIME_ORDER', `time of seq ${f.seq} goes backwards (before the last stored record's)`);
    if (f.code === RecordType.WRITE || f.code === RecordType.ZERO || f.code === RecordType.SIGNATURE) {
      const vol = this.store.volumes[f.volume];
      if (!vol) throw new DrError('DR_BAD_RECORD', `seq ${f.seq} names volume ${f.volume}, which the store does not have`);
      if (f.offset + f.length > vol.size) throw new DrError('DR_OUT_OF_RANGE', `seq ${f.seq}: ${f.offset}+${f.length} is past the end of volume ${vol.name} (${vol.size} bytes)`);
    }
    try {
      if (!this.builder) this.startSegment(f.seq);
      else if (this.builder.summary.dataEnd + len > this.store.segmentSize && this.builder.summary.records > 0) {
        if (parts === null) {
          this.switchSegment(f.seq);
        } else {
          this.seal();
          this.startSegment(f.seq);
        }
      }
      const b = this.builder!;
      const offset = b.summary.dataEnd;
      if (parts === null) this.pending.borrowRange(bytes, at, len);
      else this.stage(parts, len);
      b.addRecord(f, offset, bytes, at, len, mark);
    } catch (err) {
      throw this.failed ?? this.fail(err, `cannot append to ${this.store.dir}`);
    }
    this.nextSeq = f.seq + 1;
    this.lastTime = f.time;
    return true;
  }

  handOff(): void {
    this.checkIdle();
    try {
      this.finishSwitchSync();
      this.flushStaged();
    } catch (err) {
      throw this.failed ?? this.fail(err, `cannot append to ${this.store.dir}`);
    }
  }

  /** Copy `parts` (`len` bytes) into the staging buffer, or write them at once when they do not fit in it. */
  private stage(parts: Buffer[], len: number): void {
    if (!this.pending.fits(len)) this.flushStaged();
    if (len > STAGING) {
      for (const p of parts) this.pending.borrow(p);
      this.flushStaged();
      return;
    }
    this.pending.copy(parts);
  }

  /** Write the pending bytes to the open segment. On failure the segment is cut back to its last complete record. */
  private flushStaged(): void {
    if (this.fd === null || this.pending.bytes === 0) return;
    const at = this.writePos;
    const len = this.pending.bytes;
    const bufs = this.pending.take();
    try {
      writevAllSync(this.fd, bufs, at, len);
    } catch (err) {
      throw this.writeFailed(err, this.fd, at);
    }
    this.writePos = at + len;
    this.writtenSeq = this.nextSeq - 1;
  }

  async writeOut(): Promise<void> {
    this.checkIdle();
    if (this.switching === null && (this.fd === null || this.pending.bytes === 0)) return;
    const work = async (): Promise<void> => {
      // the switch's syncs and rename run alongside this write (sync() waits for them)
      if (this.switching) this.finishSwitch().catch(() => undefined);
      if (this.fd === null || this.pending.bytes === 0) return;
      const fd = this.fd;
      const at = this.writePos;
      const len = this.pending.bytes;
      const bufs = this.pending.take();
      const seq = this.nextSeq - 1; // appending waits for this writeOut(): nothing is added meanwhile
      this.writePos = at + len;
      try {
        await writevAll(fd, bufs, at, len);
      } catch (err) {
        throw this.writeFailed(err, fd, at);
      }
      this.writtenSeq = Math.max(this.writtenSeq, seq);
    };
    const writing = work();
    this.writing = writing;
    try {
      await writing;
    } finally {
      this.writing = null;
    }
  }

  private writeFailed(err: unknown, fd: number, at: number): DrError {
    try {
      fs.ftruncateSync(fd, at);
    } catch { /* the torn tail is trimmed on the next open */ }
    return this.fail(err, `cannot write segment ${this.segment?.data ?? ''}`);
  }

  private startSegment(firstSeq: number): void {
    const store = this.store;
    const { bytes, builder } = segmentPrologue(store.groupId!, firstSeq, store.volumes);
    const p = segmentPaths(store.dir, firstSeq);
    writeFileDurable(p.data, bytes);
    this.openSegment(firstSeq, p, builder, fs.openSync(p.data, 'r+'));
  }

  /** Append from now on to the new segment at `firstSeq` (`fd` null: its file is still to be created). */
  private openSegment(firstSeq: number, p: ReturnType<typeof segmentPaths>, builder: SegmentBuilder, fd: number | null): void {
    const store = this.store;
    this.fd = fd;
    this.builder = builder;
    this.writePos = builder.summary.dataEnd;
    const entry: SegmentEntry = { firstSeq, ...p, summary: builder.summary };
    this.segment = entry;
    store.segments.push(entry);
    store.openBuilder = builder;
  }

  /**
   * End the open segment with END and continue in a new one starting at `firstSeq`, the
   * I/O left to finishSwitch() or finishSwitchSync(): the old segment's fdatasync comes
   * before the new file exists, so a crash never leaves an unsealed segment before another.
   */
  private switchSegment(firstSeq: number): void {
    this.finishSwitchSync(); // a second switch within one chunk (small segments)
    const b = this.builder!;
    const seg = this.segment!;
    const fd = this.fd!;
    this.flushStaged();
    const end = b.endRecord(nowMicros());
    const at = this.writePos;
    try {
      writevAllSync(fd, end, at);
    } catch (err) {
      throw this.writeFailed(err, fd, at);
    }
    const store = this.store;
    const { bytes, builder } = segmentPrologue(store.groupId!, firstSeq, store.volumes);
    const p = segmentPaths(store.dir, firstSeq);
    const tmp = tempPath(p.data);
    const newFd = this.attempt(() => {
      const f = fs.openSync(tmp, 'w+', 0o644);
      try {
        writevAllSync(f, bytes, 0);
      } catch (err) {
        fs.closeSync(f);
        throw err;
      }
      return f;
    }, `cannot create segment ${p.data}`);
    this.switching = { fd, segment: seg, builder: b, endLength: byteLength(end), tmp, file: p.data, newFd, sealed: false, renamed: false, running: null };
    if (this.dup && this.dup.segment === seg) this.dropDup();
    this.openSegment(firstSeq, p, builder, newFd);
  }

  /**
   * Complete the pending switch on the thread pool (once; later calls get the same
   * promise). A synchronous completion (finishSwitchSync) may take over meanwhile: each
   * step here checks that the switch is still this one before going on.
   */
  private finishSwitch(): Promise<void> {
    const sw = this.switching!;
    const dir = path.dirname(sw.file);
    // one step of the switch; false: it failed after another completion took over, or that one did it
    const step = async (what: string, work: () => Promise<unknown>): Promise<boolean> => {
      try {
        await work();
      } catch (err) {
        if (this.switching === sw) throw this.fail(err, what);
        return false;
      }
      return this.switching === sw;
    };
    const syncBoth = async (): Promise<void> => {
      this.syncsInFlight++;
      try {
        await Promise.all([fdatasync(sw.fd), fdatasync(sw.newFd)]);
      } finally {
        this.syncsInFlight--;
        if (this.syncsInFlight === 0) for (const f of this.retired.splice(0)) fs.closeSync(f);
      }
    };
    const run = async (): Promise<void> => {
      if (!(await step(`cannot sync segment ${sw.segment.data}`, syncBoth))) return;
      this.sealed(sw);
      if (!(await step(`cannot create segment ${sw.file}`, () => fs.promises.rename(sw.tmp, sw.file)))) return;
      sw.renamed = true;
      if (!(await step(`cannot sync directory ${dir}`, () => fsyncDirAsync(dir)))) return;
      this.switching = null;
    };
    sw.running ??= run();
    return sw.running;
  }

  /** finishSwitch() without leaving the thread: for the callers that need the switch done now. */
  private finishSwitchSync(): void {
    const sw = this.switching;
    if (!sw) return;
    this.attempt(() => {
      if (!sw.sealed) fs.fdatasyncSync(sw.fd); // sealed: durable, and its descriptor closed
      fs.fdatasyncSync(sw.newFd);
    }, `cannot sync segment ${sw.segment.data}`);
    this.sealed(sw);
    if (!sw.renamed) {
      this.attempt(() => {
        try {
          fs.renameSync(sw.tmp, sw.file);
        } catch (err) {
          // the rename of a finishSwitch() still running may have just happened
          if (!((err as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync(sw.file))) throw err;
        }
      }, `cannot create segment ${sw.file}`);
      sw.renamed = true;
    }
    fsyncDir(path.dirname(sw.file));
    this.switching = null;
  }

  /** `fn()`, its failure failing the appender. */
  private attempt<T>(fn: () => T, what: string): T {
    try {
      return fn();
    } catch (err) {
      throw this.fail(err, what);
    }
  }

  /** The old segment of a switch is durable with its END: mark it sealed, write its index, close it (once). */
  private sealed(sw: PendingSwitch): void {
    if (sw.sealed) return;
    sw.sealed = true;
    this.markSealed(sw.builder, sw.segment, sw.endLength);
    if (this.syncsInFlight > 0) this.retired.push(sw.fd);
    else fs.closeSync(sw.fd);
  }

  /** Write END, fdatasync, write the index file; the segment is then immutable. */
  private seal(): void {
    this.finishSwitchSync();
    const b = this.builder;
    const seg = this.segment;
    if (!b || !seg || this.fd === null) return;
    this.flushStaged();
    const parts = b.endRecord(nowMicros());
    const len = byteLength(parts);
    this.stage(parts, len);
    this.flushStaged();
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw this.fail(err, `cannot sync segment ${seg.data}`);
    }
    this.markSealed(b, seg, len);
    this.retire();
    this.store.openBuilder = null;
  }

  /** `seg`, its END (`endLength` bytes) durable: mark it sealed and durable, write its index file. */
  private markSealed(b: SegmentBuilder, seg: SegmentEntry, endLength: number): void {
    b.summary.size = b.summary.dataEnd + endLength;
    b.summary.sealed = true;
    this.markDurable(b.summary.lastSeq, b.summary.lastTime);
    // The index is derived from the (now durable) segment, and a store rebuilds a missing
    // one when opened: it is written on the thread pool, so appending goes on meanwhile;
    // sync() and close() wait for it.
    const index = encodeIndex(b.summary, b.extents.view());
    this.inBackground(() => writeFileDurableAsync(seg.index, index));
  }

  /** Run `work` in the sync chain: later syncs (and close) wait for it; its failure fails the appender. */
  private inBackground(work: () => Promise<void>): void {
    const run = async (): Promise<void> => {
      try {
        await work();
      } catch (err) {
        throw this.fail(err, `cannot append to ${this.store.dir}`);
      }
    };
    this.syncChain = this.syncChain.then(run, run).catch(() => undefined);
  }

  private retire(): void {
    if (this.fd !== null) {
      if (this.syncsInFlight > 0) this.retired.push(this.fd);
      else fs.closeSync(this.fd);
    }
    if (this.dup && this.dup.segment === this.segment) this.dropDup();
    this.fd = null;
    this.builder = null;
    this.segment = null;
  }

  private markDurable(seq: number, time: number): void {
    if (seq <= this.durableSeq) return;
    this.durableSeq = seq;
    this.store.lastSeq = seq;
    this.store.lastTime = time;
    try {
      if (this.durableFd === null) this.durableFd = fs.openSync(durablePath(this.store.dir), 'w', 0o644);
      fs.writeSync(this.durableFd, encodeDurable(seq, time), 0, 24, 0);
    } catch {
      /* only a hint for followers in other processes */
    }
  }

  /**
   * Make the records appended so far durable. Borrowed appends are written by the
   * writeOut() running (or about to run) when this sync gets its turn: it waits for that
   * one write, not for the caller to stop writing (a caller that keeps writing out chunk
   * after chunk would otherwise hold every sync back until its segment is sealed).
   */
  async sync(): Promise<void> {
    let target = this.nextSeq - 1;
    let targetTime = this.lastTime;
    const run = async (): Promise<void> => {
      while (this.writtenSeq < target && this.writing) await this.writing.catch(() => undefined);
      this.check();
      if (this.writtenSeq < target) {
        // nothing running writes them: write what is pending now (and make all of it durable)
        try {
          this.finishSwitchSync();
          this.flushStaged();
        } catch (err) {
          throw this.failed ?? err;
        }
        target = this.nextSeq - 1;
        targetTime = this.lastTime;
      }
      // a pending switch first: the old segment durable, the new one's file in place
      while (this.switching && target > this.switching.builder.summary.lastSeq) await this.finishSwitch();
      if (target <= this.durableSeq) return; // e.g. sealed (and so synced) by a segment switch
      // target's bytes are in the open segment, or in the one a pending switch has still to sync
      const sw = this.switching;
      const fd = sw && target <= sw.builder.summary.lastSeq ? sw.fd : this.fd;
      if (fd !== null) {
        this.syncsInFlight++;
        try {
          await fdatasync(fd);
        } catch (err) {
          throw this.fail(err, `cannot sync segment ${this.segment?.data ?? ''}`);
        } finally {
          this.syncsInFlight--;
          if (this.syncsInFlight === 0) for (const f of this.retired.splice(0)) fs.closeSync(f);
        }
      }
      this.markDurable(target, targetTime);
    };
    const next = this.syncChain.then(run, run);
    this.syncChain = next.catch(() => undefined);
    return next;
  }

  syncSync(): void {
    this.checkIdle();
    this.finishSwitchSync();
    this.flushStaged();
    if (this.fd !== null && this.nextSeq - 1 > this.durableSeq) {
      try {
        fs.fdatasyncSync(this.fd);
      } catch (err) {
        throw this.fail(err, `cannot sync segment ${this.segment?.data ?? ''}`);
      }
    }
    this.markDurable(this.nextSeq - 1, this.lastTime);
  }

  /** The record `seq`, whose 32-byte header is `hb`, is stored: identical -> false, different -> DR_CONFLICT. */
  private compareStored(seq: number, hb: Buffer): boolean {
    const store = this.store;
    if (seq < store.firstSeq) return false; // folded into the base: nothing left to compare with
    let stored: Buffer;
    try {
      stored = this.storedHeader(seq);
    } catch (err) {
      // a prune in another process may have folded it meanwhile: then there is nothing to compare with
      const w = readWindow(store.dir);
      if (w && seq < w.firstSeq) return false;
      throw err;
    }
    if (stored.equals(hb)) return false;
    const crc = (b: Buffer): string => b.readUInt32LE(28).toString(16).padStart(8, '0');
    const what = stored.readUInt16LE(0) !== hb.readUInt16LE(0) ? 'its type differs'
      : stored.readBigUInt64LE(16) !== hb.readBigUInt64LE(16) ? `its time differs (stored ${stored.readBigUInt64LE(16)}, received ${hb.readBigUInt64LE(16)})`
        : `its contents differ (stored record CRC ${crc(stored)}, received ${crc(hb)})`;
    throw new DrError('DR_CONFLICT', `record seq ${seq} conflicts with the one stored in ${store.dir}: ${what}`, { lastGoodSeq: seq - 1 });
  }

  private storedHeader(seq: number): Buffer {
    const b = this.builder;
    if (b && seq >= b.summary.firstSeq) {
      this.finishSwitchSync();
      const off = b.offsetOf(seq);
      if (off === null) throw new DrError('DR_STORE_CORRUPT', `seq ${seq} missing from the open segment`);
      if (off + RECORD_HEADER_SIZE > this.writePos) this.flushStaged();
      return preadSync(this.fd!, RECORD_HEADER_SIZE, off);
    }
    // sealed segments: a cursor that moves forward, since a resend comes in order
    const d = this.dup;
    if (d && seq >= d.segment.firstSeq && seq <= d.segment.summary.lastSeq) {
      for (let r = d.walker.next(); r; r = d.walker.next()) {
        if (r.h.seq === seq) return Buffer.from(r.hb);
        if (r.h.seq > seq) break;
      }
    }
    this.dropDup();
    const { segment, offset } = this.store.locate(seq);
    const fd = this.store.openSegmentFd(segment);
    const walker = new RecordWalker(fd, segment.data, offset, segment.summary.dataEnd);
    this.dup = { segment, fd, walker };
    const r = walker.next();
    if (!r || r.h.seq !== seq) throw new DrError('DR_STORE_CORRUPT', `seq ${seq} not found in ${segment.data}`);
    return Buffer.from(r.hb);
  }

  private dropDup(): void {
    if (this.dup) fs.closeSync(this.dup.fd);
    this.dup = null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.failed) await this.sync();
    } finally {
      this.closed = true;
      await this.syncChain;
      while (this.writing) await this.writing.catch(() => undefined);
      this.dropDup();
      if (this.switching) {
        // only after a failure: nothing in the new file was made durable, so it goes (its
        // descriptor is this.fd, closed below once the switch's own syncs are over)
        const sw = this.switching;
        await sw.running?.catch(() => undefined);
        if (!sw.sealed) fs.closeSync(sw.fd);
        if (!sw.renamed) fs.rmSync(sw.tmp, { force: true });
      }
      this.switching = null;
      if (this.fd !== null) fs.closeSync(this.fd);
      for (const fd of this.retired.splice(0)) fs.closeSync(fd);
      if (this.durableFd !== null) fs.closeSync(this.durableFd);
      this.fd = null;
      this.store.activeAppender = null;
      this.lock.release();
    }
  }
}
