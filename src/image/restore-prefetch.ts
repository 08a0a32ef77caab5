/**
 * Warming the page cache for a restore in volume order. The newest version of each
 * block lies anywhere in the journal, so writing a volume in order takes one small
 * pread per block: about 1.6 us each while the journal is in the page cache, but
 * ~30 us once the kernel has paged it out (this VM's DAMON does that to files idle for
 * ~30 s), which made a cold restore IOPS-bound. Reading first, front to back in large
 * reads, just the parts of each segment (and of the base image) that hold blocks of
 * the volume brings them in at disk bandwidth; the preads then find them in memory.
 *
 * Measured against materialising in source order instead (reading each segment once
 * and scattering its blocks into the output with positional writes): on ext4 here a
 * 4 KiB write into a new file costs several times a 4 KiB pread from the page cache
 * (delayed-allocation bookkeeping per block, writeback of scattered pages), so a
 * 1 GiB restore from a 1 GiB journal of random writes took 2.3-3.3 s warm and
 * 3.0-4.5 s cold that way, against 1.3-1.8 s and 2.0-3.1 s with this prefetch.
 *
 * The prefetch relies on the page cache keeping what it read until the preads come:
 * it is skipped (the restore still works, IOPS-bound when cold) when the bytes to read
 * exceed half of the memory the kernel reports available.
 */
import { freemem } from 'node:os';
import { SOURCE_BASE, SOURCE_PARTIAL, SOURCE_ZERO, type PointInTimeReader, type WholeVolumeSource } from '../store/pit.js';

/**
 * Size of one sequential read. The reads are synchronous, one after the other on this
 * thread, like cat's: the kernel's readahead keeps the disk busy between them. Measured
 * here (1 GiB of journal, cold): 128 KiB-1 MiB reads 0.43-0.54 s wall and 0.06-0.07 s of
 * system time; 4 MiB reads 0.52-0.72 s (the buffer no longer stays in the CPU's cache);
 * two 4 MiB reads in flight on the thread pool 0.74-0.76 s and 0.28 s of system time
 * (each read a hand-over to another thread: a wake-up that is a VM exit here).
 */
export const PREFETCH_READ = 512 * 1024;
/** default window: the unit probed, and read whole unless found in memory */
export const PREFETCH_WINDOW = 4 * 1024 * 1024;
/** bytes read between two turns of the event loop (so that a stop request is seen within ~20 ms) */
const SLICE = 32 * 1024 * 1024;
/** bytes of the timed probe read of a window (one page) */
const PROBE = 4096;
/** a probe quicker than this came from the page cache (measured here: ~1.6-5 us cached, ~30 us from the disk) */
const PROBE_QUICK_NS = 12_000;
/** window key = source id x KEY_SPAN + window number within the source (sources of up to 2^21 windows) */
const KEY_SPAN = 2 ** 21;

export interface PrefetchResult {
  /** bytes read (0 when skipped; windows found in memory are not read) */
  bytes: number;
  /** bytes that would have been read */
  needed: number;
  skipped: boolean;
  /** time taken (block map walk included) */
  seconds: number;
}

/**
 * Read the windows of the source files holding the blocks of `volume` front to back,
 * except those timed probes find in memory already (all of them with `always`).
 * `available`: the memory to compare with (default: what the kernel reports free,
 * page cache that can be dropped included).
 */
