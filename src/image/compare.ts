/**
 * Comparing images: two images byte for byte (compareImages), or an image with a
 * hash manifest made elsewhere (compareWithManifest), so two sites compare by
 * exchanging 32 bytes per chunk instead of the data. Both read stripes on every
 * core (pool.ts) and report merged differing ranges.
 */
import type { Readable } from 'node:stream';
import { DrError } from '../errors.js';
import { closeImage, openImage } from './device.js';
import { DIGEST_LENGTH, ManifestReader, checkChunkSize, describeManifest, type ManifestHeader } from './manifest.js';
import { WorkerPool, defaultThreads, ordered } from './pool.js';
import { RangeList, type Range } from './ranges.js';
import { STRIPE, type CompareResult, type CompareTask, type HashResult, type HashTask } from './tasks.js';

export interface CompareReport {
  equal: boolean;
  a: { name: string; size: number };
  b: { name: string; size: number };
  /** bytes compared (the common part when sizes differ) */
  compared: number;
  sizesDiffer: boolean;
  chunk: number;
  /** merged differing ranges (at most maxRanges listed) */
  ranges: Range[];
  rangeCount: number;
  rangesTruncated: boolean;
  differentBytes: number;
  /** true when ranges have exact byte ends (image vs image); false: whole chunks (vs a manifest) */
  exact: boolean;
  seconds: number;
}

export const DEFAULT_COMPARE_CHUNK = 4096;

function report(
  a: { name: string; size: number }, b: { name: string; size: number }, compared: number, chunk: number,
  ranges: RangeList, exact: boolean, t0: number,
): CompareReport {
  const sizesDiffer = a.size !== b.size;
  return {
    equal: !sizesDiffer && ranges.count === 0,
    a, b, compared, sizesDiffer, chunk,
    ranges: ranges.kept,
    rangeCount: ranges.count,
    rangesTruncated: ranges.truncated,
    differentBytes: ranges.bytes,
    exact,
    seconds: (performance.now() - t0) / 1000,
  };
}

export async function compareImages(a: string, b: string, opts: { chunk?: number; maxRanges?: number } = {}): Promise<CompareReport> {
  const t0 = performance.now();
  const chunk = opts.chunk ?? DEFAULT_COMPARE_CHUNK;
  checkChunkSize(chunk);
  const ha = openImage(a);
  const hb = openImage(b);
  closeImage(ha);
  closeImage(hb);
  const common = Math.min(ha.size, hb.size);
  const ranges = new RangeList(opts.maxRanges, chunk);
  const pool = new WorkerPool(defaultThreads(common * 2));
  try {
    const stripe = Math.max(STRIPE, chunk);
    function* tasks(): Generator<CompareTask> {
      for (let offset = 0; offset < common; offset += stripe) {
        yield { kind: 'compare', a, b, offset, length: Math.min(stripe, common - offset), chunk };
      }
    }
    for await (const [, res] of ordered(pool, tasks())) {
      for (const [s, e] of (res as CompareResult).ranges) ranges.add(s, e);
    }
  } finally {
    await pool.close();
  }
  return report({ name: a, size: ha.size }, { name: b, size: hb.size }, common, chunk, ranges, true, t0);
}

export interface ManifestCompareOptions {
  chunk?: number;
  volume?: string;
  maxRanges?: number;
}

export async function compareWithManifest(
  image: string,
  manifest: Readable,
  manifestName: string,
  opts: ManifestCompareOptions = {},
): Promise<CompareReport & { manifest: ManifestHeader }> {
  const t0 = performance.now();
  const h = openImage(image);
  closeImage(h);
  const reader = new ManifestReader(manifest, manifestName);
  const m = await reader.readHeader();
  const where = `manifest ${manifestName} (${describeManifest(m)})`;
  if (opts.chunk !== undefined && opts.chunk !== m.chunkSize) {
    throw new DrError('DR_BAD_MANIFEST', `${where} was made with chunks of ${m.chunkSize} bytes, --chunk says ${opts.chunk}`);
  }
  if (opts.volume !== undefined && opts.volume !== m.volumeName) {
    throw new DrError('DR_VOLUME_MISMATCH', `${where} is for volume ${JSON.stringify(m.volumeName)}, not ${JSON.stringify(opts.volume)}`);
  }
  const chunk = m.chunkSize;
  const common = Math.min(h.size, m.volumeSize);
  // Chunks whose digests cover the same bytes on both sides: all of them when the sizes
  // agree; when they differ, only the chunks that end within the common part.
  const comparable = h.size === m.volumeSize ? m.chunkCount : Math.floor(common / chunk);
  const ranges = new RangeList(opts.maxRanges, chunk);
  const pool = new WorkerPool(defaultThreads(common));
  try {
    const stripe = Math.max(STRIPE, chunk);
    const perTask = stripe / chunk;
    async function* tasks(): AsyncGenerator<HashTask & { theirs: Buffer; first: number }> {
      for (let first = 0; first < comparable; first += perTask) {
        const count = Math.min(perTask, comparable - first);
        const offset = first * chunk;
        const length = Math.min(count * chunk, h.size - offset);
        const theirs = await reader.next(count);
        yield { kind: 'hash', path: image, offset, length, chunk, theirs, first };
      }
    }
    for await (const [task, res] of ordered(pool, tasks())) {
      const mine = Buffer.from((res as HashResult).digests.buffer);
      const count = mine.length / DIGEST_LENGTH;
      for (let i = 0; i < count; i++) {
        const s = i * DIGEST_LENGTH;
        if (mine.compare(task.theirs, s, s + DIGEST_LENGTH, s, s + DIGEST_LENGTH) !== 0) {
          const start = (task.first + i) * chunk;
          ranges.add(start, Math.min(start + chunk, h.size));
        }
      }
    }
    if (comparable * chunk < common) ranges.add(comparable * chunk, common);
    await reader.checkEnd();
  } finally {
    await pool.close();
    manifest.destroy();
  }
  return { ...report({ name: image, size: h.size }, { name: manifestName, size: m.volumeSize }, common, chunk, ranges, false, t0), manifest: m };
}
