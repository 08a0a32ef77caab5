/**
 * Import of a Linux dm-log-writes log (the kernel's device-mapper write logger,
 * Documentation/admin-guide/device-mapper/log-writes.rst; also written from user
 * space by qemu's blklogwrites block driver) as a journal stream.
 *
 * Log layout (little-endian), in units of the log's sector size S:
 *   sector 0: super = u64 magic 0x6a736677736872, u64 version (1), u64 nr_entries, u32 sectorsize (S)
 *   then nr_entries entries, each one sector holding
 *     u64 sector, u64 nr_sectors, u64 flags, u64 data_len   (sector and nr_sectors in units of S)
 *     followed, in the same sector, by data_len bytes of entry data (a MARK's name);
 *   and, for a write (nr_sectors > 0, no DISCARD flag), nr_sectors*S bytes of data in
 *   the sectors right after the entry.
 * Flags: FLUSH 1, FUA 2, DISCARD 4, MARK 8, METADATA 16 (an annotation, ignored).
 *
 * Mapping: a write -> WRITE (split at 4 MiB; FUA sets the WRITE's FUA flag and is
 * followed by a FLUSH record); DISCARD -> ZERO with the discard flag; FLUSH -> FLUSH
 * (before the entry's data, if any: a pre-flush); MARK -> MARK (kind user). Only the
 * first nr_entries entries count: the super block is updated when the log is
 * flushed, so entries after them were never committed.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { DrError, fromSystemError } from '../errors.js';
import { StreamWriter } from '../format/codec.js';
import { LIMITS, isPowerOfTwo, newId, type RecordInput } from '../format/index.js';
import { blockDeviceSize, readFully } from './device.js';

export const LOG_MAGIC = 0x6a736677736872n;
export const LOG_VERSION = 1n;
export const LOG_FLUSH = 1n;
export const LOG_FUA = 2n;
export const LOG_DISCARD = 4n;
export const LOG_MARK = 8n;
export const LOG_METADATA = 16n;
const KNOWN = LOG_FLUSH | LOG_FUA | LOG_DISCARD | LOG_MARK | LOG_METADATA;
const ENTRY_SIZE = 32;
/** largest WRITE record this import emits */
const WRITE_PIECE = 4 << 20;

export interface LogEntry {
  index: number;
  /** byte offset of the entry in the log */
  at: number;
  sector: number;
  nrSectors: number;
  flags: bigint;
  mark: string | null;
}

export interface LogInfo {
  sectorSize: number;
  entries: number;
  /** end of the furthest write or discard, in bytes */
  extent: number;
  logBytes: number;
}

export interface LogSummary extends LogInfo {
  volume: string;
  size: number;
  writes: number;
  writeBytes: number;
  discards: number;
  flushes: number;
  marks: number;
  firstSeq: number;
  lastSeq: number;
  groupId: string;
}

