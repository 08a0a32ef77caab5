/**
 * The point-in-time reader: the restore engine. For a seq S it resolves, newest
 * first, which record last wrote each block of each volume at S, using the extent
 * tables of the segments (index files, or a scan of the open segment) - never by
 * replaying data. The result is a block map bounded by the volume size (allocated
 * lazily in chunks of 64Ki blocks), and reads are preads from segments, with the
 * base image (or zeroes) for blocks no record in the window touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DrError } from '../errors.js';
import { WRITE_DATA_AT, type VolumeRecord } from '../format/layout.js';
import { ioError, preadSync } from './files.js';
import { READ_OP_FIELDS, readCheckedWrite } from './record-read.js';
import { Lease } from './lock.js';
import { EXTENT_FIELDS, overlappingExtents, readIndexExtents, readIndexSummary, scanSegment, type ExtentTables } from './segment.js';
import { baseFiles, baseRegionRuns, readBaseMap, regionSet, REGION } from './base.js';
import type { JournalStore, SegmentEntry } from './store.js';

export interface PointInTimeReader {
  readonly seq: number;
  readonly time: number;
  readonly volumes: VolumeRecord[];
  /**
   * The volume's bytes as of `seq`. With `into` (at least `length` bytes) they may be
   * read into it (no allocation per read): use the buffer returned, which is then
   * `into`'s first `length` bytes or a new one.
   */
  read(volume: number, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /** ranges that may be non-zero (for sparse output), in order */
  allocated(volume: number): AsyncIterable<{ offset: number; length: number }>;
  /**
   * The byte ranges of local files (segment data files, base images; absolute paths)
   * that a read of [offset, offset+length) would pread, coalesced where adjacent, in no
   * particular order; blocks served as zeroes need none. A record this reader has not
   * checked yet is named whole (header and all its data: its first read checks its CRC).
   * Needs only the index files and base maps (opening the reader reads no segment data of
   * sealed segments), so the data can be fetched before it is read.
   */
  sources(volume: number, offset: number, length: number): Array<{ file: string; pos: number; length: number }>;
  /** Present on the store's own reader (not on wrappers that must see every read): see WholeVolumeSource. */
  readonly whole?: WholeVolumeSource;
  /**
   * Present on a reader whose reads run on a thread of its own (image/restore-preads.ts):
   * performs readOps-style rows there (every `at` 0: the bytes go to a scratch buffer),
   * e.g. half of the page-cache prefetch alongside this thread's half.
   */
  readonly readAlongside?: (ops: Float64Array) => Promise<void>;
  release(): Promise<void>;
}

/** run sources of WholeVolumeSource.runs() other than a segment (src >= 0) */
export const SOURCE_ZERO = -1;
export const SOURCE_BASE = -2;
export const SOURCE_PARTIAL = -3;

/**
 * For a writer producing a whole volume at once (dr-restore --out): where every
 * block's bytes are, so that it can read each source file in file order with large
 * sequential reads instead of one pread per block in volume order.
 */
export interface WholeVolumeSource {
  /**
   * visit(at, n, src, pos) for the whole volume in volume order, once the block map is
   * complete: src >= 0 is segment src (pos: position in it), SOURCE_BASE the base image
   * (pos: the volume offset; zeroes where it has no data), SOURCE_ZERO zeroes, and
   * SOURCE_PARTIAL one block written in pieces (read it with read()).
   */
  runs(volume: number, visit: (at: number, n: number, src: number, pos: number) => void): Promise<void>;
  /** `n` bytes of source `src` (a segment or SOURCE_BASE) at `pos` into dst, on this thread */
  readFromSync(volume: number, src: number, pos: number, n: number, dst: Buffer): void;
  /**
   * A read of [offset, offset+length) as positional reads for another thread to
   * perform (the descriptors are the process's): rows of READ_OP_FIELDS numbers
   * (record-read.ts) [file (an index into readFiles(), -1: zeroes), pos, n, at (offset in
   * the destination), and the WRITE record to read whole and check first, if any], to be
   * done in order (a later row may overwrite part of an earlier one). The records named
   * count as checked from then on: a failed check must fail the whole restore.
   */
  readOps(volume: number, offset: number, length: number): Promise<Float64Array>;
  /** the files of readOps(): descriptor, path, name, and whether a short read means zeroes (a base image) or a damaged file */
  readFiles(): Array<{ fd: number; path: string; name: string; zeroesPastEnd: boolean }>;
  /** the index into readFiles() of source `src` (a segment or SOURCE_BASE) of `volume`; -1: none (zeroes) */
  fileOf(volume: number, src: number): number;
}

