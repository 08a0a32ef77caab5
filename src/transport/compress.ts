/**
 * Compression on the wire (compress=brotli). The stream bytes are cut into frames
 * of up to FRAME_MAX bytes; each frame is
 *
 *   off size field
 *     0    1 kind: 0 stored, 1 brotli, 2 zeros, 3 sparse
 *     1    4 raw length (u32 LE, 1..FRAME_MAX)
 *     5    4 payload length (u32 LE; 0 for zeros)
 *     9    . payload: stored = the raw bytes; brotli = a brotli stream of them;
 *            zeros = nothing; sparse = a bitmap of the block's 4 KiB pages (bit i
 *            of byte i/8 set = page i follows), then the pages whose bit is set
 *
 * Each block of up to 256 KiB becomes one frame. All-zero 4 KiB pages (common on
 * block devices) are found by comparison and never sent: a block of only zeros is
 * a 9-byte frame, a block with some is sparse. Whether the rest is worth brotli is
 * decided on a sample: the byte entropy of the first 1 KiB of four of its pages (brotli
 * is used when three of four are below 6 bits per byte; a histogram costs far less than a trial
 * compression): compressible content is compressed whole, random or barely
 * compressible content is sent as it is, so it costs neither side a compressor
 * pass (brotli decompresses at only about 200 MB/s here).
 * Blocks of a batch are compressed in parallel on libuv's thread pool. Why brotli
 * and not deflate: zlib's deflate runs at about 60 MB/s on random data here,
 * slower than ssh carries it, while brotli quality 1 passes random data at several
 * hundred MB/s (see scripts/bench.d/ship.mjs and the man page).
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { DrError } from '../errors.js';
import { ByteQueue } from '../format/byte-queue.js';
import { isZero } from '../format/zeros.js';
import { ReusableSlabs } from './slabs.js';

export const FRAME_HEADER = 9;
export const FRAME_MAX = 4 * 1024 * 1024;
export const BLOCK = 256 * 1024;
const KIND_STORED = 0;
const KIND_BROTLI = 1;
const KIND_ZEROS = 2;
const KIND_SPARSE = 3;
const PAGE = 4096;
/** bytes of a sample page whose entropy is measured */
const ENTROPY_SAMPLE = 1024;
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

const histogram = new Uint32Array(256);

/** Order-0 entropy of bytes start..end of `b`, in bits per byte (8 = random). */
function entropyBits(b: Buffer, start: number, end: number): number {
  histogram.fill(0);
  for (let i = start; i < end; i++) histogram[b[i]!]!++;
  const n = end - start;
  let h = 0;
  for (let v = 0; v < 256; v++) {
    const c = histogram[v]!;
    if (c > 0) {
      const p = c / n;
      h -= p * Math.log2(p);
    }
  }
  return h;
}

async function encodeBlock(raw: Buffer): Promise<Buffer[]> {
  const pages = Math.ceil(raw.length / PAGE);
  const present: number[] = [];
  for (let i = 0; i < pages; i++) if (!isZero(raw, i * PAGE, Math.min(raw.length, (i + 1) * PAGE))) present.push(i);
  if (present.length === 0) return [frameHeader(KIND_ZEROS, raw.length, 0)];
  // Is the non-zero content compressible? Look at a sample of a few of its pages before paying
  // for brotli on the block: the first ENTROPY_SAMPLE bytes of each (a histogram of whole pages
  // was most of the sender's work on random data, and a quarter of a page tells random from
  // compressible as well: random bytes come out near 7.8 bits per byte, text and zero-padded
  // structures well under 6).
  const picks = [...new Set([0, 1, 2, 3].map((k) => present[Math.floor((k * present.length) / 4)]!))];
  let compressible = 0;
  for (const i of picks) if (entropyBits(raw, i * PAGE, Math.min(raw.length, i * PAGE + ENTROPY_SAMPLE)) < 6) compressible++;
  if (compressible * 4 >= picks.length * 3) {
    const packed = await brotliCompress(raw, BROTLI_OPTS);
    if (packed.length < raw.length - (raw.length >> 5)) return [frameHeader(KIND_BROTLI, raw.length, packed.length), packed];
  }
  if (present.length < pages) {
    // sparse: a bitmap of the pages sent, then those pages (runs of them as one piece)
    const bitmap = Buffer.alloc(Math.ceil(pages / 8));
    const parts: Buffer[] = [bitmap];
    let length = bitmap.length;
    for (let k = 0; k < present.length; ) {
      let j = k;
      while (j + 1 < present.length && present[j + 1] === present[j]! + 1) j++;
      for (let i = k; i <= j; i++) bitmap[present[i]! >> 3]! |= 1 << (present[i]! & 7);
      const piece = raw.subarray(present[k]! * PAGE, (present[j]! + 1) * PAGE);
      parts.push(piece);
      length += piece.length;
      k = j + 1;
    }
    return [frameHeader(KIND_SPARSE, raw.length, length), ...parts];
  }
  return [frameHeader(KIND_STORED, raw.length, raw.length), raw];
}

