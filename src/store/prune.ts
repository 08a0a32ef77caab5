/**
 * Sliding the history window: whole sealed segments older than the window are
 * folded into a new generation of base images, then released.
 *
 * Crash safety: the new base generation is written under new file names (temp
 * file, fsync, rename), and only then does window.json (written durably) switch
 * to it and move the window start. Segments and the old generation are deleted
 * last. A kill at any instant leaves either the old window (old base + all
 * segments) or the new one (new base + the remaining segments) complete; leftover
 * files are removed by the next prune. Files named by a live read lease are kept.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DrError, fromSystemError } from '../errors.js';
import { RecordType, decodePayload, type VolumeRecord } from '../format/layout.js';
import { fsyncDir, processAlive, tempPathOwner, writeFileDurable } from './files.js';
import { confirmedArchive } from './archived.js';
import { Lease, LockFile } from './lock.js';
import { RecordWalker, SEGMENTS, parseSegmentFile, readIndexSummary, scanSegment, segmentPaths, type MarkInfo } from './segment.js';
import { BASE, baseFiles, readBaseMap, regionCount, regionSet, setRegions, REGION } from './base.js';
import { PRUNE_LOCK, writeWindow, type WindowState } from './state.js';
import type { JournalStore, SegmentEntry } from './store.js';

export interface PruneOptions {
  /** keep records newer than this many milliseconds */
  keepMs?: number;
  /** keep at most this many bytes of segments */
  keepBytes?: number;
  /** "now" in microseconds (tests) */
  now?: number;
  /** test hook: called between the steps of a prune */
  onStep?: (step: string) => void;
}

export interface PruneResult {
  foldedSegments: number;
  foldedRecords: number;
  releasedBytes: number;
  firstSeq: number;
  baseGeneration: number;
  foldedMarks: MarkInfo[];
  /** files a reader still holds: kept until a later prune */
  keptForReaders: string[];
  /** segments old enough to fold but kept because the archive has not confirmed them yet */
  heldForArchive: number;
}

/**
 * DRKIT_TEST_PRUNE_PAUSE_MS (testing aid): pause this long at every step of a prune,
 * so the crash tests' kill -9 lands inside it rather than around it.
 */
