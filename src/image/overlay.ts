/**
 * A copy-on-write overlay over a read-only image (the volume as of a restore
 * point): client writes go to a sparse overlay data file and a bitmap records
 * which blocks the overlay holds; reads take those blocks from the overlay and
 * every other byte from the base. The base is never written.
 *
 * Files, for an overlay named NAME:
 *   NAME.overlay      sparse data file, the size of the volume; block b at b x blockSize
 *   NAME.overlay.map  written (temp file, fsync, rename) at every flush and at close:
 *     0  8  magic "DROVLMAP"
 *     8  4  u32 length J of the identity JSON
 *    12  J  identity JSON (what the overlay belongs to: size, block size, and the caller's fields)
 *  12+J  ceil(blocks / 8) bitmap bytes, bit (b % 8) of byte (b / 8) = block b is in the overlay
 *   end  4  CRC-32 of every byte before it
 * Reopening an overlay continues it when its identity matches, and refuses it
 * otherwise; blocks written after the last flush are not in the map and read
 * from the base again (a client only relies on data it has flushed).
 */
import { promises as fsp } from 'node:fs';
import { crc32 } from 'node:zlib';
import { DrError, fromSystemError } from '../errors.js';

const MAGIC = Buffer.from('DROVLMAP', 'latin1');
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

export type BaseReader = (offset: number, length: number) => Promise<Buffer>;

export interface OverlayOptions {
  /** path of the data file; the map is `${file}.map` */
  file: string;
  size: number;
  /** copy-on-write granularity (a power of two; default 4096) */
  blockSize?: number;
  base: BaseReader;
  /** what the overlay belongs to (store, group, volume, point): a mismatch on reopen is refused */
  identity: Record<string, string | number>;
}

/** Serialises the overlay's writes (reads run freely: a block's bit is set only after its data is written). */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(f: () => Promise<T>): Promise<T> {
    const result = this.tail.then(f);
    this.tail = result.then(() => undefined, () => undefined);
    return result;
  }
}

export class CowOverlay {
  readonly file: string;
  readonly mapFile: string;
  readonly size: number;
  readonly blockSize: number;
  private readonly bitmap: Uint8Array;
  private readonly base: BaseReader;
  private readonly identity: Record<string, string | number>;
  private readonly lock = new Mutex();
  private fh: fsp.FileHandle;
  private dirty = false;
  private closed = false;
  /** blocks held by the overlay */
  count = 0;

  private constructor(opts: OverlayOptions, fh: fsp.FileHandle, bitmap: Uint8Array) {
    this.file = opts.file;
    this.mapFile = `${opts.file}.map`;
    this.size = opts.size;
    this.blockSize = opts.blockSize ?? 4096;
    this.bitmap = bitmap;
    this.base = opts.base;
    this.identity = opts.identity;
    this.fh = fh;
    for (let i = 0; i < bitmap.length; i++) {
      let b = bitmap[i]!;
      while (b) {
        this.count += b & 1;
        b >>= 1;
      }
    }
  }

