/**
 * The write tap: volumes backed by files or block devices, served as NBD exports,
 * every change journaled in the order it is acknowledged with one sequence across
 * all volumes (a consistency group).
 *
 * Each write is handled in one synchronous step: its WRITE records are appended to
 * the journal (writev of the record headers and the request's socket slices, no
 * copy of large pieces), then the data is written to the backing store (writev at
 * the offset). Nothing else runs in between, so the journal order is the order the
 * backing store saw and the order of the acknowledgements. FLUSH and FUA wait until
 * the journal and every backing store written to are on stable storage.
 *
 * Initial sync: a volume the journal has not seen is recorded as a baseline (its
 * non-zero blocks) while it is served. A write to a region whose baseline is not
 * recorded yet first records that region's baseline, so the journal alone always
 * rebuilds the volume.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { DrError, fromSystemError } from '../errors.js';
import type { MarkKind, SequencedRecord } from '../format/layout.js';
import { newId } from '../format/layout.js';
import type { Logger } from '../cli/log.js';
import type { JournalSink } from './journal-sink.js';
import { writevAllSync } from '../store/files.js';
import type { NbdExport } from './server.js';

const fdatasync = promisify(fs.fdatasync);

/** region of the volume baselined as one step */
export const BASELINE_CHUNK = 1024 * 1024;
/** a write's socket slices shorter than this are merged (copied) into one record; longer ones are journaled as they are */
const MIN_PIECE = 16 * 1024;
/** journal bytes between background syncs */
const BACKGROUND_SYNC_BYTES = 8 * 1024 * 1024;
const ZEROES = Buffer.alloc(1024 * 1024);

export interface BackingVolume {
  index: number;
  name: string;
  path: string;
  fd: number;
  size: number;
  blockSize: number;
  id: Buffer;
  /** written since the last sync */
  dirty: boolean;
  /** per BASELINE_CHUNK: 1 = recorded; null when no baseline is needed */
  baseline: Uint8Array | null;
  baselineDone: number;
  signCursor: number;
}

/** Open a backing file or block device read-write and find its size. */
export function openBacking(name: string, path: string, index: number, blockSize: number, id: Buffer): BackingVolume {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r+');
  } catch (err) {
    throw fromSystemError(err, `cannot open backing store ${path} of export ${name}`);
  }
  const st = fs.fstatSync(fd);
  let size: number;
  if (st.isBlockDevice()) {
    const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn) | Number((BigInt(st.rdev) >> 32n) & ~0xfffn);
    const minor = Number(BigInt(st.rdev) & 0xffn) | Number((BigInt(st.rdev) >> 12n) & ~0xffn);
    size = Number(fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim()) * 512;
  } else if (st.isFile()) {
    size = st.size;
  } else {
    fs.closeSync(fd);
    throw new DrError('DR_USAGE', `backing store ${path} of export ${name} is neither a regular file nor a block device`);
  }
  if (size === 0) {
    fs.closeSync(fd);
    throw new DrError('DR_USAGE', `backing store ${path} of export ${name} is empty (size 0)`);
  }
  return { index, name, path, fd, size, blockSize, id, dirty: false, baseline: null, baselineDone: 0, signCursor: 0 };
}

export interface TapStats {
  writes: number;
  writeBytes: number;
  zeroes: number;
  zeroBytes: number;
  flushes: number;
  reads: number;
  readBytes: number;
  marks: number;
  signatures: number;
  baselineBytes: number;
}

export class Tap {
  readonly stats: TapStats = {
    writes: 0, writeBytes: 0, zeroes: 0, zeroBytes: 0, flushes: 0, reads: 0, readBytes: 0, marks: 0, signatures: 0, baselineBytes: 0,
  };
  private syncChain: Promise<void> = Promise.resolve();
  private syncQueued: Promise<void> | null = null;
  private signVolume = 0;
  /** set when the journal cannot be written any more: every later request fails */
  fatal: DrError | null = null;
  onFatal: ((err: DrError) => void) | null = null;

  /**
   * flush: FLUSH and FUA sync the journal and every backing store written to.
   * checkpoint: they sync the journal only (the write-ahead log); backing stores are
   * synced by checkpointBacking() and repaired from the journal after a crash.
   */
  backingSync: 'flush' | 'checkpoint' = 'flush';

  constructor(
    readonly volumes: BackingVolume[],
    readonly sink: JournalSink,
    private readonly log?: Logger,
  ) {}

