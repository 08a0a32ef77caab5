/**
 * JournalStore: one directory holding a volume group's history. This module opens
 * it (recovering a torn tail), keeps the list of segments in the window, and
 * answers questions about it (marks, flush points, points in time, usage). Writing
 * is in appender.ts, reading records in reader.ts, restoring in pit.ts, sliding the
 * window in prune.ts. docs/STORE.md describes the layout.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { DrError } from '../errors.js';
import { RECORD_HEADER_SIZE, LIMITS, decodePayload, type MarkKind, type SequencedRecord, type VolumeRecord } from '../format/layout.js';
import { createLogger, type Logger } from '../cli/log.js';
import { formatMicros, parseTime } from '../cli/units.js';
import { exists, ioError, fsyncDir } from './files.js';
import { LockFile } from './lock.js';
import {
  SEGMENTS, parseSegmentFile, readIndexSummary, scanSegment, segmentPaths, writeIndex, RecordWalker,
  type SegmentBuilder, type SegmentSummary,
} from './segment.js';
import { StoreAppender, type Appender } from './appender.js';
import { readRecords, catStream, catChunks, type RecordsOptions, type CatOptions, type CatChunk } from './reader.js';
import { openPointInTime, type PointInTimeReader } from './pit.js';
import {
  APPEND_LOCK, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, STORE_FORMAT, readDurable, readMeta, readWindow,
  volumeFromMeta, writeMeta, type StoreMeta, type WindowState,
} from './state.js';

export interface OpenOptions {
  create?: boolean;
  readOnly?: boolean;
  log?: Logger;
  /** size of new segment files (only when the store is created); default 64 MiB */
  segmentSize?: number;
}

export interface SegmentEntry {
  firstSeq: number;
  data: string;
  index: string;
  summary: SegmentSummary;
}

export interface MarkEntry { seq: number; time: number; name: string; kind: MarkKind; id: Buffer }


export class JournalStore {
  readonly dir: string;
  groupId: Buffer | null = null;
  volumes: VolumeRecord[] = [];
  firstSeq = 1;
  lastSeq = 0;
  lastTime = 0;
  readonly log: Logger;
  readonly readOnly: boolean;
  /** @internal */ meta!: StoreMeta;
  /** @internal */ window: WindowState | null = null;
  /** @internal segments of the window, oldest first (the last may be open) */
  segments: SegmentEntry[] = [];
  /** @internal builder of the open (last, unsealed) segment, when it was scanned */
  openBuilder: SegmentBuilder | null = null;
  /** @internal the appender of this process, if any */
  activeAppender: { readonly durableSeq: number } | null = null;
  private closed = false;
  private scanCache: { file: string; result: ReturnType<typeof scanSegment> } | null = null;

  private constructor(dir: string, opts: OpenOptions) {
    this.dir = path.resolve(dir);
    this.log = opts.log ?? createLogger('drkit');
    this.readOnly = Boolean(opts.readOnly);
  }

  static async open(dir: string, opts: OpenOptions = {}): Promise<JournalStore> {
    const store = new JournalStore(dir, opts);
    store.init(opts);
    return store;
  }

  private init(opts: OpenOptions): void {
    let meta = readMeta(this.dir);
    if (meta === null) {
      if (!opts.create || this.readOnly) {
        const why = exists(this.dir) ? 'has no store.json' : 'does not exist';
        throw new DrError('DR_NO_STORE', `no journal store at ${this.dir} (the directory ${why})`);
      }
      const segmentSize = opts.segmentSize ?? DEFAULT_SEGMENT_SIZE;
      if (!Number.isSafeInteger(segmentSize) || segmentSize < MIN_SEGMENT_SIZE || segmentSize > MAX_SEGMENT_SIZE) {
        throw new DrError('DR_USAGE', `segment size ${segmentSize} must be between ${MIN_SEGMENT_SIZE} and ${MAX_SEGMENT_SIZE} bytes`);
      }
      try {
        fs.mkdirSync(path.join(this.dir, SEGMENTS), { recursive: true, mode: 0o755 });
        fs.mkdirSync(path.join(this.dir, 'base'), { recursive: true, mode: 0o755 });
      } catch (err) {
        throw ioError(err, `cannot create journal store ${this.dir}`);
      }
      meta = { format: STORE_FORMAT, version: 1, groupId: null, created: Date.now() * 1000, segmentSize, volumes: [] };
      writeMeta(this.dir, meta);
      fsyncDir(path.dirname(this.dir));
    }
    this.meta = meta;
    let lock: LockFile | null = null;
    if (!this.readOnly) {
      try {
        lock = LockFile.tryAcquire(path.join(this.dir, APPEND_LOCK), `journal store ${this.dir}`, true);
      } catch {
        lock = null; // read-only file system or the like: read the valid prefix without repairing
      }
    }
    try {
      this.load(lock !== null);
    } finally {
      lock?.release();
    }
  }