export { READ_OP_FIELDS };

const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
/** block states (in `src`): 0 = not written in the window (base), -1 = zeroes, -2 = partial, n > 0 = data in segment slot n-1 */
const ZERO = -1;
const PARTIAL = -2;
/** in a block's `recLen`: the record was read whole and its checksum matched */
const CHECKED = 0x80000000;
/** segment positions are kept in 32 bits: a segment is at most 1 GiB plus one record */
const POS_LIMIT = 2 ** 32;

/** `rec`, `recLen`: where the data of the WRITE record holding these bytes starts in its segment, and its length (-1: zeroes) */
interface Piece { slot: number; pos: number; start: number; end: number; rec: number; recLen: number }
interface Partial { pieces: Piece[]; floor: { slot: number; pos: number; rec: number; recLen: number } | null }

/**
 * Newest-first resolution of one volume's blocks: per block (in chunks of 64Ki blocks,
 * 16 bytes each) its state, its data position in its segment, and the data start and
 * length of the WRITE record it comes from (which a read checks once: record-read.ts).
 */
class BlockMap {
  readonly blocks: number;
  readonly src: Array<Int32Array | undefined>;
  readonly pos: Array<Uint32Array | undefined>;
  readonly rec: Array<Uint32Array | undefined>;
  readonly recLen: Array<Uint32Array | undefined>;
  readonly partial = new Map<number, Partial>();
  /** records of partial blocks checked already (slot * 2^32 + rec): a large record under many small overwrites is read whole once, not once per block */
  readonly checkedPartial = new Set<number>();
  resolved = 0;

  constructor(readonly size: number, readonly bs: number) {
    this.blocks = Math.ceil(size / bs);
    const chunks = Math.ceil(this.blocks / CHUNK);
    this.src = new Array<Int32Array | undefined>(chunks);
    this.pos = new Array<Uint32Array | undefined>(chunks);
    this.rec = new Array<Uint32Array | undefined>(chunks);
    this.recLen = new Array<Uint32Array | undefined>(chunks);
  }

  get complete(): boolean {
    return this.resolved >= this.blocks;
  }

  state(g: number): number {
    const c = this.src[g >>> CHUNK_BITS];
    return c ? c[g & (CHUNK - 1)]! : 0;
  }
  position(g: number): number {
    return this.pos[g >>> CHUNK_BITS]![g & (CHUNK - 1)]!;
  }
  /** `rec` of a partial block's piece or floor, or -1 once that record has been checked */
  partialRecord(slot: number, rec: number): number {
    return this.checkedPartial.has(slot * POS_LIMIT + rec) ? -1 : rec;
  }
  /** data start of the record block g (state > 0) comes from; -1 once that record has been checked */
  uncheckedRecord(g: number): number {
    const i = g & (CHUNK - 1);
    return this.recLen[g >>> CHUNK_BITS]![i]! & CHECKED ? -1 : this.rec[g >>> CHUNK_BITS]![i]!;
  }
  recordLength(g: number): number {
    return (this.recLen[g >>> CHUNK_BITS]![g & (CHUNK - 1)]! & ~CHECKED) >>> 0;
  }
  private set(g: number, s: number, p: number, rec: number, recLen: number): void {
    const ci = g >>> CHUNK_BITS;
    let c = this.src[ci];
    if (!c) {
      c = this.src[ci] = new Int32Array(CHUNK);
      this.pos[ci] = new Uint32Array(CHUNK);
      this.rec[ci] = new Uint32Array(CHUNK);
      this.recLen[ci] = new Uint32Array(CHUNK);
    }
    const i = g & (CHUNK - 1);
    c[i] = s;
    if (s <= 0) return;
    this.pos[ci]![i] = p;
    this.rec[ci]![i] = rec;
    this.recLen[ci]![i] = recLen;
  }