  /** Create the overlay, or continue the one at `file` if it belongs to the same identity. */
  static async open(opts: OverlayOptions): Promise<CowOverlay> {
    const bs = opts.blockSize ?? 4096;
    if (bs < 512 || (bs & (bs - 1)) !== 0) throw new DrError('DR_USAGE', `overlay block size ${bs} is not a power of two >= 512`);
    const identity = { ...opts.identity, size: opts.size, blockSize: bs };
    const bitmapBytes = Math.ceil(Math.ceil(opts.size / bs) / 8);
    let bitmap: Uint8Array = new Uint8Array(bitmapBytes);
    let existing: Buffer | null = null;
    try {
      existing = await fsp.readFile(`${opts.file}.map`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `cannot read ${opts.file}.map`);
    }
    if (existing) {
      const { id, map } = decodeMap(existing, `${opts.file}.map`);
      if (JSON.stringify(sortKeys(id)) !== JSON.stringify(sortKeys(identity))) {
        throw new DrError('DR_EXISTS', `overlay ${opts.file} belongs to another image (${describe(id)}, not ${describe(identity)}): remove it or use another overlay directory`);
      }
      if (map.length !== bitmapBytes) throw new DrError('DR_BAD_MANIFEST', `overlay map ${opts.file}.map has ${map.length} bitmap bytes, expected ${bitmapBytes}`);
      bitmap = map;
    }
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(opts.file, existing ? 'r+' : 'w+', 0o600);
      await fh.truncate(opts.size);
    } catch (err) {
      if (existing && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new DrError('DR_BAD_MANIFEST', `overlay ${opts.file} is missing but its map ${opts.file}.map is there: remove the map to start a new overlay`);
      }
      throw fromSystemError(err, `cannot open overlay ${opts.file}`);
    }
    const ov = new CowOverlay({ ...opts, blockSize: bs, identity }, fh, bitmap);
    if (!existing) await ov.writeMap();
    return ov;
  }

  private has(b: number): boolean {
    return (this.bitmap[b >>> 3]! & (1 << (b & 7))) !== 0;
  }
  private mark(b: number): void {
    if (!this.has(b)) {
      this.bitmap[b >>> 3]! |= 1 << (b & 7);
      this.count++;
    }
  }

  private check(offset: number, length: number): void {
    if (this.closed) throw new DrError('DR_IO', `overlay ${this.file} is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new DrError('DR_OUT_OF_RANGE', `${offset}+${length} is past the end of the overlay (${this.size} bytes)`);
    }
  }

  /** The image's bytes: overlay blocks from the data file, the rest from the base. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    if (this.count === 0) return this.base(offset, length);
    const out = Buffer.allocUnsafe(length);
    const bs = this.blockSize;
    const end = offset + length;
    let cur = offset;
    while (cur < end) {
      const b = Math.floor(cur / bs);
      const inOverlay = this.has(b);
      let runEnd = Math.min((b + 1) * bs, end);
      let b2 = b + 1;
      while (runEnd < end && this.has(b2) === inOverlay) {
        runEnd = Math.min((b2 + 1) * bs, end);
        b2++;
      }
      const dst = out.subarray(cur - offset, runEnd - offset);
      if (inOverlay) await this.preadInto(dst, cur);
      else (await this.base(cur, runEnd - cur)).copy(dst);
      cur = runEnd;
    }
    return out;
  }

  /** Write `data` (pieces in order) at `offset`; partial blocks are first copied up from the base. */
  write(offset: number, data: Buffer[], fua = false): Promise<void> {
    const length = data.reduce((n, d) => n + d.length, 0);
    this.check(offset, length);
    return this.lock.run(async () => {
      if (length === 0) return;
      await this.copyUpEdges(offset, length);
      let pos = offset;
      for (const d of data) {
        await this.pwrite(d, pos);
        pos += d.length;
      }
      this.markRange(offset, length);
      if (fua) await this.sync();
    });
  }

  /** Make a range read as zeroes (NBD WRITE_ZEROES and TRIM). */
  zero(offset: number, length: number, fua = false): Promise<void> {
    this.check(offset, length);
    return this.lock.run(async () => {
      if (length === 0) return;
      await this.copyUpEdges(offset, length);
      for (let pos = offset; pos < offset + length;) {
        const n = Math.min(ZERO_CHUNK.length, offset + length - pos);
        await this.pwrite(ZERO_CHUNK.subarray(0, n), pos);
        pos += n;
      }
      this.markRange(offset, length);
      if (fua) await this.sync();
    });
  }

  /** Make every write so far durable: data file, then the map. */
  flush(): Promise<void> {
    return this.lock.run(() => this.sync());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.fh.close();
  }

  private async sync(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (err) {
      throw fromSystemError(err, `cannot sync overlay ${this.file}`);
    }
    if (this.dirty) await this.writeMap();
  }

  /** A block only partly covered by [offset, offset+length) and not yet in the overlay: copy it up first. */
  private async copyUpEdges(offset: number, length: number): Promise<void> {
    const bs = this.blockSize;
    const end = offset + length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    for (const b of first === last ? [first] : [first, last]) {
      const bStart = b * bs;
      const bEnd = Math.min(bStart + bs, this.size);
      const covered = offset <= bStart && end >= bEnd;
      if (covered || this.has(b)) continue;
      const block = await this.base(bStart, bEnd - bStart);
      await this.pwrite(block, bStart);
    }
  }

  private markRange(offset: number, length: number): void {
    const bs = this.blockSize;
    for (let b = Math.floor(offset / bs); b <= Math.floor((offset + length - 1) / bs); b++) this.mark(b);
    this.dirty = true;
  }

  private async pwrite(buf: Buffer, pos: number): Promise<void> {
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, pos + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw fromSystemError(err, `cannot write overlay ${this.file}`);
    }
  }

  private async preadInto(dst: Buffer, pos: number): Promise<void> {
    try {
      let done = 0;
      while (done < dst.length) {
        const { bytesRead } = await this.fh.read(dst, done, dst.length - done, pos + done);
        if (bytesRead === 0) {
          dst.fill(0, done);
          break;
        }
        done += bytesRead;
      }
    } catch (err) {
      throw fromSystemError(err, `cannot read overlay ${this.file}`);
    }
  }

  private async writeMap(): Promise<void> {
    this.dirty = false;
    const id = Buffer.from(JSON.stringify(this.identity), 'utf8');
    const head = Buffer.alloc(12);
    MAGIC.copy(head, 0);
    head.writeUInt32LE(id.length, 8);
    const bits = Buffer.from(this.bitmap.buffer, this.bitmap.byteOffset, this.bitmap.byteLength);
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32(bits, crc32(id, crc32(head))), 0);
    const tmp = `${this.mapFile}.tmp`;
    try {
      const fh = await fsp.open(tmp, 'w', 0o600);
      try {
        await fh.writev([head, id, bits, crc]);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, this.mapFile);
    } catch (err) {
      this.dirty = true;
      throw fromSystemError(err, `cannot write overlay map ${this.mapFile}`);
    }
  }
}

function decodeMap(b: Buffer, file: string): { id: Record<string, unknown>; map: Uint8Array } {
  const bad = (why: string) => new DrError('DR_BAD_MANIFEST', `overlay map ${file} is damaged: ${why}`);
  if (b.length < 16 || !b.subarray(0, 8).equals(MAGIC)) throw bad('bad magic');
  if (crc32(b.subarray(0, b.length - 4)) !== b.readUInt32LE(b.length - 4)) throw bad('checksum mismatch');
  const n = b.readUInt32LE(8);
  if (12 + n + 4 > b.length) throw bad('identity length past the end');
  let id: Record<string, unknown>;
  try {
    id = JSON.parse(b.toString('utf8', 12, 12 + n)) as Record<string, unknown>;
  } catch {
    throw bad('identity is not JSON');
  }
  return { id, map: new Uint8Array(b.subarray(12 + n, b.length - 4)) };
}

function sortKeys(o: Record<string, unknown>): Array<[string, unknown]> {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function describe(o: Record<string, unknown>): string {
  return Object.entries(o).map(([k, v]) => `${k} ${String(v)}`).join(', ');
}