function pause(): void {
  const ms = Number(process.env.DRKIT_TEST_PRUNE_PAUSE_MS ?? 0);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export async function prune(store: JournalStore, opts: PruneOptions): Promise<PruneResult> {
  if (opts.keepMs === undefined && opts.keepBytes === undefined) throw new DrError('DR_USAGE', 'prune needs --keep DURATION and/or --keep-size SIZE');
  if (store.readOnly) throw new DrError('DR_USAGE', `journal store ${store.dir} was opened read-only`);
  const lock = LockFile.acquire(path.join(store.dir, PRUNE_LOCK), `pruning of ${store.dir}`);
  try {
    store.load(false);
    const step = (what: string): void => {
      opts.onStep?.(what);
      pause();
    };
    const segs = store.segments;
    // candidates: sealed segments with records, never the last one
    const candidates: SegmentEntry[] = [];
    for (let i = 0; i < segs.length - 1; i++) {
      const s = segs[i]!;
      if (!s.summary.sealed) break;
      candidates.push(s);
    }
    let fold = 0;
    if (opts.keepMs !== undefined) {
      const cutoff = (opts.now ?? Date.now() * 1000) - opts.keepMs * 1000;
      while (fold < candidates.length && candidates[fold]!.summary.lastTime < cutoff) fold++;
    }
    if (opts.keepBytes !== undefined) {
      let total = segs.reduce((n, s) => n + s.summary.size, 0);
      let n = 0;
      while (n < candidates.length && total > opts.keepBytes) {
        total -= candidates[n]!.summary.size;
        n++;
      }
      fold = Math.max(fold, n);
    }
    // With an archive, only what is confirmed archived may leave the local disk.
    const archive = confirmedArchive(store.dir);
    let heldForArchive = 0;
    if (archive) {
      let allowed = 0;
      while (allowed < fold && candidates[allowed]!.summary.lastSeq <= archive.sealedThrough) allowed++;
      if (allowed < fold) opts.onStep?.(`kept ${fold - allowed} segment(s) not yet confirmed archived to ${archive.url} (archived through seq ${archive.sealedThrough})`);
      heldForArchive = fold - allowed;
      fold = allowed;
    }
    const oldGen = store.window?.baseGen ?? 0;
    const result: PruneResult = {
      foldedSegments: 0, foldedRecords: 0, releasedBytes: 0, firstSeq: store.firstSeq, baseGeneration: oldGen, foldedMarks: [], keptForReaders: [], heldForArchive,
    };
    if (fold > 0) {
      const folded = candidates.slice(0, fold);
      const newGen = oldGen + 1;
      for (const v of store.volumes) {
        writeBase(store, v, oldGen, newGen, folded);
        step(`base image generation ${newGen} of volume ${v.name} written`);
      }
      step('base-written');
      const last = folded[folded.length - 1]!.summary;
      const marks = folded.flatMap((s) => s.summary.marks);
      const records = folded.reduce((n, s) => n + s.summary.records, 0);
      const w: WindowState = {
        firstSeq: last.lastSeq + 1, baseGen: newGen, baseTime: last.lastTime,
        foldedRecords: (store.window?.foldedRecords ?? 0) + records,
        foldedMarks: [...(store.window?.foldedMarks ?? []), ...marks], prunedAt: Date.now() * 1000,
      };
      writeWindow(store.dir, w);
      step(`window now starts at seq ${w.firstSeq} (base generation ${newGen})`);
      Object.assign(result, {
        foldedSegments: folded.length, foldedRecords: records, firstSeq: w.firstSeq, baseGeneration: newGen, foldedMarks: marks,
      });
    }
    store.load(false);
    const { released, kept } = removeUnused(store, step);
    result.releasedBytes = released;
    result.keptForReaders = kept;
    step('done');
    return result;
  } finally {
    lock.release();
  }
}

/** Base generation `newGen` of volume v: the old base plus every record of `folded`, applied in order. */
function writeBase(store: JournalStore, v: VolumeRecord, oldGen: number, newGen: number, folded: SegmentEntry[]): void {
  const dir = store.dir;
  const nf = baseFiles(dir, v.index, newGen);
  const tmp = `${nf.img}.tmp`;
  fs.mkdirSync(path.join(dir, BASE), { recursive: true, mode: 0o755 });
  let fd: number | null = null;
  const map = new Uint8Array(Math.ceil(regionCount(v.size) / 8));
  try {
    fd = fs.openSync(tmp, 'w', 0o644);
    fs.ftruncateSync(fd, v.size);
    if (oldGen > 0) {
      const of = baseFiles(dir, v.index, oldGen);
      let ofd: number | null = null;
      try {
        ofd = fs.openSync(of.img, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (ofd !== null) {
        try {
          const oldMap = readBaseMap(of.map, v.size);
          const buf = Buffer.allocUnsafe(REGION);
          for (let r = 0; r < regionCount(v.size); r++) {
            if (!regionSet(oldMap, r)) continue;
            const n = Math.min(REGION, v.size - r * REGION);
            const got = fs.readSync(ofd, buf, 0, n, r * REGION);
            if (buf.subarray(0, got).some((b) => b !== 0)) {
              writeAll(fd, buf.subarray(0, got), r * REGION);
              setRegions(map, r * REGION, got);
            }
          }
        } finally {
          fs.closeSync(ofd);
        }
      }
    }
    const zeroes = Buffer.alloc(REGION);
    for (const s of folded) {
      const sfd = fs.openSync(s.data, 'r');
      try {
        const w = new RecordWalker(sfd, s.data, 0, s.summary.size);
        const head = w.header();
        if (!head) throw new DrError('DR_STORE_CORRUPT', `segment ${s.data} has no stream header`);
        const vols: VolumeRecord[] = [];
        for (let r = w.next(); r; r = w.next()) {
          if (r.h.code === RecordType.END) break;
          const rec = decodePayload(r.h, r.payload, vols);
          if (rec.type === 'write' && rec.seq % 64 === 0) pause();
          if (rec.type === 'volume') vols.push(rec);
          else if (rec.type === 'write' && rec.volume === v.index) {
            writeAll(fd, rec.data, rec.offset);
            setRegions(map, rec.offset, rec.data.length);
          } else if (rec.type === 'zero' && rec.volume === v.index) {
            let cur = rec.offset;
            const end = rec.offset + rec.length;
            while (cur < end) {
              const r0 = Math.floor(cur / REGION);
              const n = Math.min(end, (r0 + 1) * REGION) - cur;
              if (regionSet(map, r0)) writeAll(fd, zeroes.subarray(0, n), cur);
              cur += n;
            }
          }
        }
      } finally {
        fs.closeSync(sfd);
      }
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, nf.img);
    writeFileDurable(nf.map, Buffer.from(map.buffer, map.byteOffset, map.byteLength));
    fsyncDir(path.join(dir, BASE));
  } catch (err) {
    if (fd !== null) try { fs.closeSync(fd); } catch { /* failing already */ }
    try { fs.unlinkSync(tmp); } catch { /* not there */ }
    throw fromSystemError(err, `cannot write base image ${nf.img}`);
  }
}

function writeAll(fd: number, b: Buffer, pos: number): void {
  let done = 0;
  while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, pos + done);
}

/** Delete segments before the window and base generations not in use, except what live readers hold. */
function removeUnused(store: JournalStore, step: (what: string) => void): { released: number; kept: string[] } {
  const held = Lease.heldFiles(store.dir, true);
  const gen = store.window?.baseGen ?? 0;
  const firstSeq = store.firstSeq;
  let released = 0;
  const kept: string[] = [];
  const remove = (file: string): void => {
    const rel = path.relative(store.dir, file);
    if (held.has(rel)) {
      kept.push(rel);
      return;
    }
    try {
      released += fs.statSync(file).size;
      fs.unlinkSync(file);
      step(`removed ${rel}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `cannot remove ${file}`);
    }
  };
  const segDir = path.join(store.dir, SEGMENTS);
  const names = fs.readdirSync(segDir);
  const seqs = names.map(parseSegmentFile).filter((s): s is number => s !== null).sort((a, b) => a - b);
  for (let i = 0; i < seqs.length - 1; i++) {
    const p = segmentPaths(store.dir, seqs[i]!);
    const idx = readIndexSummary(p.index);
    const lastSeq = idx ? idx.summary.lastSeq : scanSegment(p.data).builder?.summary.lastSeq ?? Infinity;
    if (lastSeq < firstSeq) {
      remove(p.data);
      if (!held.has(path.relative(store.dir, p.data))) remove(p.index);
    }
  }
  // temporary files left by a process that is gone (a live appender's new segment is one for a moment)
  for (const n of names) {
    const owner = tempPathOwner(n);
    if (owner !== null && !processAlive(owner)) remove(path.join(segDir, n));
  }
  fsyncDir(segDir);
  const baseDir = path.join(store.dir, BASE);
  let baseNames: string[] = [];
  try {
    baseNames = fs.readdirSync(baseDir);
  } catch { /* no base yet */ }
  for (const n of baseNames) {
    const m = /^\d+\.(\d+)\.(img|map)(\.tmp.*)?$/.exec(n);
    if (!m) continue;
    if (Number(m[1]) !== gen || m[3]) remove(path.join(baseDir, n));
  }
  if (baseNames.length) fsyncDir(baseDir);
  return { released, kept };
}
