/**
 * Compression on the wire (compress=brotli). The stream bytes are cut into frames
 * of up to FRAME_MAX bytes; each frame is
 *
 *   off size field
 *     0    1 kind: 0 = stored (payload is the raw bytes), 1 = brotli, 2 = zeros
 *     1    4 raw length (u32 LE, 1..FRAME_MAX)
 *     5    4 payload length (u32 LE; 0 for zeros)
 *     9    . payload
 *
 * Each block of up to 256 KiB becomes one frame: an all-zero block (common on
 * block devices) is sent as a 9-byte zeros frame without any compressor; other
 * blocks go through brotli quality 1, which recognises incompressible input
 * quickly and squeezes repetitive data hard; a block that does not shrink by at
 * least 1/32 is stored, so random data costs the receiver no decompression.
 * Blocks of a batch are compressed in parallel on libuv's thread pool. Why brotli
 * and not deflate: zlib's deflate runs at about 60 MB/s on random data here,
 * slower than ssh carries it, while brotli quality 1 passes random data at several
 * hundred MB/s (see scripts/bench.d/ship.mjs and the man page).
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { DrError } from '../errors.js';

export const FRAME_HEADER = 9;
export const FRAME_MAX = 4 * 1024 * 1024;
export const BLOCK = 256 * 1024;
const KIND_STORED = 0;
const KIND_BROTLI = 1;
const KIND_ZEROS = 2;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

const brotliCompress = promisify(zlib.brotliCompress);
const BROTLI_OPTS: zlib.BrotliOptions = {
  params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: 1,
    [zlib.constants.BROTLI_PARAM_LGWIN]: 18,
  },
};

function frameHeader(kind: number, rawLength: number, payloadLength: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER);
  h.writeUInt8(kind, 0);
  h.writeUInt32LE(rawLength, 1);
  h.writeUInt32LE(payloadLength, 5);
  return h;
}

async function encodeBlock(raw: Buffer): Promise<Buffer[]> {
  if (raw.equals(ZERO_BLOCK.subarray(0, raw.length))) return [frameHeader(KIND_ZEROS, raw.length, 0)];
  const packed = await brotliCompress(raw, BROTLI_OPTS);
  if (packed.length >= raw.length - (raw.length >> 5)) return [frameHeader(KIND_STORED, raw.length, raw.length), raw];
  return [frameHeader(KIND_BROTLI, raw.length, packed.length), packed];
}

/** Compress one batch of raw stream bytes (up to FRAME_MAX) into frames, 256 KiB blocks in parallel. */
export async function encodeFrames(raw: Buffer): Promise<Buffer[]> {
  if (raw.length === 0 || raw.length > FRAME_MAX) throw new Error(`batch of ${raw.length} bytes`);
  const jobs: Array<Promise<Buffer[]>> = [];
  for (let off = 0; off < raw.length; off += BLOCK) jobs.push(encodeBlock(raw.subarray(off, Math.min(raw.length, off + BLOCK))));
  return (await Promise.all(jobs)).flat();
}

/** Incremental frame decoder: compressed bytes in, raw stream bytes out. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** raw bytes produced so far */
  rawBytes = 0;
  /** wire bytes consumed so far */
  wireBytes = 0;

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buffered < FRAME_HEADER) return out;
      const head = this.peek(FRAME_HEADER);
      const kind = head.readUInt8(0);
      const rawLen = head.readUInt32LE(1);
      const len = head.readUInt32LE(5);
      if ((kind !== KIND_STORED && kind !== KIND_BROTLI && kind !== KIND_ZEROS) || rawLen < 1 || rawLen > FRAME_MAX || len > FRAME_MAX + 1024
        || (kind === KIND_STORED && len !== rawLen) || (kind === KIND_ZEROS && len !== 0)) {
        throw new DrError('DR_BAD_RECORD', `bad compressed frame header at wire byte ${this.wireBytes} (kind ${kind}, ${rawLen} raw, ${len} packed bytes)`);
      }
      if (this.buffered < FRAME_HEADER + len) return out;
      this.skip(FRAME_HEADER);
      const payload = this.takeCopy(len);
      let raw: Buffer;
      if (kind === KIND_STORED) raw = payload;
      else if (kind === KIND_ZEROS) raw = Buffer.alloc(rawLen);
      else {
        try {
          raw = zlib.brotliDecompressSync(payload, { maxOutputLength: FRAME_MAX });
        } catch (err) {
          throw new DrError('DR_BAD_RECORD', `compressed frame at wire byte ${this.wireBytes} does not decompress: ${(err as Error).message}`);
        }
        if (raw.length !== rawLen) throw new DrError('DR_BAD_RECORD', `compressed frame at wire byte ${this.wireBytes} gives ${raw.length} bytes, its header says ${rawLen}`);
      }
      this.wireBytes += FRAME_HEADER + len;
      this.rawBytes += raw.length;
      out.push(raw);
    }
  }

  /** Bytes of an incomplete frame held back. */
  get pendingBytes(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const c of this.chunks) {
      filled += c.copy(out, filled, 0, Math.min(c.length, n - filled));
      if (filled === n) break;
    }
    return out;
  }

  private skip(n: number): void {
    this.takeCopy(n);
  }

  private takeCopy(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const need = n - filled;
      if (c.length <= need) {
        c.copy(out, filled);
        filled += c.length;
        this.chunks.shift();
      } else {
        c.copy(out, filled, 0, need);
        this.chunks[0] = c.subarray(need);
        filled = n;
      }
    }
    this.buffered -= n;
    return out;
  }
}
