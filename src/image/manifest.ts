/**
 * The hash manifest: one digest per fixed-size chunk of a volume, written by
 * `dr-verify hashes` and kept by `dr-tap scan --manifest` (which also stores the
 * journal group id and next seq in it, so successive scans continue one journal).
 * docs/MANIFEST.md and man/dr-verify.1 describe the layout; this module is its
 * only implementation. All integers little-endian.
 *
 *   manifest = header (192 bytes) digests (chunk count x digest length) trailer (32 bytes)
 *
 *  off size field
 *    0    8 magic 89 44 52 48 0d 0a 1a 0a  ("\x89DRH\r\n\x1a\n")
 *    8    2 version (1)
 *   10    2 header size (192)
 *   12    1 algorithm (1 = sha256)
 *   13    1 digest length (32)
 *   14    2 flags: bit 0 = group id and next seq are set (a dr-tap scan manifest)
 *   16    4 chunk size in bytes (power of two, 512..1 GiB)
 *   20    4 reserved, zero
 *   24    8 volume size in bytes
 *   32    8 chunk count = ceil(volume size / chunk size)
 *   40   16 volume id (zero when unknown)
 *   56   16 group id (zero unless flag bit 0)
 *   72    8 next seq (zero unless flag bit 0)
 *   80    8 created, microseconds since the epoch
 *   88    2 volume name length (0..64)
 *   90   64 volume name, UTF-8, zero padded
 *  154   34 reserved, zero
 *  188    4 CRC-32 of bytes 0..187
 *
 * Digest i covers bytes [i*chunk, min((i+1)*chunk, size)) of the volume.
 * The trailer is the SHA-256 of every byte before it (header and digests): a
 * manifest cut short or altered in transit is refused.
 */
import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { Readable } from 'node:stream';
import { DrError } from '../errors.js';
import { isPowerOfTwo } from '../format/layout.js';
import { formatBytes } from '../cli/units.js';

export const MANIFEST_MAGIC = Buffer.from([0x89, 0x44, 0x52, 0x48, 0x0d, 0x0a, 0x1a, 0x0a]);
export const MANIFEST_VERSION = 1;
export const MANIFEST_HEADER_SIZE = 192;
export const MANIFEST_TRAILER_SIZE = 32;
export const DIGEST_LENGTH = 32;
export const MIN_CHUNK = 512;
export const MAX_CHUNK = 1 << 30;
const FLAG_JOURNAL = 1;

export interface ManifestHeader {
  algorithm: 'sha256';
  chunkSize: number;
  volumeSize: number;
  chunkCount: number;
  volumeId: Buffer;
  volumeName: string;
  created: number;
  /** set by dr-tap scan: the journal group its streams belong to, and the seq the next stream starts at */
  journal: { groupId: Buffer; nextSeq: number } | null;
}

export function chunkCountFor(size: number, chunk: number): number {
  return Math.ceil(size / chunk);
}

export function checkChunkSize(chunk: number, what = 'chunk size'): void {
  if (!isPowerOfTwo(chunk) || chunk < MIN_CHUNK || chunk > MAX_CHUNK) {
    throw new DrError('DR_USAGE', `${what} ${chunk} must be a power of two from 512 bytes to 1 GiB`);
  }
}

export function encodeManifestHeader(h: ManifestHeader): Buffer {
  const b = Buffer.alloc(MANIFEST_HEADER_SIZE);
  MANIFEST_MAGIC.copy(b, 0);
  b.writeUInt16LE(MANIFEST_VERSION, 8);
  b.writeUInt16LE(MANIFEST_HEADER_SIZE, 10);
  b.writeUInt8(1, 12);
  b.writeUInt8(DIGEST_LENGTH, 13);
  b.writeUInt16LE(h.journal ? FLAG_JOURNAL : 0, 14);
  b.writeUInt32LE(h.chunkSize, 16);
  b.writeBigUInt64LE(BigInt(h.volumeSize), 24);
  b.writeBigUInt64LE(BigInt(h.chunkCount), 32);
  h.volumeId.copy(b, 40, 0, 16);
  if (h.journal) {
    h.journal.groupId.copy(b, 56, 0, 16);
    b.writeBigUInt64LE(BigInt(h.journal.nextSeq), 72);
  }
  b.writeBigUInt64LE(BigInt(h.created), 80);
  const name = Buffer.from(h.volumeName, 'utf8');
  if (name.length > 64) throw new DrError('DR_USAGE', `volume name ${JSON.stringify(h.volumeName)} is longer than 64 bytes`);
  b.writeUInt16LE(name.length, 88);
  name.copy(b, 90);
  b.writeUInt32LE(crc32(b.subarray(0, 188)), 188);
  return b;
}

