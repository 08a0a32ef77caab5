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

export interface RestoreOptions extends PieceOptions {
  /** called with the bytes done so far */
  onProgress?: (done: number) => void;
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
  let written = 0;
  try {
    await out.fh.truncate(vol.size);
    for await (const piece of volumePieces(reader, vol.index, vol.size, opts)) {
      if (piece.data) written += await writeNonZero(out, piece.data, piece.offset);
      opts.onProgress?.(piece.offset + piece.length);
    }
    await out.commit();
  } catch (err) {
    await out.abort();
    if (err instanceof DrError) throw err;
    throw fromSystemError(err, `cannot write ${file}`);
  }
  return { bytes: vol.size, written, sparse: vol.size - written, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/** Write the runs of non-zero blocks of `data` at `pos`; returns the bytes written. */
async function writeNonZero(out: AtomicOutput, data: Buffer, pos: number): Promise<number> {
  let written = 0;
  let runStart = -1;
  const flush = async (end: number): Promise<void> => {
    if (runStart < 0) return;
    await writeFully(out, data.subarray(runStart, end), pos + runStart);
    written += end - runStart;
    runStart = -1;
  };
  for (let o = 0; o < data.length; o += BLOCK) {
    const n = Math.min(BLOCK, data.length - o);
    // random data almost never starts with 8 zero bytes: skip the full compare for it
    const zero = n >= 8 && (data.readUInt32LE(o) !== 0 || data.readUInt32LE(o + 4) !== 0)
      ? false
      : isAllZero(data.subarray(o, o + n));
    if (zero) await flush(o);
    else if (runStart < 0) runStart = o;
  }
  await flush(data.length);
  return written;
}

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