  /** Sync every backing store written to; resolves with the seq up to which they are all on stable storage. */
  async checkpointBacking(): Promise<number> {
    const seq = this.sink.nextSeq - 1;
    const dirty = this.volumes.filter((v) => v.dirty);
    for (const v of dirty) v.dirty = false;
    try {
      await Promise.all(dirty.map((v) => fdatasync(v.fd)));
    } catch (err) {
      for (const v of dirty) v.dirty = true;
      throw fromSystemError(err, 'syncing a backing store');
    }
    return seq;
  }

  /** The NBD export of one volume. */
  exportOf(v: BackingVolume): NbdExport {
    return {
      name: v.name,
      description: `drkit tap of ${v.path}`,
      size: v.size,
      readOnly: false,
      minBlock: 1,
      preferredBlock: v.blockSize,
      maxBlock: 32 * 1024 * 1024,
      read: (offset, length) => this.read(v, offset, length),
      write: (offset, data, fua) => this.write(v, offset, data, fua),
      flush: () => this.flush(),
      trim: (offset, length, fua) => this.zero(v, offset, length, true, fua),
      zero: (offset, length, _noHole, fua) => this.zero(v, offset, length, false, fua),
    };
  }

  read(v: BackingVolume, offset: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    readFully(v, buf, offset);
    this.stats.reads++;
    this.stats.readBytes += length;
    return buf;
  }

  /** journal bytes appended since the last background sync started */
  private unsynced = 0;
  private backgroundSync: Promise<void> | null = null;

  /**
   * Start writing the journal out while requests go on (an asynchronous sync, on
   * the thread pool) every few MiB, so a FLUSH, and a journal segment's seal, find
   * little left to write.
   */
  private maybeSyncInBackground(bytes: number): void {
    this.unsynced += bytes;
    if (this.unsynced < BACKGROUND_SYNC_BYTES || this.backgroundSync) return;
    this.unsynced = 0;
    // the journal only: the backing stores' dirty pages are left to the kernel (or the checkpoint)
    this.backgroundSync = this.sink.sync().catch((err: unknown) => {
      this.die(err instanceof DrError ? err : fromSystemError(err, `syncing ${this.sink.what}`));
    }).finally(() => {
      this.backgroundSync = null;
    });
  }

  private append(input: Parameters<JournalSink['append']>[0]): SequencedRecord {
    if (this.fatal) throw this.fatal;
    try {
      const rec = this.sink.append(input);
      if (input.type === 'write') this.maybeSyncInBackground(input.data.length);
      return rec;
    } catch (err) {
      const e = err instanceof DrError ? err : fromSystemError(err, `writing ${this.sink.what}`);
      // A journal that failed once is not trusted with more records: stop (what it holds stays valid).
      this.die(e);
      throw Object.assign(e, { nbdErrno: e.code === 'DR_NO_SPACE' ? 28 : 5 });
    }
  }

  /**
   * The journal's bytes reach the kernel before the backing store's: after a crash of this
   * process the backing store never holds a write the journal lacks (the restart rolls the
   * backing store forward from the journal; it cannot roll back).
   */
  private handOff(): void {
    if (this.fatal) throw this.fatal;
    try {
      this.sink.handOff();
    } catch (err) {
      const e = err instanceof DrError ? err : fromSystemError(err, `writing ${this.sink.what}`);
      this.die(e);
      throw e;
    }
  }

  private die(e: DrError): void {
    if (this.fatal) return;
    // every later request fails with this error; clients see ENOSPC for a full disk, else EIO
    Object.assign(e, { nbdErrno: e.code === 'DR_NO_SPACE' ? 28 : 5 });
    this.fatal = e;
    this.onFatal?.(e);
  }