export async function prefetchVolume(
  whole: WholeVolumeSource, volume: number,
  opts: { windowSize?: number; signal?: AbortSignal; available?: number; always?: boolean; alongside?: PointInTimeReader['readAlongside'] } = {},
): Promise<PrefetchResult> {
  const started = process.hrtime.bigint();
  const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  const windowSize = opts.windowSize ?? PREFETCH_WINDOW;
  const windows = await neededWindows(whole, volume, windowSize);
  let needed = 0;
  for (const w of windows.values()) needed += w[1] - w[0];
  if (needed === 0 || needed > (opts.available ?? freemem()) / 2) return { bytes: 0, needed, skipped: needed > 0, seconds: seconds() };
  const buf = Buffer.allocUnsafeSlow(Math.min(PREFETCH_READ, windowSize));
  const keys = windowsToRead(whole, volume, windows, Boolean(opts.always));
  // with a read thread: the files shared out between it and this thread, two sequential
  // streams (1 GiB cold: 0.62-0.69 s against 0.70-1.16 s for one, measured with dd under load)
  const [mine, theirs] = opts.alongside ? shareOut(keys, windows) : [keys, []];
  const side = opts.alongside ? readAlongside(whole, volume, windows, theirs, opts.alongside, opts.signal) : Promise.resolve(0);
  side.catch(() => undefined); // awaited below
  let bytes = 0;
  let slice = 0;
  try {
    for (const key of mine) {
      const [lo, hi] = windows.get(key)!;
      const src = sourceOf(key);
      for (let pos = lo; pos < hi; pos += buf.length) {
        if (slice >= SLICE) {
          slice = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
        if (opts.signal?.aborted) throw opts.signal.reason;
        const n = Math.min(buf.length, hi - pos);
        whole.readFromSync(volume, src, pos, n, buf);
        bytes += n;
        slice += n;
      }
    }
  } catch (err) {
    await side.catch(() => undefined); // the read thread is done with the files before they may be closed
    throw err;
  }
  bytes += await side;
  return { bytes, needed, skipped: false, seconds: seconds() };
}

/**
 * The windows to read, in file order. All the windows of a source whose middle window
 * a probe finds on the disk (a cold file: no per-window probes, whose reads of single
 * pages in the middle of what is about to be read sequentially cost 0.17 s of system
 * time per GiB here); of the other sources, the windows a probe finds on the disk.
 * Every probe comes before any read: the kernel's readahead after one window's read
 * brings in part of the next, whose probe would then find it in memory.
 */
function windowsToRead(whole: WholeVolumeSource, volume: number, windows: Map<number, [number, number]>, always: boolean): number[] {
  const keys = [...windows.keys()].sort((a, b) => a - b);
  if (always) return keys;
  const probe = Buffer.allocUnsafe(PROBE);
  const quick = (key: number): boolean => {
    const [lo, hi] = windows.get(key)!;
    return probeIsQuick(whole, volume, sourceOf(key), lo, hi, probe);
  };
  const out: number[] = [];
  for (let i = 0; i < keys.length;) {
    let j = i; // keys[i..j) are the windows of one source
    while (j < keys.length && sourceOf(keys[j]!) === sourceOf(keys[i]!)) j++;
    const sample = i + ((j - i) >> 1);
    if (!quick(keys[sample]!)) out.push(...keys.slice(i, j));
    else for (let k = i; k < j; k++) if (k !== sample && !quick(keys[k]!)) out.push(keys[k]!);
    i = j;
  }
  return out;
}

/** The windows (in file order) split in two by whole source, about even in bytes. */
function shareOut(keys: number[], windows: Map<number, [number, number]>): [number[], number[]] {
  const sides: [number[], number[]] = [[], []];
  const bytes: [number, number] = [0, 0];
  for (let i = 0; i < keys.length;) {
    let j = i;
    let n = 0;
    for (; j < keys.length && sourceOf(keys[j]!) === sourceOf(keys[i]!); j++) n += windows.get(keys[j]!)![1] - windows.get(keys[j]!)![0];
    const side = bytes[0] <= bytes[1] ? 0 : 1;
    sides[side].push(...keys.slice(i, j));
    bytes[side] += n;
    i = j;
  }
  return sides;
}

/**
 * Read the windows of `keys` with `alongside` (on the read thread), SLICE bytes per
 * request, two requests queued there at most. Returns the bytes read.
 */
async function readAlongside(
  whole: WholeVolumeSource, volume: number, windows: Map<number, [number, number]>, keys: number[],
  alongside: NonNullable<PointInTimeReader['readAlongside']>, signal: AbortSignal | undefined,
): Promise<number> {
  const inflight: Array<Promise<void>> = [];
  let rows: number[] = [];
  let batch = 0;
  let bytes = 0;
  const send = async (): Promise<void> => {
    if (signal?.aborted) throw signal.reason;
    if (inflight.length >= 2) await inflight.shift();
    const p = alongside(Float64Array.from(rows));
    p.catch(() => undefined); // awaited in order
    inflight.push(p);
    rows = [];
    batch = 0;
  };
  try {
    for (const key of keys) {
      const [lo, hi] = windows.get(key)!;
      const file = whole.fileOf(volume, sourceOf(key));
      for (let pos = lo; pos < hi; pos += PREFETCH_READ) {
        const n = Math.min(PREFETCH_READ, hi - pos);
        rows.push(file, pos, n, 0, -1, 0, 0, 0); // readOps rows (no record to check), all into the start of a scratch buffer
        bytes += n;
        batch += n;
        if (batch >= SLICE) await send();
      }
    }
    if (rows.length > 0) await send();
    while (inflight.length > 0) await inflight.shift();
  } finally {
    await Promise.allSettled(inflight);
  }
  return bytes;
}

/** the source (a segment, or SOURCE_BASE) of a window key */
function sourceOf(key: number): number {
  const id = Math.floor(key / KEY_SPAN);
  return id === 0 ? SOURCE_BASE : id - 1;
}

/**
 * Is the page in the middle of window [lo, hi) read from memory? mincore(2) is out of
 * Node's reach, so a timed pread stands in for it: from the page cache it takes a
 * few microseconds, from the disk tens of them. A wrong guess costs only time: a
 * window read that was not needed, or per-block preads that wait for the disk.
 */
function probeIsQuick(whole: WholeVolumeSource, volume: number, src: number, lo: number, hi: number, buf: Buffer): boolean {
  const mid = lo + Math.floor((hi - lo) / 2);
  const at = Math.max(lo, mid - (mid % PROBE));
  const t0 = process.hrtime.bigint();
  whole.readFromSync(volume, src, at, Math.min(PROBE, hi - at), buf);
  return Number(process.hrtime.bigint() - t0) < PROBE_QUICK_NS;
}

/** For each read window of each source (key), the [lo, hi) byte range its blocks of `volume` span. */
async function neededWindows(whole: WholeVolumeSource, volume: number, windowSize: number): Promise<Map<number, [number, number]>> {
  const windows = new Map<number, [number, number]>();
  await whole.runs(volume, (_at, n, src, pos) => {
    if (src === SOURCE_ZERO || src === SOURCE_PARTIAL) return; // partial blocks: a few preads
    const id = src === SOURCE_BASE ? 0 : src + 1;
    const end = pos + n;
    // a run may cross windows: each window gets its part
    for (let w = Math.floor(pos / windowSize); w * windowSize < end; w++) {
      const lo = Math.max(pos, w * windowSize);
      const hi = Math.min(end, (w + 1) * windowSize);
      const key = id * KEY_SPAN + w;
      const cur = windows.get(key);
      if (!cur) windows.set(key, [lo, hi]);
      else {
        if (lo < cur[0]) cur[0] = lo;
        if (hi > cur[1]) cur[1] = hi;
      }
    }
  });
  return windows;
}
