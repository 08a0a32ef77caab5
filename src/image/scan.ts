/**
 * Snapshot mode (dr-tap scan): hash every block of an image, compare with the
 * manifest of the previous scan, and write a journal stream of what changed:
 * WRITE records for blocks with new data, ZERO records for blocks that became all
 * zero. The first scan (no manifest) writes the full baseline, skipping all-zero
 * blocks. The manifest keeps the group id and next seq, so successive scans
 * continue one journal; it is replaced (write temp, fsync, rename, fsync dir) only
 * after the whole stream was written, so a failed pipe loses nothing: the next
 * scan sends those blocks again.
 */
import { basename, dirname } from 'node:path';
import { closeSync, createReadStream, existsSync, fdatasyncSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeSync, fsyncSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { createHash } from 'node:crypto';
import { DrError, fromSystemError } from '../errors.js';
import { StreamWriter, nowMicros } from '../format/codec.js';
import { LIMITS, checkVolumeName, isPowerOfTwo, newId } from '../format/layout.js';
import { formatBytes } from '../cli/units.js';
import { closeImage, openImage } from './device.js';
import {
  MANIFEST_HEADER_SIZE, ManifestReader, chunkCountFor, describeManifest, encodeManifestHeader,
  type ManifestHeader,
} from './manifest.js';
import { WorkerPool, defaultThreads, ordered } from './pool.js';
import type { ScanResult, ScanTask } from './tasks.js';

export const DEFAULT_SCAN_BLOCK = 4096;
/** bytes of image per worker task */
const SCAN_STRIPE = 4 << 20;

export interface ScanOptions {
  image: string;
  manifest: string;
  volume?: string;
  blockSize?: number;
  /** add a MARK of this name (kind user) after the scan's records */
  mark?: string;
  out: Writable;
  /** fd of `out` when it is a file or pipe we may fsync (stdout = 1) */
  outFd?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface ScanSummary {
  image: string;
  volume: string;
  size: number;
  blockSize: number;
  firstRun: boolean;
  blocks: number;
  changedBlocks: number;
  changedBytes: number;
  zeroedBlocks: number;
  records: number;
  firstSeq: number;
  lastSeq: number;
  nextSeq: number;
  groupId: string;
  seconds: number;
}

/** A volume name from an image path: its basename, if it is a valid volume name. */
export function defaultVolumeName(image: string): string {
  const name = basename(image);
  try {
    checkVolumeName(name);
    return name;
  } catch {
    throw new DrError('DR_USAGE', `cannot use ${JSON.stringify(name)} as a volume name: give one with --volume`);
  }
}

async function readOldManifest(path: string): Promise<ManifestHeader | null> {
  if (!existsSync(path)) return null;
  // Check the whole manifest (trailer included) before trusting any digest in it.
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  const reader = new ManifestReader(stream, path);
  try {
    const h = await reader.readHeader();
    await reader.checkEnd();
    return h;
  } catch (err) {
    throw err instanceof DrError ? err : fromSystemError(err, `reading manifest ${path}`);
  } finally {
    stream.destroy();
  }
}

/** Write to a Node stream honouring backpressure. */
function writer(out: Writable, signal?: AbortSignal): { write(parts: Buffer[]): Promise<void> | null; flush(): Promise<void> } {
  let error: Error | null = null;
  out.on('error', (e) => {
    error = e;
  });
  const waitDrain = () => new Promise<void>((resolve, reject) => {
    const onDrain = () => { cleanup(); resolve(); };
    const onError = (e: Error) => { cleanup(); reject(e); };
    const onClose = () => { cleanup(); reject(new DrError('DR_EPIPE', 'output closed')); };
    const cleanup = () => { out.off('drain', onDrain); out.off('error', onError); out.off('close', onClose); };
    out.on('drain', onDrain);
    out.on('error', onError);
    out.on('close', onClose);
  });
  return {
    write(parts) {
      if (error) throw fromSystemError(error, 'writing the stream');
      if (signal?.aborted) throw signal.reason;
      let ok = true;
      for (const p of parts) ok = out.write(p);
      return ok ? null : waitDrain();
    },
    flush() {
      return new Promise<void>((resolve, reject) => {
        out.write(Buffer.alloc(0), (err) => (err ? reject(fromSystemError(err, 'writing the stream')) : error ? reject(fromSystemError(error, 'writing the stream')) : resolve()));
      });
    },
  };
}

export async function scanImage(opts: ScanOptions): Promise<ScanSummary> {
  const t0 = performance.now();
  const img = openImage(opts.image);
  const size = img.size;
  closeImage(img);
  if (size === 0) throw new DrError('DR_USAGE', `${opts.image} is empty: nothing to scan`);

  const old = await readOldManifest(opts.manifest);
  if (opts.blockSize !== undefined) {
    if (!isPowerOfTwo(opts.blockSize) || opts.blockSize < LIMITS.minBlockSize || opts.blockSize > LIMITS.maxBlockSize) {
      throw new DrError('DR_USAGE', `block size ${opts.blockSize} must be a power of two from 512 bytes to 1 MiB`);
    }
  }
  let header: ManifestHeader;
  if (old) {
    const where = `manifest ${opts.manifest} (${describeManifest(old)})`;
    if (!old.journal) throw new DrError('DR_BAD_MANIFEST', `${where} was made by dr-verify hashes, not dr-tap scan: it has no journal group`);
    if (opts.blockSize !== undefined && opts.blockSize !== old.chunkSize) {
      throw new DrError('DR_BAD_MANIFEST', `${where} uses blocks of ${old.chunkSize} bytes, --block-size says ${opts.blockSize}`);
    }
    if (opts.volume !== undefined && opts.volume !== old.volumeName) {
      throw new DrError('DR_VOLUME_MISMATCH', `${where} is for volume ${JSON.stringify(old.volumeName)}, not ${JSON.stringify(opts.volume)}`);
    }
    if (old.volumeSize !== size) {
      throw new DrError('DR_VOLUME_MISMATCH', `${opts.image} is ${size} bytes but ${where} recorded ${old.volumeSize}: a resized volume needs a new manifest (and journal)`);
    }
    header = { ...old, created: nowMicros() };
  } else {
    const blockSize = opts.blockSize ?? DEFAULT_SCAN_BLOCK;
    const name = opts.volume ?? defaultVolumeName(opts.image);
    checkVolumeName(name);
    header = {
      algorithm: 'sha256', chunkSize: blockSize, volumeSize: size, chunkCount: chunkCountFor(size, blockSize),
      volumeId: newId(), volumeName: name, created: nowMicros(), journal: { groupId: newId(), nextSeq: 1 },
    };
  }
  const block = header.chunkSize;
  const journal = header.journal!;

  // The new manifest goes to a temporary file next to the old one until the stream is out.
  const tmp = `${opts.manifest}.tmp-${process.pid}`;
  let tmpFd: number;
  try {
    tmpFd = openSync(tmp, 'wx+', 0o644);
  } catch (err) {
    throw fromSystemError(err, `cannot create ${tmp}`);
  }
  const removeTmp = () => {
    try {
      unlinkSync(tmp);
    } catch {
      /* gone */
    }
  };
  // A broken pipe ends the process from the CLI kit's handler: never leave the temp file behind.
  process.once('exit', removeTmp);
  let committed = false;
  const pool = new WorkerPool(defaultThreads(size));
  let oldStream: ReturnType<typeof createReadStream> | null = null;
  try {
    let manifestPos = MANIFEST_HEADER_SIZE;
    writeSync(tmpFd, Buffer.alloc(MANIFEST_HEADER_SIZE), 0, MANIFEST_HEADER_SIZE, 0); // placeholder

    let oldReader: ManifestReader | null = null;
    if (old) {
      oldStream = createReadStream(opts.manifest, { highWaterMark: 1 << 20 });
      oldReader = new ManifestReader(oldStream, opts.manifest);
      await oldReader.readHeader();
    }

    const sw = new StreamWriter({ groupId: journal.groupId, firstSeq: journal.nextSeq });
    const w = writer(opts.out, opts.signal);
    const emit = async (parts: Buffer[]) => {
      const p = w.write(parts);
      if (p) await p;
    };
    await emit([sw.start()]);
    await emit(sw.volume({ name: header.volumeName, size, blockSize: block, id: header.volumeId }));

    const summary: ScanSummary = {
      image: opts.image, volume: header.volumeName, size, blockSize: block, firstRun: !old,
      blocks: header.chunkCount, changedBlocks: 0, changedBytes: 0, zeroedBlocks: 0, records: 0,
      firstSeq: journal.nextSeq, lastSeq: journal.nextSeq - 1, nextSeq: journal.nextSeq,
      groupId: journal.groupId.toString('hex'), seconds: 0,
    };

    const stripe = Math.max(SCAN_STRIPE, block);
    async function* tasks(): AsyncGenerator<ScanTask> {
      for (let offset = 0; offset < size; offset += stripe) {
        const length = Math.min(stripe, size - offset);
        const count = Math.ceil(length / block);
        const oldDigests = oldReader ? await oldReader.next(count) : null;
        yield { kind: 'scan', path: opts.image, offset, length, block, old: oldDigests ? new Uint8Array(oldDigests) : null };
      }
    }

    // A run of blocks that became zero may continue into the next stripe.
    let zeroRun: { offset: number; length: number } | null = null;
    const flushZero = async () => {
      if (!zeroRun) return;
      const { parts } = sw.record({ type: 'zero', volume: 0, offset: zeroRun.offset, length: zeroRun.length });
      summary.records++;
      zeroRun = null;
      await emit(parts);
    };

    let done = 0;
    for await (const [task, res] of ordered(pool, tasks())) {
      const r = res as ScanResult;
      const digests = Buffer.from(r.digests.buffer, r.digests.byteOffset, r.digests.byteLength);
      writeAll(tmpFd, digests, manifestPos, tmp);
      manifestPos += digests.length;
      if (r.changed > 0 || r.zeroed > 0) {
        // r.data: the changed blocks' bytes in order; `cursor` walks it
        const data = r.data ? Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength) : null;
        let cursor = 0;
        const n = r.states.length;
        let i = 0;
        while (i < n) {
          const s = r.states[i]!;
          if (s === 0) {
            await flushZero();
            i++;
            continue;
          }
          let j = i + 1;
          while (j < n && r.states[j] === s) j++;
          const start = i * block;
          const end = Math.min(j * block, task.length);
          if (s === 1) {
            await flushZero();
            const { parts } = sw.record({ type: 'write', volume: 0, offset: task.offset + start, data: data!.subarray(cursor, cursor + end - start) });
            cursor += end - start;
            summary.records++;
            summary.changedBlocks += j - i;
            summary.changedBytes += end - start;
            await emit(parts);
          } else {
            summary.zeroedBlocks += j - i;
            const zr = zeroRun as { offset: number; length: number } | null;
            if (zr && zr.offset + zr.length === task.offset + start) zr.length += end - start;
            else {
              await flushZero();
              zeroRun = { offset: task.offset + start, length: end - start };
            }
          }
          i = j;
        }
      } else {
        await flushZero();
      }
      done += task.length;
      opts.onProgress?.(done, size);
    }
    await flushZero();
    if (summary.records > 0) {
      // The scanned state is complete: a point a restore may use.
      await emit(sw.record({ type: 'flush' }).parts);
      summary.records++;
    }
    if (opts.mark) {
      await emit(sw.record({ type: 'mark', kind: 'user', id: newId(), name: opts.mark }).parts);
      summary.records++;
    }
    await emit(sw.end());
    await w.flush();
    if (opts.outFd !== undefined) syncIfFile(opts.outFd);
    if (oldReader) await oldReader.checkEnd();

    // The stream is out: commit the new manifest.
    summary.lastSeq = sw.lastSeq;
    summary.nextSeq = sw.nextSeq;
    const finalHeader = encodeManifestHeader({ ...header, journal: { groupId: journal.groupId, nextSeq: sw.nextSeq } });
    writeAll(tmpFd, finalHeader, 0, tmp);
    writeAll(tmpFd, checksumOf(tmpFd, manifestPos), manifestPos, tmp);
    try {
      fsyncSync(tmpFd);
      closeSync(tmpFd);
      tmpFd = -1;
      renameSync(tmp, opts.manifest);
      syncDir(dirname(opts.manifest));
    } catch (err) {
      throw fromSystemError(err, `replacing manifest ${opts.manifest}`);
    }
    committed = true;
    summary.seconds = (performance.now() - t0) / 1000;
    return summary;
  } finally {
    oldStream?.destroy();
    await pool.close();
    if (tmpFd! >= 0) {
      try {
        closeSync(tmpFd!);
      } catch {
        /* ignore */
      }
    }
    if (!committed) removeTmp();
    process.off('exit', removeTmp);
  }
}

function writeAll(fd: number, buf: Buffer, pos: number, what: string): void {
  try {
    let done = 0;
    while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, pos + done);
  } catch (err) {
    throw fromSystemError(err, `writing ${what}`);
  }
}

/** SHA-256 of the first `length` bytes of a file (the manifest's header and digests). */
function checksumOf(fd: number, length: number): Buffer {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let pos = 0; pos < length;) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, length - pos), pos);
    if (n === 0) throw new DrError('DR_IO', 'manifest temp file shrank while being written');
    h.update(buf.subarray(0, n));
    pos += n;
  }
  return h.digest();
}

function syncIfFile(fd: number): void {
  try {
    if (fstatSync(fd).isFile()) fdatasyncSync(fd);
  } catch (err) {
    throw fromSystemError(err, 'syncing the stream output');
  }
}

function syncDir(dir: string): void {
  let fd = -1;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    /* some file systems refuse fsync on directories; the rename itself is done */
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

export function describeScan(s: ScanSummary): string {
  const what = s.firstRun ? 'baseline' : 'changes';
  const seq = s.lastSeq >= s.firstSeq ? `seq ${s.firstSeq}..${s.lastSeq}` : 'no records';
  return `${s.image}: ${what}: ${s.changedBlocks} block(s) written (${formatBytes(s.changedBytes)}), ${s.zeroedBlocks} zeroed, of ${s.blocks} blocks of ${s.blockSize} bytes; ${seq}; ${s.seconds.toFixed(2)}s`;
}