  /** @internal (Re)read the state files and segments; `repair` trims a torn tail and writes missing indexes. */
  load(repair: boolean): void {
    const meta = readMeta(this.dir);
    if (meta === null) throw new DrError('DR_NO_STORE', `no journal store at ${this.dir} (store.json is gone)`);
    this.meta = meta;
    this.groupId = meta.groupId ? Buffer.from(meta.groupId, 'hex') : null;
    this.volumes = meta.volumes.map(volumeFromMeta);
    this.window = readWindow(this.dir);
    const segDir = path.join(this.dir, SEGMENTS);
    let names: string[];
    try {
      names = fs.readdirSync(segDir);
    } catch (err) {
      throw ioError(err, `cannot list segments in ${segDir}`);
    }
    const seqs = names.map(parseSegmentFile).filter((s): s is number => s !== null).sort((a, b) => a - b);
    const windowStart = this.window?.firstSeq ?? 0;
    const segments: SegmentEntry[] = [];
    this.openBuilder = null;
    for (let i = 0; i < seqs.length; i++) {
      const firstSeq = seqs[i]!;
      const last = i === seqs.length - 1;
      const p = segmentPaths(this.dir, firstSeq);
      const idx = readIndexSummary(p.index);
      if (idx && idx.summary.sealed && idx.summary.firstSeq === firstSeq) {
        if (idx.summary.lastSeq < windowStart && !last) continue; // folded, waiting to be deleted
        segments.push({ firstSeq, ...p, summary: idx.summary });
        continue;
      }
      // the open segment: records the appender made durable need no checksum pass here (readers check them);
      // a scan of the same file by this store object continues where it stopped
      const durable = readDurable(this.dir);
      const cached = this.scanCache?.file === p.data ? this.scanCache.result : undefined;
      const scan = scanSegment(p.data, firstSeq, { trustUpTo: durable?.seq ?? 0, resume: last && !repair ? cached : undefined });
      if (last) this.scanCache = { file: p.data, result: scan };
      if (scan.builder && scan.builder.summary.lastSeq < windowStart && !last) continue;
      if (scan.fault !== null && !(last && !scan.sealed)) {
        if (!(scan.sealed && scan.builder)) throw new DrError('DR_STORE_CORRUPT', `segment ${p.data} is damaged: ${scan.fault}`);
      }
      if (scan.fault !== null && last && !scan.sealed) this.tornTail(p.data, scan, repair);
      if (!scan.builder) continue; // header-less last segment (removed when repairing)
      if (scan.sealed) {
        if (repair) this.rewriteIndex(p.index, scan.builder);
      } else if (last) {
        this.openBuilder = scan.builder;
      } else {
        throw new DrError('DR_STORE_CORRUPT', `segment ${p.data} has no END trailer but is not the last segment`);
      }
      segments.push({ firstSeq, ...p, summary: scan.builder.summary });
    }
    for (let i = 1; i < segments.length; i++) {
      const prev = segments[i - 1]!.summary;
      if (segments[i]!.firstSeq !== prev.lastSeq + 1) {
        throw new DrError('DR_STORE_CORRUPT', `segments ${segments[i - 1]!.data} (seq ${prev.firstSeq}..${prev.lastSeq}) and ${segments[i]!.data} do not follow each other`);
      }
    }
    this.segments = segments;
    const first = segments[0];
    this.firstSeq = Math.max(this.window?.firstSeq ?? 1, first ? first.firstSeq : 1);
    const lastSeg = segments[segments.length - 1];
    if (lastSeg && lastSeg.summary.records > 0) {
      this.lastSeq = lastSeg.summary.lastSeq;
      this.lastTime = lastSeg.summary.lastTime;
    } else {
      const prev = segments.length >= 2 ? segments[segments.length - 2]!.summary : null;
      this.lastSeq = prev ? prev.lastSeq : this.firstSeq - 1;
      this.lastTime = prev ? prev.lastTime : this.window?.baseTime ?? 0;
    }
    this.limitToDurable();
  }