  write(v: BackingVolume, offset: number, data: Buffer[], fua: boolean): void | Promise<void> {
    const length = data.reduce((n, b) => n + b.length, 0);
    this.ensureBaseline(v, offset, length);
    const pieces = coalesce(data);
    let off = offset;
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i]!;
      try {
        this.append({ type: 'write', volume: v.index, offset: off, data: p, fua: fua && i === pieces.length - 1 });
      } catch (err) {
        // keep the backing store equal to what the journal holds: apply the pieces already journaled
        if (off > offset) this.applyBacking(v, pieces.slice(0, i), offset);
        throw err;
      }
      off += p.length;
    }
    this.handOff();
    this.applyBacking(v, data, offset);
    this.stats.writes++;
    this.stats.writeBytes += length;
    if (fua) return this.requestSync();
  }

  zero(v: BackingVolume, offset: number, length: number, discard: boolean, fua: boolean): void | Promise<void> {
    this.ensureBaseline(v, offset, length);
    this.append({ type: 'zero', volume: v.index, offset, length, discard });
    this.handOff();
    for (let off = offset; off < offset + length;) {
      const n = Math.min(offset + length - off, 64 * ZEROES.length);
      const bufs: Buffer[] = [];
      for (let k = 0; k < n; k += ZEROES.length) bufs.push(ZEROES.subarray(0, Math.min(ZEROES.length, n - k)));
      this.applyBacking(v, bufs, off);
      off += n;
    }
    this.stats.zeroes++;
    this.stats.zeroBytes += length;
    if (fua) return this.requestSync();
  }

  private applyBacking(v: BackingVolume, data: Buffer[], offset: number): void {
    try {
      writevAllSync(v.fd, data, offset);
      v.dirty = true;
    } catch (err) {
      // The journal has the write; the backing store does not. Keep serving would diverge the two.
      const e = fromSystemError(err, `writing backing store ${v.path}`);
      this.die(e);
      throw e;
    }
  }

  /** FLUSH: a FLUSH record, then the journal and the backing stores on stable storage. */
  flush(): Promise<void> {
    try {
      this.append({ type: 'flush' });
    } catch (err) {
      return Promise.reject(err);
    }
    this.stats.flushes++;
    return this.requestSync();
  }

  /** A MARK between writes; resolves once it is durable. */
  async mark(name: string, kind: MarkKind, id: Buffer = newId()): Promise<{ seq: number; time: number; id: Buffer }> {
    const rec = this.append({ type: 'mark', name, kind, id });
    this.stats.marks++;
    await this.requestSync();
    return { seq: rec.seq, time: rec.time, id };
  }

  /**
   * Resolve after a sync that started after this call: concurrent callers share
   * one sync (group commit).
   */
  requestSync(): Promise<void> {
    if (this.syncQueued) return this.syncQueued;
    const p = this.syncChain.then(() => {
      this.syncQueued = null;
      return this.syncNow();
    });
    this.syncQueued = p;
    this.syncChain = p.catch(() => undefined);
    return p;
  }

  private async syncNow(): Promise<void> {
    if (this.fatal) throw this.fatal;
    const dirty = this.backingSync === 'flush' ? this.volumes.filter((v) => v.dirty) : [];
    for (const v of dirty) v.dirty = false;
    try {
      await Promise.all([
        this.sink.sync(),
        ...dirty.map((v) => fdatasync(v.fd).catch((err) => {
          throw fromSystemError(err, `syncing backing store ${v.path}`);
        })),
      ]);
    } catch (err) {
      const e = err instanceof DrError ? err : fromSystemError(err, 'sync');
      this.die(e);
      throw e;
    }
  }

  // ------------------------------------------------------------ baseline

  /** Start recording a baseline of `v` (all of it not yet recorded). */
  needBaseline(v: BackingVolume): void {
    v.baseline = new Uint8Array(Math.ceil(v.size / BASELINE_CHUNK));
    v.baselineDone = 0;
    const st = fs.fstatSync(v.fd);
    if (st.isFile() && st.blocks === 0) {
      // a regular file without a single allocated block reads as zeroes: nothing to record
      v.baseline.fill(1);
      v.baselineDone = v.baseline.length;
    }
  }

  get baselineTotal(): number {
    return this.volumes.reduce((n, v) => n + (v.baseline ? v.size : 0), 0);
  }
  get baselineRecorded(): number {
    return this.volumes.reduce((n, v) => n + (v.baseline ? Math.min(v.size, v.baselineDone * BASELINE_CHUNK) : 0), 0);
  }

  private ensureBaseline(v: BackingVolume, offset: number, length: number): void {
    if (!v.baseline || v.baselineDone === v.baseline.length) return;
    const first = Math.floor(offset / BASELINE_CHUNK);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / BASELINE_CHUNK);
    for (let c = first; c <= last && c < v.baseline.length; c++) if (!v.baseline[c]) this.baselineChunk(v, c);
  }

  private scratch: Buffer | null = null;

  /** Record the non-zero blocks of one chunk (read now, journaled now: one synchronous step). */
  private baselineChunk(v: BackingVolume, c: number): void {
    const start = c * BASELINE_CHUNK;
    const len = Math.min(BASELINE_CHUNK, v.size - start);
    const buf = (this.scratch ??= Buffer.allocUnsafe(BASELINE_CHUNK)).subarray(0, len);
    readFully(v, buf, start);
    const bs = v.blockSize;
    let runStart = -1;
    for (let off = 0; off <= len; off += bs) {
      const end = Math.min(off + bs, len);
      const zero = off >= len || isZero(buf.subarray(off, end));
      if (!zero && runStart < 0) runStart = off;
      if (zero && runStart >= 0) {
        this.append({ type: 'write', volume: v.index, offset: start + runStart, data: buf.subarray(runStart, off) });
        this.stats.baselineBytes += off - runStart;
        runStart = -1;
      }
    }
    v.baseline![c] = 1;
    v.baselineDone++;
  }

  /**
   * Record the baselines of every volume that needs one, a chunk at a time,
   * yielding to the event loop between steps so clients keep being served.
   * Resolves when done (with the MARK "baseline:NAME" of each volume durable) or stopped.
   */
  async runBaseline(signal: AbortSignal, onProgress?: (recorded: number, total: number) => void): Promise<boolean> {
    for (const v of this.volumes) {
      if (!v.baseline) continue;
      for (let c = 0; c < v.baseline.length; c++) {
        if (signal.aborted || this.fatal) return false;
        if (!v.baseline[c]) this.baselineChunk(v, c);
        if (c % 8 === 7) {
          onProgress?.(this.baselineRecorded, this.baselineTotal);
          await new Promise((r) => setImmediate(r));
        }
      }
      await this.mark(`baseline:${v.name}`, 'crash');
      this.log?.info(`baseline of ${v.name} recorded (${v.size} bytes scanned)`);
    }
    onProgress?.(this.baselineRecorded, this.baselineTotal);
    return true;
  }

  // ------------------------------------------------------------ signatures

  /**
   * Append one SIGNATURE record: the sha256 of the next chunk of the next volume,
   * read between writes so it matches what the journal rebuilds at this seq.
   */
  signNext(chunk = BASELINE_CHUNK): SequencedRecord | null {
    if (this.fatal || this.volumes.length === 0) return null;
    for (let tries = 0; tries < this.volumes.length; tries++) {
      const v = this.volumes[this.signVolume % this.volumes.length]!;
      const offset = v.signCursor;
      const length = Math.min(chunk, v.size - offset);
      const c = Math.floor(offset / BASELINE_CHUNK);
      v.signCursor = offset + length >= v.size ? 0 : offset + length;
      if (v.signCursor === 0) this.signVolume++;
      if (v.baseline && !v.baseline[c]) continue; // not in the journal yet
      const buf = Buffer.allocUnsafe(length);
      readFully(v, buf, offset);
      const digest = createHash('sha256').update(buf).digest();
      const rec = this.append({ type: 'signature', volume: v.index, offset, length, algorithm: 'sha256', digest });
      this.stats.signatures++;
      return rec;
    }
    return null;
  }

  closeBacking(): void {
    for (const v of this.volumes) {
      try {
        fs.closeSync(v.fd);
      } catch {
        /* already closed */
      }
    }
  }
}