  /**
   * Record `rec` of slot `slot` (data at volume offset `offset`, `length` bytes) has been
   * checked: so say the blocks that still come from it.
   */
  markChecked(slot: number, rec: number, offset: number, length: number): void {
    if (this.partial.size > 0) this.checkedPartial.add(slot * POS_LIMIT + rec);
    const end = Math.min(offset + length, this.size);
    for (let g = Math.floor(offset / this.bs); g * this.bs < end; g++) {
      const ci = g >>> CHUNK_BITS;
      const i = g & (CHUNK - 1);
      if (this.src[ci]?.[i] === slot + 1 && this.rec[ci]![i] === rec) this.recLen[ci]![i] = (this.recLen[ci]![i]! | CHECKED) >>> 0;
    }
  }

  /**
   * An older extent than every one applied so far: fills what is still unresolved. `pos` -1 =
   * zeroes; else `rec` and `recLen` are where the data of its whole record starts and its
   * length (the extent may be a clipped part of it).
   */
  apply(slot: number, offset: number, length: number, pos: number, rec = pos, recLen = length): void {
    const bs = this.bs;
    const end = Math.min(offset + length, this.size);
    if (end <= offset) return;
    if (pos >= 0 && rec + recLen > POS_LIMIT) throw new DrError('DR_STORE_CORRUPT', `an extent of segment ${slot} of the point ends at byte ${rec + recLen}, past what a segment can hold`);
    const g0 = Math.floor(offset / bs);
    const g1 = Math.floor((end - 1) / bs);
    for (let g = g0; g <= g1; g++) {
      const ci = g >>> CHUNK_BITS;
      const chunk = this.src[ci];
      const s = chunk ? chunk[g & (CHUNK - 1)]! : 0;
      if (s !== 0 && s !== PARTIAL) continue;
      const gs = g * bs;
      const ge = Math.min(gs + bs, this.size);
      const cs = offset > gs ? offset : gs;
      const ce = end < ge ? end : ge;
      const full = cs === gs && ce === ge;
      const p = pos < 0 ? -1 : pos + (cs - offset);
      if (s === 0) {
        if (full) {
          this.set(g, pos < 0 ? ZERO : slot + 1, p, rec, recLen);
          this.resolved++;
        } else {
          this.set(g, PARTIAL, 0, 0, 0);
          this.partial.set(g, { pieces: [{ slot, pos: p, start: cs - gs, end: ce - gs, rec, recLen }], floor: null });
        }
      } else {
        const part = this.partial.get(g)!;
        if (part.floor) continue;
        if (full) {
          part.floor = { slot, pos: p, rec, recLen };
          this.resolved++;
        } else {
          part.pieces.push({ slot, pos: p, start: cs - gs, end: ce - gs, rec, recLen });
        }
      }
    }
  }
}

interface Slot { data: string; fd: number; segment: SegmentEntry; idx?: ExtentTables | null; idxFd?: number; extents?: Float64Array }

class PitReader implements PointInTimeReader, WholeVolumeSource {
  readonly volumes: VolumeRecord[];
  private readonly maps: BlockMap[];
  private readonly slots: Slot[] = [];
  private readonly baseFds: Array<number | null> = [];
  private readonly baseMaps: Array<Uint8Array | null> = [];
  /** absolute path of each volume's open base image (null: none, zeroes) */
  private readonly basePaths: Array<string | null> = [];
  private lease: Lease = Lease.none();
  private released = false;
  /** the whole block map is resolved (built in the background after open) */
  private ready = false;
  building: Promise<void> = Promise.resolve();
  readonly whole: WholeVolumeSource = this;

  constructor(private readonly store: JournalStore, readonly seq: number, readonly time: number) {
    this.volumes = store.volumes.map((v) => ({ ...v }));
    this.maps = this.volumes.map((v) => new BlockMap(v.size, v.blockSize));
  }