/** The raw bytes of a sparse frame into `out` (rawLen bytes, any contents): its pages where sent, zeros elsewhere. */
function decodeSparse(rawLen: number, payload: Buffer, at: number, out: Buffer): Buffer {
  const pages = Math.ceil(rawLen / PAGE);
  const mapLen = Math.ceil(pages / 8);
  const bad = () => new DrError('DR_BAD_RECORD', `sparse frame at wire byte ${at} does not add up`);
  if (payload.length < mapLen) throw bad();
  let pos = mapLen;
  for (let i = 0; i < pages; i++) {
    const len = Math.min(PAGE, rawLen - i * PAGE);
    if (!(payload[i >> 3]! & (1 << (i & 7)))) {
      out.fill(0, i * PAGE, i * PAGE + len);
      continue;
    }
    if (pos + len > payload.length) throw bad();
    payload.copy(out, i * PAGE, pos, pos + len);
    pos += len;
  }
  if (pos !== payload.length) throw bad();
  return out;
}

/** Compress one batch of raw stream bytes (up to FRAME_MAX) into frames, 256 KiB blocks in parallel. */
export async function encodeFrames(raw: Buffer): Promise<Buffer[]> {
  if (raw.length === 0 || raw.length > FRAME_MAX) throw new Error(`batch of ${raw.length} bytes`);
  const jobs: Array<Promise<Buffer[]>> = [];
  for (let off = 0; off < raw.length; off += BLOCK) jobs.push(encodeBlock(raw.subarray(off, Math.min(raw.length, off + BLOCK))));
  return (await Promise.all(jobs)).flat();
}

/**
 * Incremental frame decoder: compressed bytes in, raw stream bytes out. Stored and
 * sparse frames are decoded into reused memory (slabs.ts): what push() returned stays
 * valid until recycle() is called, which the caller does once nothing refers to it.
 */
export class FrameDecoder {
  private queue = new ByteQueue();
  private readonly slabs = new ReusableSlabs();
  /** raw bytes produced so far */
  rawBytes = 0;
  /** wire bytes consumed so far */
  wireBytes = 0;

  push(chunk: Buffer): Buffer[] {
    this.queue.push(chunk);
    const out: Buffer[] = [];
    for (;;) {
      if (this.queue.length < FRAME_HEADER) return out;
      const head = this.queue.peek(FRAME_HEADER);
      const kind = head.readUInt8(0);
      const rawLen = head.readUInt32LE(1);
      const len = head.readUInt32LE(5);
      if (kind > KIND_SPARSE || rawLen < 1 || rawLen > FRAME_MAX || len > FRAME_MAX + 1024
        || (kind === KIND_STORED && len !== rawLen) || (kind === KIND_ZEROS && len !== 0)) {
        throw new DrError('DR_BAD_RECORD', `bad compressed frame header at wire byte ${this.wireBytes} (kind ${kind}, ${rawLen} raw, ${len} packed bytes)`);
      }
      if (this.queue.length < FRAME_HEADER + len) return out;
      this.queue.drop(FRAME_HEADER);
      let raw: Buffer;
      if (kind === KIND_STORED) {
        raw = this.takePayload(len);
      } else if (kind === KIND_ZEROS) {
        // a view of the shared zero block (nobody writes into decoded bytes): no allocation per frame
        raw = rawLen <= BLOCK ? ZERO_BLOCK.subarray(0, rawLen) : Buffer.alloc(rawLen);
      } else if (kind === KIND_SPARSE) {
        raw = decodeSparse(rawLen, this.takePayload(len), this.wireBytes, this.slabs.take(rawLen));
      } else {
        const payload = this.queue.take(len);
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

  /** The next `len` bytes: a view where they lie in one received chunk, else copied into reused memory. */
  private takePayload(len: number): Buffer {
    const q = this.queue;
    if (len === 0 || q.front!.length - q.frontOffset >= len) return q.take(len);
    const out = this.slabs.take(len);
    let at = 0;
    for (const part of q.takeParts(len)) at += part.copy(out, at);
    return out;
  }

  /** Every buffer push() returned so far is no longer used: its memory may be decoded into again. */
  recycle(): void {
    this.slabs.recycle();
  }

  /** Bytes of an incomplete frame held back. */
  get pendingBytes(): number {
    return this.queue.length;
  }
}
