/**
 * Restoring one volume as of a point: into a sparse regular file (only the
 * non-zero blocks of the allocated ranges are written; the size is set with
 * ftruncate), or as a plain byte stream (standard output, a device, a tar entry)
 * where holes are written as zeroes.
 */
import type { Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { DrError, fromSystemError } from '../errors.js';
import type { VolumeRecord } from '../format/layout.js';
import type { PointInTimeReader } from '../store/index.js';
import { AtomicOutput, checkOutput, openSpecialOutput, writeOut } from './restore-output.js';
import { ZEROES, isAllZero, volumePieces, type PieceOptions } from './restore-ranges.js';
import { EarlyWriteback } from './writeback.js';
import { prefetchVolume, type PrefetchResult } from './restore-prefetch.js';

export interface RestoreOptions extends PieceOptions {
  /** called with the bytes done so far */
  onProgress?: (done: number) => void;
  /** called with what the page-cache prefetch before a volume did (restore-prefetch.ts) */
  onPrefetch?: (volume: VolumeRecord, result: PrefetchResult) => void;
}

export interface RestoreStats {
  /** volume size */
  bytes: number;
  /** bytes actually written (data; for streams, zeroes too) */
  written: number;
  /** bytes left as holes in a sparse file */
  sparse: number;
  seconds: number;
}

/** granularity of hole detection in sparse output */
const BLOCK = 4096;
/** zero runs shorter than this are written (one large write beats many small ones) */
const HOLE_MIN = 64 * 1024;


/** Restore a volume into FILE: refused if it exists unless `force`; atomic for regular files. */
export async function restoreToFile(
  reader: PointInTimeReader, vol: VolumeRecord, file: string, force: boolean, opts: RestoreOptions,
): Promise<RestoreStats> {
  const kind = await checkOutput(file, force);
  if (kind === 'special') {
    const sp = await openSpecialOutput(file);
    try {
      const stats = await restoreToStream(reader, vol, sp.out, opts);
      await sp.close();
      return stats;
    } catch (err) {
      sp.out.destroy();
      throw err;
    }
  }
  const started = process.hrtime.bigint();
  const out = await AtomicOutput.create(file);
  const writeback = EarlyWriteback.open(out.tmp);
  let written = 0;
  // positional writes of successive chunks run in the thread pool while the next chunk is read
  const writes: Array<Promise<number>> = [];
  try {
    await out.fh.truncate(vol.size);
    await warmSources(reader, vol, opts);
    for await (const piece of volumePieces(reader, vol.index, vol.size, { ...opts, recycle: true })) {
      if (piece.data) {
        const w = writeNonZero(out, piece.data, piece.offset).then((n) => {
          writeback?.wrote(n);
          return n;
        }).finally(piece.done);
        w.catch(() => undefined); // awaited below, in order
        writes.push(w);
        if (writes.length >= (opts.writesInFlight ?? 2)) written += await writes.shift()!;
      }
      opts.onProgress?.(piece.offset + piece.length);
    }
    while (writes.length > 0) written += await writes.shift()!;
    await writeback?.settle();
    writeback?.close();
    await out.commit();
  } catch (err) {
    await Promise.allSettled(writes);
    writeback?.close();
    await out.abort();
    if (err instanceof DrError) throw err;
    throw fromSystemError(err, `cannot write ${file}`);
  }
  return { bytes: vol.size, written, sparse: vol.size - written, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/**
 * Before reading a volume in order from the store's own reader: its journal parts
 * read front to back into the page cache (in windows of chunkSize; half of the files
 * on the read thread when there is one), so the
 * per-block preads that follow do not wait for the disk one by one. Readers that
 * wrap the store's (worker threads, an archive's ranged fetches) read as before.
 */
async function warmSources(reader: PointInTimeReader, vol: VolumeRecord, opts: RestoreOptions): Promise<void> {
  if (!reader.whole) return;
  const r = await prefetchVolume(reader.whole, vol.index, { windowSize: opts.chunkSize, signal: opts.signal, alongside: reader.readAlongside });
  opts.onPrefetch?.(vol, r);
}

/**
 * Write `data` at `pos` into the new (all-hole) file, leaving out leading and
 * trailing zero blocks and inner runs of zero blocks of at least HOLE_MIN bytes
 * (they stay holes); shorter inner zero runs are written with the data around
 * them: fewer, larger writes. Returns the bytes written.
 */
async function writeNonZero(out: AtomicOutput, data: Buffer, pos: number): Promise<number> {
  let written = 0;
  let dataStart = -1; // start of the current run to write
  let zeroStart = -1; // start of the zero blocks at the end of that run (or before any data)
  const emit = async (end: number): Promise<void> => {
    if (dataStart < 0 || end <= dataStart) return;
    await writeFully(out, data.subarray(dataStart, end), pos + dataStart);
    written += end - dataStart;
  };
  for (let o = 0; o < data.length; o += BLOCK) {
    const n = Math.min(BLOCK, data.length - o);
    // random data almost never starts with 8 zero bytes: skip the full compare for it
    const zero = n >= 8 && (data.readUInt32LE(o) !== 0 || data.readUInt32LE(o + 4) !== 0)
      ? false
      : isAllZero(data.subarray(o, o + n));
    if (zero) {
      if (zeroStart < 0) zeroStart = o;
      continue;
    }
    if (zeroStart >= 0 && (dataStart < 0 || o - zeroStart >= HOLE_MIN)) {
      // a hole worth keeping (or leading zeroes): write what came before, start a new run here
      await emit(zeroStart);
      dataStart = o;
    } else if (dataStart < 0) dataStart = o;
    zeroStart = -1;
  }
  await emit(zeroStart >= 0 ? zeroStart : data.length); // trailing zeroes need no write either
  return written;
}

/**
 * One write(2) per run (up to a chunk, 4 MiB by default), not cut into WRITE_MAX pieces
 * as dr-apply's are: each write is handed to the thread pool, and waking a pool thread
 * costs the main thread ~50 us here (a VM exit). Measured on a 1 GiB restore (6 runs
 * each, alternating, warm): 512 KiB writes 1.57 s of CPU (median), whole 4 MiB runs 1.35 s.
 */
async function writeFully(out: AtomicOutput, buf: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await out.fh.write(buf, done, buf.length - done, pos + done);
    if (bytesWritten <= 0) throw new DrError('DR_IO', `short write to ${out.target} at byte ${pos + done}`);
    done += bytesWritten;
  }
}

/** Write every byte of the volume in order to `out` (holes as zeroes), optionally hashing them. */
export async function restoreToStream(
  reader: PointInTimeReader, vol: VolumeRecord, out: Writable, opts: RestoreOptions, hash?: Hash,
): Promise<RestoreStats> {
  const started = process.hrtime.bigint();
  let written = 0;
  await warmSources(reader, vol, opts);
  for await (const piece of volumePieces(reader, vol.index, vol.size, opts)) {
    if (piece.data) {
      hash?.update(piece.data);
      await writeOut(out, piece.data);
    } else {
      for (let left = piece.length; left > 0;) {
        const z = ZEROES.subarray(0, Math.min(left, opts.chunkSize, ZEROES.length));
        hash?.update(z);
        await writeOut(out, z);
        left -= z.length;
        if (opts.signal?.aborted) throw opts.signal.reason;
      }
    }
    written += piece.length;
    opts.onProgress?.(piece.offset + piece.length);
  }
  return { bytes: vol.size, written, sparse: 0, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}
