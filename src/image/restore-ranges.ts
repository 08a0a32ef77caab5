/**
 * Reading a volume as of a point, in order, for the writers of a restore: the
 * allocated ranges of the point-in-time reader are cut into chunks, read with a
 * bounded number of reads in flight (read-ahead), and handed out in offset order
 * together with the holes between them (data null = zeroes, never read).
 */
import { DrError } from '../errors.js';
import type { PointInTimeReader } from '../store/index.js';

export interface Piece {
  offset: number;
  length: number;
  /** the bytes, or null for a hole (zeroes) */
  data: Buffer | null;
  /** with `recycle` in the options: call once `data` is no longer needed, so its memory is read into again */
  done?: () => void;
}

export interface PieceOptions {
  /** largest single read (bytes) */
  chunkSize: number;
  /** reads in flight at most; memory is about chunkSize x readAhead */
  readAhead: number;
  /** chunk writes in flight at most (sparse file output) */
  writesInFlight?: number;
  /** allocated ranges closer than this are read together (default chunkSize / 16) */
  mergeGap?: number;
  /**
   * Read into chunk buffers used again once the consumer calls piece.done() (a
   * consumer that does keeps the pages it writes from warm memory instead of a
   * fresh allocation, page faults and garbage per chunk).
   */
  recycle?: boolean;
  signal?: AbortSignal;
}

export const DEFAULT_BUFFER = 16 * 1024 * 1024;
export const MAX_CHUNK = 4 * 1024 * 1024;

/**
 * Chunk size, read-ahead and writes in flight for a memory budget of `buffer`
 * bytes: half of it for chunks read ahead, half for chunks being written.
 */
export function readPlan(buffer: number): { chunkSize: number; readAhead: number; writesInFlight: number } {
  const chunkSize = Math.max(64 * 1024, Math.min(MAX_CHUNK, 2 ** Math.floor(Math.log2(Math.max(1, buffer / 4)))));
  const n = Math.max(1, Math.floor(buffer / (2 * chunkSize)));
  return { chunkSize, readAhead: n, writesInFlight: n };
}

/** A shared buffer of zeroes (never written to). */
export const ZEROES = Buffer.alloc(MAX_CHUNK);

/** Is every byte zero? (memcmp against ZEROES) */
export function isAllZero(b: Buffer): boolean {
  for (let off = 0; off < b.length; off += ZEROES.length) {
    const n = Math.min(ZEROES.length, b.length - off);
    if (!b.subarray(off, off + n).equals(ZEROES.subarray(0, n))) return false;
  }
  return true;
}

/**
 * The allocated ranges of a volume, clamped to its size, overlapping and adjacent
 * ones merged, in ascending order. The reader is expected to give them in order;
 * one that goes backwards is refused rather than silently restored wrong. Ranges
 * less than `mergeGap` bytes apart are read as one (the gap reads as zeroes):
 * fewer, larger reads.
 */
export async function* allocatedRanges(
  reader: PointInTimeReader, volume: number, size: number, mergeGap = 0,
): AsyncGenerator<{ offset: number; length: number }> {
  let cur: { start: number; end: number } | null = null;
  let emittedEnd = 0;
  for await (const r of reader.allocated(volume)) {
    const start = Math.max(0, r.offset);
    const end = Math.min(size, r.offset + r.length);
    if (end <= start) continue;
    if (start < emittedEnd || (cur && start < cur.start)) {
      throw new DrError('DR_IO', `the point-in-time reader gave allocated ranges out of order (${start} after ${cur ? cur.start : emittedEnd}) for volume ${volume}`);
    }
    if (cur && start <= cur.end + mergeGap) {
      cur.end = Math.max(cur.end, end);
      continue;
    }
    if (cur) {
      yield { offset: cur.start, length: cur.end - cur.start };
      emittedEnd = cur.end;
    }
    cur = { start, end };
  }
  if (cur) yield { offset: cur.start, length: cur.end - cur.start };
}

/**
 * Every byte of the volume in order, as data pieces (at most chunkSize, cut at
 * chunk-aligned offsets) and holes. Reads run ahead of the consumer, at most
 * `readAhead` of them at once.
 */
export async function* volumePieces(reader: PointInTimeReader, volume: number, size: number, opts: PieceOptions): AsyncGenerator<Piece> {
  type Queued = { piece: Piece; read: Promise<Buffer> | null; buf?: Buffer };
  const queue: Queued[] = [];
  let inflight = 0;
  const chunk = opts.chunkSize;
  const free: Buffer[] = [];

  const take = async (): Promise<Piece> => {
    const q = queue.shift()!;
    if (q.read === null) return q.piece;
    inflight--;
    const data = await q.read;
    if (data.length !== q.piece.length) {
      throw new DrError('DR_IO', `read of volume ${volume} at ${q.piece.offset}+${q.piece.length} returned ${data.length} bytes`);
    }
    const buf = q.buf;
    return buf ? { ...q.piece, data, done: () => free.push(buf) } : { ...q.piece, data };
  };
  const enqueueRead = (offset: number, length: number): void => {
    // shared memory: a reader may have another thread read into it (restore-preads.ts)
    const buf = opts.recycle ? free.pop() ?? Buffer.from(new SharedArrayBuffer(chunk)) : undefined;
    const read = reader.read(volume, offset, length, buf);
    read.catch(() => undefined); // awaited in order by take(); avoid an unhandled rejection if we stop early
    queue.push({ piece: { offset, length, data: null }, read, buf });
    inflight++;
  };

  let pos = 0;
  try {
    for await (const r of allocatedRanges(reader, volume, size, opts.mergeGap ?? Math.floor(chunk / 16))) {
      if (r.offset > pos) queue.push({ piece: { offset: pos, length: r.offset - pos, data: null }, read: null });
      let off = r.offset;
      const end = r.offset + r.length;
      while (off < end) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        const next = Math.min(end, (Math.floor(off / chunk) + 1) * chunk);
        enqueueRead(off, next - off);
        off = next;
        while (inflight >= opts.readAhead) yield await take();
      }
      pos = end;
      // hand out what is complete up to here so holes do not pile up behind reads
      while (queue.length > 0 && queue[0]!.read === null) yield await take();
    }
    if (pos < size) queue.push({ piece: { offset: pos, length: size - pos, data: null }, read: null });
    while (queue.length > 0) yield await take();
  } finally {
    queue.length = 0;
  }
}