class LogFile {
  fd: number;
  size: number;
  sectorSize = 0;
  entries = 0;
  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'r');
      const st = fstatSync(this.fd);
      // a log on a block device (the kernel target's log device): fstat says 0 bytes
      this.size = st.isBlockDevice() ? blockDeviceSize(path, st.rdev) : st.size;
    } catch (err) {
      throw fromSystemError(err, `cannot open log ${path}`);
    }
  }
  bad(what: string, at?: number): DrError {
    return new DrError('DR_BAD_RECORD', `${this.path}: ${what}${at !== undefined ? ` at byte ${at}` : ''}`, at !== undefined ? { offset: at } : {});
  }
  read(length: number, at: number, what: string): Buffer {
    const b = Buffer.allocUnsafe(length);
    const n = readFully(this.fd, b, length, at, this.path);
    if (n !== length) throw new DrError('DR_TRUNCATED', `${this.path}: log ends inside ${what} at byte ${at + n}`, { offset: at + n });
    return b;
  }
  readSuper(): void {
    if (this.size < 28) throw new DrError('DR_BAD_MAGIC', `${this.path} is not a dm-log-writes log (only ${this.size} bytes)`);
    const s = this.read(28, 0, 'the super block');
    if (s.readBigUInt64LE(0) !== LOG_MAGIC) throw new DrError('DR_BAD_MAGIC', `${this.path} is not a dm-log-writes log (bad magic)`);
    const version = s.readBigUInt64LE(8);
    if (version !== LOG_VERSION) throw new DrError('DR_UNSUPPORTED_VERSION', `${this.path}: dm-log-writes version ${version} is not supported (this reader knows 1)`);
    const nr = s.readBigUInt64LE(16);
    if (nr > BigInt(Number.MAX_SAFE_INTEGER)) throw this.bad(`entry count ${nr} is too large`, 16);
    this.entries = Number(nr);
    this.sectorSize = s.readUInt32LE(24);
    if (!isPowerOfTwo(this.sectorSize) || this.sectorSize < LIMITS.minBlockSize || this.sectorSize > LIMITS.maxBlockSize) {
      throw this.bad(`sector size ${this.sectorSize} is not a power of two from 512 to 1 MiB`, 24);
    }
  }
  /** Walk the entries: yields each entry with the byte position of its data. */
  *walk(): Generator<LogEntry & { dataAt: number }> {
    const S = this.sectorSize;
    let at = S;
    for (let i = 0; i < this.entries; i++) {
      const e = this.read(S <= this.size - at ? S : ENTRY_SIZE, at, `entry ${i}`);
      const sector = e.readBigUInt64LE(0);
      const nr = e.readBigUInt64LE(8);
      const flags = e.readBigUInt64LE(16);
      const dataLen = e.readBigUInt64LE(24);
      if (flags & ~KNOWN) throw this.bad(`entry ${i} has unknown flags 0x${flags.toString(16)}`, at);
      if (flags === 0n && nr === 0n) throw this.bad(`entry ${i} is empty (no flags, no sectors): the log is damaged`, at);
      if (sector * BigInt(S) > BigInt(Number.MAX_SAFE_INTEGER) || nr * BigInt(S) > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw this.bad(`entry ${i} addresses sectors beyond 2^53 bytes`, at);
      }
      let mark: string | null = null;
      if (flags & LOG_MARK) {
        if (dataLen > BigInt(S - ENTRY_SIZE)) throw this.bad(`entry ${i}: mark of ${dataLen} bytes does not fit its sector`, at);
        if (e.length < S) throw new DrError('DR_TRUNCATED', `${this.path}: log ends inside entry ${i}`);
        mark = markName(e.subarray(ENTRY_SIZE, ENTRY_SIZE + Number(dataLen)));
      }
      const nrSectors = Number(nr);
      const dataAt = at + S;
      yield { index: i, at, sector: Number(sector), nrSectors, flags, mark, dataAt };
      at = dataAt + (flags & LOG_DISCARD ? 0 : nrSectors * S);
    }
  }
  close(): void {
    closeSync(this.fd);
  }
}

/**
 * A dm-log-writes mark as a journal MARK name: trailing NULs dropped, control
 * characters replaced by '?', cut to the format's 255 bytes on a character boundary.
 */
export function markName(raw: Buffer): string {
  // eslint-disable-next-line no-control-regex
  let name = raw.toString('utf8').replace(/\0+$/, '').replace(/[\u0000-\u001f\u007f]/g, '?');
  while (Buffer.byteLength(name) > 255) name = name.slice(0, -1);
  return name;
}

/** First pass: the header and the furthest extent written (for the volume size). */
export function inspectLog(path: string): LogInfo {
  const log = new LogFile(path);
  try {
    log.readSuper();
    let extent = 0;
    for (const e of log.walk()) {
      if (e.nrSectors > 0) extent = Math.max(extent, (e.sector + e.nrSectors) * log.sectorSize);
      if (!(e.flags & LOG_DISCARD) && e.dataAt + e.nrSectors * log.sectorSize > log.size) {
        throw new DrError('DR_TRUNCATED', `${path}: log ends inside the data of entry ${e.index} (needs ${e.dataAt + e.nrSectors * log.sectorSize} bytes, has ${log.size})`);
      }
    }
    return { sectorSize: log.sectorSize, entries: log.entries, extent, logBytes: log.size };
  } finally {
    log.close();
  }
}