  /**
   * Write the missing index of a sealed segment. The index only saves readers a scan of
   * the segment, so a store that cannot write it (a full disk: the appender writes
   * indexes after the segment data) still opens, with the summary just scanned.
   */
  private rewriteIndex(file: string, builder: SegmentBuilder): void {
    try {
      writeIndex(file, builder.summary, builder.extents.view());
    } catch (err) {
      this.log.warn(`${(err as Error).message}; readers scan the segment ${path.basename(file, '.idx')}.drj instead`);
    }
  }

  /** Another live appender: report only what it has made durable. */
  private limitToDurable(): void {
    if (this.activeAppender) return;
    const owner = LockFile.liveOwner(path.join(this.dir, APPEND_LOCK));
    if (owner === null || owner === process.pid) return;
    const d = readDurable(this.dir);
    const limit = d && d.pid === owner ? d.seq : this.firstSeq - 1;
    if (limit < this.lastSeq) {
      this.lastSeq = Math.max(limit, this.firstSeq - 1);
      this.lastTime = this.lastSeq >= this.firstSeq ? this.locate(this.lastSeq).time : this.window?.baseTime ?? 0;
    }
  }

  private tornTail(file: string, scan: ReturnType<typeof scanSegment>, repair: boolean): void {
    const b = scan.builder;
    const tail = scan.fileSize - scan.validEnd;
    const lastGood = b ? b.summary.lastSeq : null;
    // A torn tail is at most one record long; more than that, or losing records that
    // were made durable, is damage that must not be "repaired" away.
    const durable = readDurable(this.dir);
    const lostDurable = b && durable && durable.seq > b.summary.lastSeq && durable.seq >= b.summary.firstSeq;
    if (tail > LIMITS.maxPayload + 2 * RECORD_HEADER_SIZE + 64 || lostDurable) {
      throw new DrError('DR_STORE_CORRUPT', `segment ${file} is damaged at byte ${scan.validEnd} (${scan.fault}); ${tail} bytes follow${lostDurable ? `, seq up to ${durable!.seq} were durable` : ''}`, { offset: scan.validEnd, lastGoodSeq: lastGood ?? undefined });
    }
    if (!repair) return;
    try {
      if (!b) {
        fs.unlinkSync(file);
        fsyncDir(path.dirname(file));
        this.log.warn(`removed ${file}: its stream header was incomplete (torn at creation)`);
        return;
      }
      const fd = fs.openSync(file, 'r+');
      try {
        fs.ftruncateSync(fd, scan.validEnd);
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      throw ioError(err, `cannot trim the torn tail of ${file}`);
    }
    this.log.warn(`trimmed a torn tail of ${tail} bytes from ${path.basename(file)} (${scan.fault}); last complete record is seq ${lastGood}`);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get segmentSize(): number {
    return this.meta.segmentSize;
  }

  /** The single appender (exclusive lock file; a second one gets DR_LOCKED). */
  async appender(): Promise<Appender> {
    if (this.readOnly) throw new DrError('DR_USAGE', `journal store ${this.dir} was opened read-only`);
    return StoreAppender.create(this);
  }

  /** Decoded records from fromSeq (default: the window start); follow waits for new durable records until the signal aborts. */
  records(opts: RecordsOptions = {}): AsyncIterable<SequencedRecord> {
    return readRecords(this, opts);
  }

  /** A valid stream (header, VOLUME records, records, END) of the stored records. */
  catStream(opts: CatOptions = {}): Readable {
    return catStream(this, opts);
  }

  /** catStream()'s bytes as chunks read into a few reused buffers: release each once it was written out. */
  catChunks(opts: CatOptions = {}): AsyncIterable<CatChunk> {
    return catChunks(this, { ...opts, reuse: true });
  }

  /** Restore engine: the volumes as of `seq`, read on demand. Holds a read lease until release(). */
  async pointInTime(seq: number): Promise<PointInTimeReader> {
    return openPointInTime(this, seq);
  }

  /** Marks in the window, oldest first. */
  marks(): MarkEntry[] {
    const out: MarkEntry[] = [];
    for (const s of this.segments) {
      for (const m of s.summary.marks) {
        if (m.seq >= this.firstSeq && m.seq <= this.lastSeq) out.push({ seq: m.seq, time: m.time, name: m.name, kind: m.kind, id: Buffer.from(m.id.replace(/-/g, ''), 'hex') });
      }
    }
    return out;
  }

  /** Marks folded into the base by earlier prunes (no longer restorable). */
  foldedMarks(): MarkEntry[] {
    return (this.window?.foldedMarks ?? []).map((m) => ({ seq: m.seq, time: m.time, name: m.name, kind: m.kind, id: Buffer.from(m.id.replace(/-/g, ''), 'hex') }));
  }

  flushPoints(): Array<{ seq: number; time: number }> {
    const out: Array<{ seq: number; time: number }> = [];
    for (const s of this.segments) {
      for (const [seq, time] of s.summary.flushes) if (seq >= this.firstSeq && seq <= this.lastSeq) out.push({ seq, time });
    }
    return out;
  }

  /** Window description for messages. */
  describeWindow(): string {
    if (this.lastSeq < this.firstSeq) return `the store holds no records (window starts at seq ${this.firstSeq})`;
    const ft = this.segmentFor(this.firstSeq)?.summary;
    const from = ft ? formatMicros(this.locate(this.firstSeq).time) : '?';
    return `the window is seq ${this.firstSeq}..${this.lastSeq} (${from} .. ${formatMicros(this.lastTime)})`;
  }

  /** The state at a point: 'latest' | 'seq:N' | 'mark:NAME' | ISO-8601 time. */
  resolvePoint(point: string): { seq: number; time: number } {
    const p = point.trim();
    const base = this.firstSeq - 1;
    const baseTime = this.window?.baseTime ?? 0;
    if (p === 'latest') {
      if (this.lastSeq < this.firstSeq && base < 1) throw new DrError('DR_OUTSIDE_WINDOW', `point latest: ${this.describeWindow()}`);
      return { seq: this.lastSeq, time: this.lastSeq >= this.firstSeq ? this.lastTime : baseTime };
    }
    let m = /^seq:(\d+)$/.exec(p);
    if (m) {
      const seq = Number(m[1]);
      if (!Number.isSafeInteger(seq)) throw new DrError('DR_BAD_POINT', `bad point ${JSON.stringify(point)}: seq too large`);
      if (seq === base && seq >= 0) return { seq, time: baseTime };
      if (seq < this.firstSeq || seq > this.lastSeq) throw new DrError('DR_OUTSIDE_WINDOW', `point seq:${seq} is outside the window: ${this.describeWindow()}`);
      return { seq, time: this.locate(seq).time };
    }
    m = /^mark:(.+)$/s.exec(p);
    if (m) {
      const name = m[1]!;
      const found = this.marks().filter((x) => x.name === name).pop();
      if (found) return { seq: found.seq, time: found.time };
      const folded = this.foldedMarks().filter((x) => x.name === name).pop();
      if (folded) throw new DrError('DR_OUTSIDE_WINDOW', `mark ${JSON.stringify(name)} (seq ${folded.seq}) was folded into the base images by prune: ${this.describeWindow()}`);
      throw new DrError('DR_BAD_POINT', `no mark named ${JSON.stringify(name)} in ${this.dir}`);
    }
    if (!/^\d{4}-\d{2}-\d{2}/.test(p)) {
      throw new DrError('DR_BAD_POINT', `bad point ${JSON.stringify(point)}: use latest, seq:N, mark:NAME or an ISO-8601 time`);
    }
    const t = parseTime(p);
    const found = this.seqAtTime(t);
    if (found === null) {
      if (base >= 1 && t >= baseTime) return { seq: base, time: baseTime };
      throw new DrError('DR_OUTSIDE_WINDOW', `point ${p} is before the window: ${this.describeWindow()}`);
    }
    return found;
  }

  /** @internal the segment holding `seq`, if any */
  segmentFor(seq: number): SegmentEntry | undefined {
    const segs = this.segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = segs[mid]!;
      if (seq < s.firstSeq) hi = mid - 1;
      else if (seq > s.summary.lastSeq) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  /** @internal offset and time of record `seq` (must be stored), found through the sparse index. */
  locate(seq: number): { segment: SegmentEntry; offset: number; time: number } {
    const segment = this.segmentFor(seq);
    if (!segment) throw new DrError('DR_OUTSIDE_WINDOW', `seq ${seq} is not stored: ${this.describeWindowSafe()}`);
    const sparse = segment.summary.sparse;
    let lo = 0;
    let hi = sparse.length - 1;
    let start = segment.summary.headerEnd;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [s, , off] = sparse[mid]!;
      if (s <= seq) {
        start = off;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const fd = this.openSegmentFd(segment);
    try {
      const w = new RecordWalker(fd, segment.data, start, segment.summary.dataEnd, 64 * 1024);
      for (let r = w.next(); r; r = w.next()) {
        if (r.h.seq === seq) return { segment, offset: r.offset, time: r.h.time };
      }
    } finally {
      fs.closeSync(fd);
    }
    throw new DrError('DR_STORE_CORRUPT', `seq ${seq} not found in ${segment.data}`);
  }

  private describeWindowSafe(): string {
    return `the window is seq ${this.firstSeq}..${this.lastSeq}`;
  }

  /** Last record with time <= t, or null when t is before the first record. */
  seqAtTime(t: number): { seq: number; time: number } | null {
    let seg: SegmentEntry | undefined;
    for (const s of this.segments) {
      if (s.summary.records === 0 || s.summary.lastSeq < this.firstSeq) continue;
      if (s.summary.firstTime <= t) seg = s;
      else break;
    }
    if (!seg) return null;
    let start = seg.summary.headerEnd;
    for (const [, time, off] of seg.summary.sparse) {
      if (time <= t) start = off;
      else break;
    }
    let best: { seq: number; time: number } | null = null;
    const fd = this.openSegmentFd(seg);
    try {
      const w = new RecordWalker(fd, seg.data, start, seg.summary.dataEnd, 64 * 1024);
      for (let r = w.next(); r; r = w.next()) {
        if (r.h.seq > this.lastSeq || r.h.time > t) break;
        if (r.h.seq >= this.firstSeq) best = { seq: r.h.seq, time: r.h.time };
      }
    } finally {
      fs.closeSync(fd);
    }
    return best;
  }

  /** @internal */
  openSegmentFd(segment: SegmentEntry): number {
    try {
      return fs.openSync(segment.data, 'r');
    } catch (err) {
      throw ioError(err, `cannot open segment ${segment.data}`);
    }
  }

  /** @internal decode one record found by locate() */
  readRecordAt(segment: SegmentEntry, offset: number): SequencedRecord {
    const fd = this.openSegmentFd(segment);
    try {
      const w = new RecordWalker(fd, segment.data, offset, segment.summary.dataEnd, 64 * 1024);
      const r = w.next();
      if (!r) throw new DrError('DR_STORE_CORRUPT', `no record at byte ${offset} of ${segment.data}`);
      return decodePayload(r.h, r.payload, this.volumes) as SequencedRecord;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Usage figures for `dr-journal ls`. */
  info(): StoreInfo {
    let segBytes = 0;
    let records = 0;
    let writeBytes = 0;
    let zeroBytes = 0;
    for (const s of this.segments) {
      segBytes += s.summary.size;
      if (s.summary.lastSeq >= this.firstSeq) records += Math.min(s.summary.lastSeq, this.lastSeq) - Math.max(s.firstSeq, this.firstSeq) + 1;
      writeBytes += s.summary.writeBytes;
      zeroBytes += s.summary.zeroBytes;
    }
    const first = this.lastSeq >= this.firstSeq ? this.locate(this.firstSeq).time : null;
    return {
      dir: this.dir,
      groupId: this.groupId ? this.groupId.toString('hex') : null,
      volumes: this.volumes.map((v) => ({ index: v.index, name: v.name, size: v.size, blockSize: v.blockSize, id: v.id.toString('hex') })),
      firstSeq: this.firstSeq,
      lastSeq: this.lastSeq,
      firstTime: first,
      lastTime: this.lastSeq >= this.firstSeq ? this.lastTime : null,
      records,
      writeBytes,
      zeroBytes,
      segmentBytes: segBytes,
      segmentSize: this.meta.segmentSize,
      segments: this.segments.map((s) => ({
        file: path.relative(this.dir, s.data), firstSeq: s.firstSeq, lastSeq: s.summary.lastSeq, records: s.summary.records,
        bytes: s.summary.size, sealed: s.summary.sealed,
      })),
      baseGeneration: this.window?.baseGen ?? 0,
      baseTime: this.window?.baseTime ?? null,
      foldedRecords: this.window?.foldedRecords ?? 0,
      diskBytes: diskUse(this.dir),
    };
  }
}

export interface StoreInfo {
  dir: string;
  groupId: string | null;
  volumes: Array<{ index: number; name: string; size: number; blockSize: number; id: string }>;
  firstSeq: number;
  lastSeq: number;
  firstTime: number | null;
  lastTime: number | null;
  records: number;
  writeBytes: number;
  zeroBytes: number;
  segmentBytes: number;
  segmentSize: number;
  segments: Array<{ file: string; firstSeq: number; lastSeq: number; records: number; bytes: number; sealed: boolean }>;
  baseGeneration: number;
  baseTime: number | null;
  foldedRecords: number;
  diskBytes: number;
}

function diskUse(dir: string): number {
  let total = 0;
  const walk = (d: string): void => {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n.name);
      if (n.isDirectory()) walk(p);
      else {
        try {
          total += fs.statSync(p).blocks * 512;
        } catch { /* raced with a delete */ }
      }
    }
  };
  walk(dir);
  return total;
}