function readFully(v: BackingVolume, buf: Buffer, offset: number): void {
  let done = 0;
  try {
    while (done < buf.length) {
      const n = fs.readSync(v.fd, buf, done, buf.length - done, offset + done);
      if (n === 0) {
        buf.fill(0, done); // a file shorter than it was: reads as zeroes
        break;
      }
      done += n;
    }
  } catch (err) {
    throw fromSystemError(err, `reading backing store ${v.path}`);
  }
}

function isZero(b: Buffer): boolean {
  if (b.length <= ZEROES.length) return b.equals(ZEROES.subarray(0, b.length));
  for (let i = 0; i < b.length; i += ZEROES.length) if (!isZero(b.subarray(i, i + ZEROES.length))) return false;
  return true;
}

/** Socket slices -> record payloads: long slices as they are, runs of short ones joined. */
export function coalesce(slices: Buffer[]): Buffer[] {
  if (slices.length === 1) return slices;
  const out: Buffer[] = [];
  let small: Buffer[] = [];
  let smallLen = 0;
  const flushSmall = () => {
    if (small.length === 1) out.push(small[0]!);
    else if (small.length > 1) out.push(Buffer.concat(small, smallLen));
    small = [];
    smallLen = 0;
  };
  for (const s of slices) {
    if (s.length >= MIN_PIECE) {
      flushSmall();
      out.push(s);
    } else {
      small.push(s);
      smallLen += s.length;
      if (smallLen >= MIN_PIECE) flushSmall();
    }
  }
  flushSmall();
  return out;
}