export interface ConvertOptions {
  log: string;
  volume: string;
  /** volume size in bytes; default: the furthest extent the log touches */
  size?: number;
  groupId?: Buffer;
  firstSeq?: number;
  volumeId?: Buffer;
  out: Writable;
  signal?: AbortSignal;
}

export async function convertLog(opts: ConvertOptions): Promise<LogSummary> {
  const info = inspectLog(opts.log);
  const size = opts.size ?? info.extent;
  if (size === 0) throw new DrError('DR_USAGE', `${opts.log} writes nothing, so the volume size is unknown: give --size`);
  if (info.extent > size) {
    throw new DrError('DR_OUT_OF_RANGE', `${opts.log} writes up to byte ${info.extent}, past the end of a volume of ${size} bytes (--size)`);
  }
  const sw = new StreamWriter({ groupId: opts.groupId ?? newId(), firstSeq: opts.firstSeq ?? 1 });
  const summary: LogSummary = {
    ...info, volume: opts.volume, size, writes: 0, writeBytes: 0, discards: 0, flushes: 0, marks: 0,
    firstSeq: sw.nextSeq, lastSeq: sw.nextSeq - 1, groupId: sw.header.groupId.toString('hex'),
  };
  const out = opts.out;
  let outError: Error | null = null;
  out.on('error', (e) => {
    outError = e;
  });
  const emit = async (parts: Buffer[]) => {
    if (outError) throw fromSystemError(outError, 'writing the stream');
    if (opts.signal?.aborted) throw opts.signal.reason;
    let ok = true;
    for (const p of parts) ok = out.write(p);
    if (!ok) await new Promise<void>((resolve) => out.once('drain', resolve));
  };
  const rec = (r: RecordInput) => emit(sw.record(r).parts);

  await emit([sw.start()]);
  await emit(sw.volume({ name: opts.volume, size, blockSize: info.sectorSize, id: opts.volumeId ?? newId() }));
  const log = new LogFile(opts.log);
  try {
    log.readSuper();
    const S = log.sectorSize;
    for (const e of log.walk()) {
      if (e.flags & LOG_MARK) {
        if (e.mark) {
          await rec({ type: 'mark', kind: 'user', id: newId(), name: e.mark });
          summary.marks++;
        }
        continue;
      }
      if (e.flags & LOG_FLUSH) {
        await rec({ type: 'flush' });
        summary.flushes++;
      }
      if (e.nrSectors > 0) {
        const offset = e.sector * S;
        const length = e.nrSectors * S;
        if (e.flags & LOG_DISCARD) {
          await rec({ type: 'zero', volume: 0, offset, length, discard: true });
          summary.discards++;
        } else {
          for (let done = 0; done < length; done += WRITE_PIECE) {
            const n = Math.min(WRITE_PIECE, length - done);
            const data = log.read(n, e.dataAt + done, `the data of entry ${e.index}`);
            await rec({ type: 'write', volume: 0, offset: offset + done, data, fua: (e.flags & LOG_FUA) !== 0n });
          }
          summary.writes++;
          summary.writeBytes += length;
        }
      }
      if (e.flags & LOG_FUA) {
        await rec({ type: 'flush' });
        summary.flushes++;
      }
    }
  } finally {
    log.close();
  }
  await emit(sw.end());
  await new Promise<void>((resolve, reject) => out.write(Buffer.alloc(0), (err) => (err ? reject(fromSystemError(err, 'writing the stream')) : resolve())));
  summary.lastSeq = sw.lastSeq;
  return summary;
}