  open(): void {
    const store = this.store;
    const gen = store.window?.baseGen ?? 0;
    const segs: SegmentEntry[] = store.segments.filter((s) => s.firstSeq <= this.seq && s.summary.lastSeq >= store.firstSeq && s.summary.records > 0);
    const files: string[] = segs.flatMap((s) => [path.relative(store.dir, s.data), path.relative(store.dir, s.index)]);
    if (gen > 0) for (const v of this.volumes) files.push(path.relative(store.dir, baseFiles(store.dir, v.index, gen).img));
    if (!store.readOnly) {
      try {
        this.lease = Lease.take(store.dir, { seq: this.seq, files });
      } catch {
        this.lease = Lease.none(); // cannot write (read-only medium): nothing can prune it either
      }
    }
    // open everything now: once open, a file deleted by a racing prune stays readable
    for (const v of this.volumes) {
      if (gen === 0) {
        this.baseFds.push(null);
        this.baseMaps.push(new Uint8Array(0));
        this.basePaths.push(null);
        continue;
      }
      const f = baseFiles(store.dir, v.index, gen);
      try {
        const fd = fs.openSync(f.img, 'r');
        this.baseFds.push(fd); // pushed at once: release() closes it if reading the map fails
        try {
          this.baseMaps.push(readBaseMap(f.map, v.size));
        } catch (err) {
          this.baseFds.pop();
          fs.closeSync(fd);
          throw err;
        }
        this.basePaths.push(path.resolve(f.img));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, `cannot open base image ${f.img}`);
        this.baseFds.push(null); // a volume added after the last prune has no base: zeroes
        this.baseMaps.push(new Uint8Array(0));
        this.basePaths.push(null);
      }
    }
    for (const s of segs) {
      let fd: number;
      try {
        fd = fs.openSync(s.data, 'r');
      } catch (err) {
        throw ioError(err, `cannot open segment ${s.data}`);
      }
      const slot: Slot = { data: s.data, fd, segment: s };
      if (s.summary.sealed) {
        try {
          slot.idxFd = fs.openSync(s.index, 'r');
        } catch {
          /* rebuilt from the segment when needed */
        }
      }
      this.slots.push(slot);
    }
    this.building = this.build();
    this.building.catch(() => undefined);
  }

  /** Newest first: the first extent seen for a block is the one that counts. Yields between segments. */
  private async build(): Promise<void> {
    const scratch = { buf: Buffer.alloc(0) };
    for (let i = this.slots.length - 1; i >= 0; i--) {
      if (this.released) return;
      if (this.maps.every((m) => m.complete)) break;
      const slot = this.slots[i]!;
      // every sealed segment's table read into one reused buffer (a journal whose writes never
      // covered the whole volume is read back to its start: a new table per segment was that
      // much garbage, 40 MiB per 4 GiB of 4 KiB writes)
      const ext = this.extentsOf(slot, scratch);
      for (let e = ext.length - EXTENT_FIELDS; e >= 0; e -= EXTENT_FIELDS) {
        if (ext[e]! > this.seq) continue;
        const map = this.maps[ext[e + 1]!];
        if (!map) throw new DrError('DR_STORE_CORRUPT', `segment ${slot.data} writes to volume ${ext[e + 1]} which the store does not have`);
        map.apply(i, ext[e + 2]!, ext[e + 3]!, ext[e + 4]!);
      }
      slot.extents = undefined;
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.ready = true;
  }

  /**
   * What reading a sealed segment's extent tables needs: only that is kept, not the index's
   * whole summary (its sparse seq index and flush list, already held by the store), which
   * made the reader's memory grow by ~1 MiB per GiB of journal.
   */
  private indexOf(slot: Slot): ExtentTables | null {
    if (slot.idx === undefined) {
      const idx = slot.segment.summary.sealed ? readIndexSummary(slot.segment.index) : null;
      slot.idx = idx && {
        extentsAt: idx.extentsAt,
        summary: { extentCount: idx.summary.extentCount, sortedExtents: idx.summary.sortedExtents, maxExtentLength: idx.summary.maxExtentLength },
      };
    }
    return slot.idx;
  }

  /** A segment's extent table; with `scratch`, read into that memory (valid until its next use). */
  private extentsOf(slot: Slot, scratch?: { buf: Buffer }): Float64Array {
    if (slot.extents) return slot.extents;
    const store = this.store;
    const s = slot.segment;
    if (store.openBuilder && store.openBuilder.summary === s.summary) return store.openBuilder.extents.view();
    const idx = this.indexOf(slot);
    if (idx) return readIndexExtents(s.index, idx, scratch);
    const scan = scanSegment(s.data, s.firstSeq);
    if (!scan.builder) throw new DrError('DR_STORE_CORRUPT', `segment ${s.data} has no stream header`);
    return scan.builder.extents.view();
  }

  /** Extents of `volume` overlapping [start, end) in one segment (flat rows). */
  private overlapping(slot: Slot, volume: number, start: number, end: number): ArrayLike<number> {
    const idx = this.indexOf(slot);
    if (idx && idx.summary.sortedExtents && slot.idxFd !== undefined) return overlappingExtents(slot.idxFd, slot.segment.index, idx, volume, start, end);
    // the open segment (or an old index file): filter the whole table, kept for the next read
    const ext = (slot.extents ??= this.extentsOf(slot));
    const out: number[] = [];
    for (let e = 0; e < ext.length; e += EXTENT_FIELDS) {
      if (ext[e + 1] === volume && ext[e + 2]! < end && ext[e + 2]! + ext[e + 3]! > start) for (let f = 0; f < EXTENT_FIELDS; f++) out.push(ext[e + f]!);
    }
    return out;
  }

  /** Before the block map is complete: resolve just the blocks of [offset, offset+length), newest segment first, through the sorted extent tables. */
  private resolveEarly(volume: number, offset: number, length: number): BlockMap {
    const v = this.volumes[volume]!;
    const bs = v.blockSize;
    const ws = Math.floor(offset / bs) * bs;
    const we = Math.min(Math.ceil((offset + length) / bs) * bs, v.size);
    const local = new BlockMap(v.size, bs);
    const blocks = Math.ceil((we - ws) / bs);
    for (let i = this.slots.length - 1; i >= 0 && local.resolved < blocks; i--) {
      const rows = this.overlapping(this.slots[i]!, volume, ws, we);
      const order: number[] = [];
      for (let e = 0; e < rows.length; e += EXTENT_FIELDS) if (rows[e]! <= this.seq) order.push(e);
      order.sort((a, b) => rows[b]! - rows[a]!);
      for (const e of order) {
        const off = rows[e + 2]!;
        const cs = Math.max(off, ws);
        const ce = Math.min(off + rows[e + 3]!, we);
        if (ce <= cs) continue;
        const pos = rows[e + 4]!;
        local.apply(i, cs, ce - cs, pos < 0 ? -1 : pos + (cs - off), pos, rows[e + 3]!);
      }
    }
    return local;
  }

  private checkRange(volume: number, offset: number, length: number): BlockMap {
    if (this.released) throw new DrError('DR_USAGE', 'point-in-time reader already released');
    const map = this.maps[volume];
    const v = this.volumes[volume];
    if (!map || !v) throw new DrError('DR_OUT_OF_RANGE', `no volume ${volume} in ${this.store.dir}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > v.size) {
      throw new DrError('DR_OUT_OF_RANGE', `read ${offset}+${length} is past the end of volume ${v.name} (${v.size} bytes)`);
    }
    return map;
  }

  async read(volume: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkRange(volume, offset, length);
    if (!this.ready) {
      await Promise.race([this.building, new Promise((resolve) => setImmediate(resolve))]);
      if (!this.ready) return this.readSync(volume, offset, length, this.resolveEarly(volume, offset, length), into);
    }
    return this.readSync(volume, offset, length, undefined, into);
  }

  readSync(volume: number, offset: number, length: number, given?: BlockMap, into?: Buffer): Buffer {
    const checked = this.checkRange(volume, offset, length);
    const out = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const map = given ?? checked;
    this.walk(volume, offset, length, map, (at, n, src, pos, rec, recLen) => {
      // segment data (the common case, one 4 KiB block per call after random writes) goes straight into `out`
      if (src >= 0) {
        if (rec < 0) return this.pread(this.slots[src]!, pos, n, out, at - offset);
        // the first read from a record reads all of it and checks it
        const slot = this.slots[src]!;
        const recOffset = at - (pos - rec);
        readCheckedWrite(slot.fd, slot.data, rec, recLen, volume, recOffset, pos, n, out, at - offset);
        map.markChecked(src, rec, recOffset, recLen);
      } else if (src === SOURCE_ZERO) out.fill(0, at - offset, at - offset + n);
      else this.readBase(volume, pos, out.subarray(at - offset, at - offset + n));
    });
    return out;
  }

  sources(volume: number, offset: number, length: number): Array<{ file: string; pos: number; length: number }> {
    const checked = this.checkRange(volume, offset, length);
    const map = this.ready ? checked : this.resolveEarly(volume, offset, length);
    const byFile = new Map<string, Array<{ pos: number; end: number }>>();
    const add = (file: string, pos: number, n: number): void => {
      let list = byFile.get(file);
      if (!list) byFile.set(file, (list = []));
      list.push({ pos, end: pos + n });
    };
    this.walk(volume, offset, length, map, (at, n, src, pos, rec, recLen) => {
      if (src === SOURCE_ZERO) return;
      // absolute: store.dir is resolved; a record not checked yet is read whole
      if (src !== SOURCE_BASE) return rec < 0 ? add(this.slots[src]!.data, pos, n) : add(this.slots[src]!.data, rec - WRITE_DATA_AT, WRITE_DATA_AT + recLen);
      const file = this.basePaths[volume];
      if (!file) return;
      // only the regions the base holds data in are read
      baseRegionRuns(this.baseMaps[volume] ?? null, pos, n, (s, e, held) => {
        if (held) add(file, s, e - s);
      });
    });
    const out: Array<{ file: string; pos: number; length: number }> = [];
    for (const [file, list] of byFile) {
      list.sort((a, b) => a.pos - b.pos);
      let cur = list[0]!;
      for (const r of list.slice(1)) {
        if (r.pos <= cur.end) cur.end = Math.max(cur.end, r.end);
        else {
          out.push({ file, pos: cur.pos, length: cur.end - cur.pos });
          cur = r;
        }
      }
      out.push({ file, pos: cur.pos, length: cur.end - cur.pos });
    }
    return out;
  }

  /**
   * Where the bytes of [offset, offset+length) come from, in runs: visit(at, n, src, pos)
   * with src a slot index (n bytes at segment position pos), SOURCE_BASE (the base
   * image at volume offset pos) or SOURCE_ZERO. Visits of one partial block come oldest
   * first and overlap: a later visit's bytes replace an earlier one's. For segment data,
   * rec >= 0 when its record has not been checked yet: the record's data starts at rec and
   * has recLen bytes (a run never spans two records: their data are never contiguous).
   */
  private walk(
    volume: number, offset: number, length: number, map: BlockMap,
    visit: (at: number, n: number, src: number, pos: number, rec: number, recLen: number) => void, partialAsOne = false,
  ): void {
    const bs = map.bs;
    const end = offset + length;
    let cur = offset;
    while (cur < end) {
      const g = Math.floor(cur / bs);
      const s = map.state(g);
      const gs = g * bs;
      if (s === PARTIAL) {
        const ge = Math.min(gs + bs, map.size, end);
        if (partialAsOne) {
          visit(cur, ge - cur, SOURCE_PARTIAL, 0, -1, 0);
          cur = ge;
          continue;
        }
        // the records of a partial block: checked once (checkedPartial)
        const part = map.partial.get(g)!;
        const floor = part.floor;
        if (floor === null) visit(cur, ge - cur, SOURCE_BASE, cur, -1, 0);
        else if (floor.pos < 0) visit(cur, ge - cur, SOURCE_ZERO, 0, -1, 0);
        else visit(cur, ge - cur, floor.slot, floor.pos + (cur - gs), map.partialRecord(floor.slot, floor.rec), floor.recLen);
        for (let i = part.pieces.length - 1; i >= 0; i--) {
          const p = part.pieces[i]!;
          const ps = Math.max(gs + p.start, cur);
          const pe = Math.min(gs + p.end, ge);
          if (pe <= ps) continue;
          if (p.pos < 0) visit(ps, pe - ps, SOURCE_ZERO, 0, -1, 0);
          else visit(ps, pe - ps, p.slot, p.pos + (ps - gs - p.start), map.partialRecord(p.slot, p.rec), p.recLen);
        }
        cur = ge;
        continue;
      }
      // extend the run while the source continues
      let runEnd = Math.min(gs + bs, end);
      let g2 = g + 1;
      if (s > 0) {
        let p = map.position(g) + bs;
        while (runEnd < end && map.state(g2) === s && map.position(g2) === p) {
          runEnd = Math.min((g2 + 1) * bs, end);
          g2++;
          p += bs;
        }
      } else {
        while (runEnd < end && map.state(g2) === s) {
          runEnd = Math.min((g2 + 1) * bs, end);
          g2++;
        }
      }
      const n = runEnd - cur;
      if (s === ZERO) visit(cur, n, SOURCE_ZERO, 0, -1, 0);
      else if (s === 0) visit(cur, n, SOURCE_BASE, cur, -1, 0);
      else visit(cur, n, s - 1, map.position(g) + (cur - gs), map.uncheckedRecord(g), map.recordLength(g));
      cur = runEnd;
    }
  }

  async runs(volume: number, visit: (at: number, n: number, src: number, pos: number) => void): Promise<void> {
    const map = this.checkRange(volume, 0, 0);
    await this.building;
    if (!this.ready) throw new DrError('DR_USAGE', 'point-in-time reader already released');
    const fd = this.baseFds[volume];
    const bmap = this.baseMaps[volume] ?? null;
    this.walk(volume, 0, map.size, map, (at, n, src, pos) => {
      if (src !== SOURCE_BASE) return visit(at, n, src, pos);
      if (fd === null || fd === undefined) return visit(at, n, SOURCE_ZERO, 0);
      // regions the base never held data in are zeroes: nothing to read
      baseRegionRuns(bmap, at, n, (s, e, held) => visit(s, e - s, held ? SOURCE_BASE : SOURCE_ZERO, held ? s : 0));
    }, true);
  }

  readFromSync(volume: number, src: number, pos: number, n: number, dst: Buffer): void {
    if (this.released) throw new DrError('DR_USAGE', 'point-in-time reader already released');
    if (src >= 0) this.pread(this.slots[src]!, pos, n, dst, 0);
    else if (src === SOURCE_BASE) this.readBase(volume, pos, dst.subarray(0, n));
    else dst.fill(0, 0, n);
  }

  async readOps(volume: number, offset: number, length: number): Promise<Float64Array> {
    const checked = this.checkRange(volume, offset, length);
    if (!this.ready) await Promise.race([this.building, new Promise((resolve) => setImmediate(resolve))]);
    const map = this.ready ? checked : this.resolveEarly(volume, offset, length);
    const bmap = this.baseMaps[volume] ?? null;
    const baseFile = this.fileOf(volume, SOURCE_BASE);
    // rows written straight into a typed array (a list of numbers copied into one at the end was a third of this thread's garbage)
    let ops = new Float64Array(READ_OP_FIELDS * (16 + Math.ceil(length / map.bs)));
    let rows = 0;
    const row = (file: number, pos: number, n: number, at: number, rec: number, recLen: number, recOffset: number): void => {
      const i = rows++ * READ_OP_FIELDS;
      if (i + READ_OP_FIELDS > ops.length) {
        const grown = new Float64Array(ops.length * 2);
        grown.set(ops);
        ops = grown;
      }
      ops[i] = file;
      ops[i + 1] = pos;
      ops[i + 2] = n;
      ops[i + 3] = at;
      ops[i + 4] = rec;
      ops[i + 5] = recLen;
      ops[i + 6] = volume;
      ops[i + 7] = recOffset;
    };
    this.walk(volume, offset, length, map, (at, n, src, pos, rec, recLen) => {
      if (src >= 0) {
        if (rec < 0) return row(src, pos, n, at - offset, -1, 0, 0);
        // the record is read whole and checked by whoever performs the row: from now on it counts as checked
        const recOffset = at - (pos - rec);
        row(src, pos, n, at - offset, rec, recLen, recOffset);
        return map.markChecked(src, rec, recOffset, recLen);
      }
      if (src === SOURCE_ZERO || baseFile < 0) return row(-1, 0, n, at - offset, -1, 0, 0);
      // the base: regions it never held data in are zeroes
      baseRegionRuns(bmap, pos, n, (s, e, held) => row(held ? baseFile : -1, s, e - s, at - offset + (s - pos), -1, 0, 0));
    });
    return ops.subarray(0, rows * READ_OP_FIELDS);
  }

  fileOf(volume: number, src: number): number {
    if (src >= 0) return src < this.slots.length ? src : -1;
    if (src !== SOURCE_BASE || this.baseFds[volume] === null || this.baseFds[volume] === undefined) return -1;
    return this.slots.length + volume;
  }

  readFiles(): Array<{ fd: number; path: string; name: string; zeroesPastEnd: boolean }> {
    const files = this.slots.map((s) => ({ fd: s.fd, path: s.data, name: `segment ${s.data}`, zeroesPastEnd: false }));
    this.volumes.forEach((v, i) => files.push({ fd: this.baseFds[i] ?? -1, path: this.basePaths[i] ?? '', name: `base image of volume ${v.name}`, zeroesPastEnd: true }));
    return files;
  }

  /** `n` bytes of the slot's segment at `pos` into dst[at..] */
  private pread(slot: Slot, pos: number, n: number, dst: Buffer, at: number): void {
    let done: number;
    try {
      done = preadSync(slot.fd, n, pos, dst.subarray(at, at + n)).length;
    } catch (err) {
      throw ioError(err, `cannot read segment ${slot.data}`);
    }
    if (done !== n) throw new DrError('DR_STORE_CORRUPT', `segment ${slot.data} is shorter than its index says (byte ${pos + done})`);
  }

  private readBase(volume: number, offset: number, dst: Buffer): void {
    const fd = this.baseFds[volume];
    if (fd === null || fd === undefined) {
      dst.fill(0);
      return;
    }
    // skip regions the base never held data in
    baseRegionRuns(this.baseMaps[volume] ?? null, offset, dst.length, (s, e, held) => {
      const part = dst.subarray(s - offset, e - offset);
      if (!held) return void part.fill(0);
      try {
        part.fill(0, preadSync(fd, e - s, s, part).length);
      } catch (err) {
        throw ioError(err, `cannot read base image of volume ${this.volumes[volume]!.name}`);
      }
    });
  }

  async *allocated(volume: number): AsyncIterable<{ offset: number; length: number }> {
    const map = this.checkRange(volume, 0, 0);
    await this.building;
    const bmap = this.baseFds[volume] === null ? new Uint8Array(0) : (this.baseMaps[volume] ?? null);
    const bs = map.bs;
    let runStart = -1;
    let runEnd = -1;
    const out: Array<{ offset: number; length: number }> = [];
    const add = (s: number, e: number): void => {
      if (runEnd === s) runEnd = e;
      else {
        if (runStart >= 0) out.push({ offset: runStart, length: runEnd - runStart });
        runStart = s;
        runEnd = e;
      }
    };
    for (let g = 0; g < map.blocks; g++) {
      const chunk = map.src[g >>> CHUNK_BITS];
      if (!chunk) {
        // a whole chunk of unwritten blocks: the base decides, region by region
        const cs = g * bs;
        const ce = Math.min((g + CHUNK) * bs, map.size);
        baseRegionRuns(bmap, cs, ce - cs, (s, e, held) => {
          if (held) add(s, e);
        });
        g += CHUNK - 1;
      } else {
        const s = chunk[g & (CHUNK - 1)]!;
        const gs = g * bs;
        const ge = Math.min(gs + bs, map.size);
        if (s === ZERO) continue;
        if (s === 0 && !regionSet(bmap, Math.floor(gs / REGION)) && !regionSet(bmap, Math.floor((ge - 1) / REGION))) continue;
        add(gs, ge);
      }
      if (out.length >= 1024) yield* out.splice(0);
    }
    if (runStart >= 0) out.push({ offset: runStart, length: runEnd - runStart });
    yield* out;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const s of this.slots) {
      fs.closeSync(s.fd);
      if (s.idxFd !== undefined) fs.closeSync(s.idxFd);
    }
    for (const fd of this.baseFds) if (fd !== null) fs.closeSync(fd);
    this.lease.release();
  }
}

export async function openPointInTime(store: JournalStore, seq: number): Promise<PointInTimeReader> {
  if (!store.activeAppender) store.load(false); // see the latest prune and records
  const base = store.firstSeq - 1;
  if (!Number.isSafeInteger(seq) || seq < Math.max(base, 0) || seq > store.lastSeq) {
    throw new DrError('DR_OUTSIDE_WINDOW', `seq ${seq} cannot be restored: ${store.describeWindow()}`);
  }
  const time = seq >= store.firstSeq ? timeOf(store, seq) : store.window?.baseTime ?? 0;
  const r = new PitReader(store, seq, time);
  try {
    r.open();
  } catch (err) {
    await r.release();
    throw err;
  }
  return r;
}

/**
 * The time of record `seq`: from the segment's summary when it is a mark, flush,
 * sparse point or the segment's last record (the usual restore points), so that
 * opening a reader at them reads no segment data; any other seq is looked up.
 */
function timeOf(store: JournalStore, seq: number): number {
  const sum = store.segmentFor(seq)?.summary;
  if (sum) {
    if (seq === sum.lastSeq) return sum.lastTime;
    const m = sum.marks.find((x) => x.seq === seq);
    if (m) return m.time;
    const f = sum.flushes.find((x) => x[0] === seq);
    if (f) return f[1];
    const p = sum.sparse.find((x) => x[0] === seq);
    if (p) return p[1];
  }
  return store.locate(seq).time;
}