export function decodeManifestHeader(b: Buffer, where: string): ManifestHeader {
  const bad = (what: string) => new DrError('DR_BAD_MANIFEST', `${where} is not a valid hash manifest: ${what}`);
  if (b.length < MANIFEST_HEADER_SIZE) throw bad(`only ${b.length} bytes`);
  if (!b.subarray(0, 8).equals(MANIFEST_MAGIC)) throw bad('bad magic');
  const version = b.readUInt16LE(8);
  if (version !== MANIFEST_VERSION) throw bad(`version ${version} (this reader knows 1)`);
  if (b.readUInt32LE(188) !== crc32(b.subarray(0, 188))) throw bad('header checksum mismatch');
  if (b.readUInt16LE(10) !== MANIFEST_HEADER_SIZE) throw bad('header size is not 192');
  if (b.readUInt8(12) !== 1 || b.readUInt8(13) !== DIGEST_LENGTH) throw bad(`unknown hash algorithm ${b.readUInt8(12)}`);
  const flags = b.readUInt16LE(14);
  if (flags & ~FLAG_JOURNAL) throw bad(`unknown flags 0x${flags.toString(16)}`);
  const chunkSize = b.readUInt32LE(16);
  if (!isPowerOfTwo(chunkSize) || chunkSize < MIN_CHUNK || chunkSize > MAX_CHUNK) throw bad(`chunk size ${chunkSize}`);
  const u64 = (off: number, what: string) => {
    const v = b.readBigUInt64LE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} is too large`);
    return Number(v);
  };
  const volumeSize = u64(24, 'volume size');
  const chunkCount = u64(32, 'chunk count');
  if (chunkCount !== chunkCountFor(volumeSize, chunkSize)) throw bad('chunk count does not match the volume size');
  const nameLen = b.readUInt16LE(88);
  if (nameLen > 64) throw bad('volume name too long');
  return {
    algorithm: 'sha256',
    chunkSize,
    volumeSize,
    chunkCount,
    volumeId: Buffer.from(b.subarray(40, 56)),
    volumeName: b.toString('utf8', 90, 90 + nameLen),
    created: u64(80, 'creation time'),
    journal: flags & FLAG_JOURNAL ? { groupId: Buffer.from(b.subarray(56, 72)), nextSeq: u64(72, 'next seq') } : null,
  };
}

/** Accumulates the running checksum of a manifest being written. */
export class ManifestEncoder {
  private digest: Hash = createHash('sha256');
  private written = 0;
  constructor(readonly header: ManifestHeader) {}
  start(): Buffer {
    const b = encodeManifestHeader(this.header);
    this.digest.update(b);
    return b;
  }
  digests(d: Buffer): Buffer {
    this.digest.update(d);
    this.written += d.length / DIGEST_LENGTH;
    return d;
  }
  end(): Buffer {
    if (this.written !== this.header.chunkCount) {
      throw new DrError('DR_IO', `manifest has ${this.written} digests, expected ${this.header.chunkCount}`);
    }
    return this.digest.digest();
  }
}

/**
 * Reads a manifest from a stream, handing out digests in order as they arrive.
 * The trailer is checked when the last digest has been taken (checkEnd()).
 */
export class ManifestReader {
  header!: ManifestHeader;
  private iter: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private digest: Hash = createHash('sha256');
  private taken = 0;
  private eof = false;

  constructor(input: Readable, readonly where: string) {
    this.iter = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.eof) {
      const r = await this.iter.next();
      if (r.done) {
        this.eof = true;
        break;
      }
      const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    }
    return this.buf.length >= n;
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async readHeader(): Promise<ManifestHeader> {
    if (!(await this.fill(MANIFEST_HEADER_SIZE))) {
      if (this.buf.length === 0) throw new DrError('DR_BAD_MANIFEST', `${this.where} is empty: no hash manifest`);
      if (!this.buf.subarray(0, 8).equals(MANIFEST_MAGIC.subarray(0, Math.min(8, this.buf.length)))) {
        throw new DrError('DR_BAD_MANIFEST', `${this.where} is not a valid hash manifest: bad magic`);
      }
      throw new DrError('DR_BAD_MANIFEST', `${this.where} is truncated: header cut short at ${this.buf.length} bytes`);
    }
    const hb = Buffer.from(this.take(MANIFEST_HEADER_SIZE));
    this.header = decodeManifestHeader(hb, this.where);
    this.digest.update(hb);
    return this.header;
  }

  /** The digests of chunks [taken, taken+count). */
  async next(count: number): Promise<Buffer> {
    const n = count * DIGEST_LENGTH;
    if (this.taken + count > this.header.chunkCount) throw new DrError('DR_BAD_MANIFEST', `${this.where}: asked for more digests than it holds`);
    if (!(await this.fill(n))) {
      throw new DrError('DR_BAD_MANIFEST', `${this.where} is truncated: digests end after chunk ${this.taken + Math.floor(this.buf.length / DIGEST_LENGTH)} of ${this.header.chunkCount}`);
    }
    const out = Buffer.from(this.take(n));
    this.digest.update(out);
    this.taken += count;
    return out;
  }

  /** After the last digest: the trailer must match and nothing may follow. */
  async checkEnd(): Promise<void> {
    if (this.taken < this.header.chunkCount) await this.next(this.header.chunkCount - this.taken);
    if (!(await this.fill(MANIFEST_TRAILER_SIZE))) throw new DrError('DR_BAD_MANIFEST', `${this.where} is truncated: checksum trailer missing`);
    const trailer = this.take(MANIFEST_TRAILER_SIZE);
    if (!trailer.equals(this.digest.digest())) throw new DrError('DR_BAD_MANIFEST', `${this.where}: manifest checksum mismatch (altered or corrupted)`);
    if (this.buf.length > 0 || (await this.fill(1))) throw new DrError('DR_BAD_MANIFEST', `${this.where}: data after the manifest trailer`);
  }
}

/** Human description used in mismatch messages. */
export function describeManifest(h: ManifestHeader): string {
  return `volume ${h.volumeName ? JSON.stringify(h.volumeName) : '(unnamed)'} of ${formatBytes(h.volumeSize)}, chunk ${formatBytes(h.chunkSize)}`;
}
