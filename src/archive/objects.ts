/**
 * The S3 object layer of the archive tier, on the official AWS SDK for JavaScript v3.
 *
 * Every object drkit writes carries its SHA-256 in its metadata (x-amz-meta-drkit-sha256)
 * and, next to it, a small "sums" object (KEY.sums) with the CRC-32 of every 1 MiB chunk,
 * so that ranged reads are verified too (the sums object itself is SHA-256 checked). Readers always check what they read against the
 * checksum the archive manifest recorded (DR_BAD_CHECKSUM on a mismatch).
 *
 * Large objects go up as multipart uploads that resume: an interrupted upload is found
 * again (ListMultipartUploads), the parts already there whose ETag (MD5) matches the local
 * bytes are kept, the rest are sent, and the object only appears when the upload is
 * completed at the very end - never a partial object that looks complete.
 *
 * Credentials and endpoint: flags, else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_REGION, AWS_ENDPOINT_URL (the SDK's own resolution). Path-style addressing.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import fs from 'node:fs';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import {
  S3Client, HeadObjectCommand, PutObjectCommand, GetObjectCommand, CreateBucketCommand, HeadBucketCommand,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand,
  ListMultipartUploadsCommand, ListPartsCommand, ListObjectsV2Command, DeleteObjectCommand,
  type CompletedPart, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { DrError, fromSystemError } from '../errors.js';

// The SDK warns on stderr about Node 20 support ending in 2027; drkit supports Node 20.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { SUM_CHUNK, DEFAULT_PART_SIZE, MIN_PART_SIZE, DEFAULT_CONCURRENCY } from './limits.js';
export { SUM_CHUNK, DEFAULT_PART_SIZE, MIN_PART_SIZE, DEFAULT_CONCURRENCY };
const SUMS_MAGIC = Buffer.from('DRSUMS01', 'latin1');
const META_SHA = 'drkit-sha256';

export interface S3Options {
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** multipart part size (>= 5 MiB); objects up to this size go up in one PUT */
  partSize?: number;
  /** parts in flight at once */
  concurrency?: number;
}

/** Random-access bytes to upload: a file, a prefix of one, or something assembled. */
export interface Source {
  readonly size: number;
  read(pos: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export async function fileSource(file: string, size?: number): Promise<Source> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (err) {
    throw fromSystemError(err, `cannot open ${file}`);
  }
  const total = size ?? (await fh.stat()).size;
  return {
    size: total,
    async read(pos, length) {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, pos + done);
        if (bytesRead === 0) throw new DrError('DR_IO', `${file} is shorter than expected (${pos + done} < ${pos + length} bytes)`);
        done += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}

export function bufferSource(b: Buffer): Source {
  return { size: b.length, read: async (pos, length) => b.subarray(pos, pos + length), close: async () => undefined };
}

export interface Digest {
  sha256: string;
  /** with `etag`: the ETag S3 gives the object uploaded with our part size (MD5, or MD5 of the part MD5s and -N) */
  etag: string | null;
  /** the sums object: magic, u32 chunk size, u64 object size, u32 CRC-32 per chunk */
  sums: Buffer;
}

/**
 * One pass over the source: whole SHA-256, the per-chunk CRC-32 sums and, when asked (it costs
 * an MD5 pass), the ETag an upload with `partSize` parts gets.
 */
export async function digestSource(src: Source, partSize: number, opts: { etag?: boolean; signal?: AbortSignal } = {}): Promise<Digest> {
  const whole = createHash('sha256');
  const chunks: Buffer[] = [];
  const partMd5s: Buffer[] = [];
  let part = opts.etag ? createHash('md5') : null;
  let inPart = 0;
  const step = 8 * SUM_CHUNK;
  for (let p = 0; p < src.size; p += step) {
    if (opts.signal?.aborted) throw interrupted();
    const b = await src.read(p, Math.min(step, src.size - p));
    whole.update(b);
    for (let q = 0; q < b.length; q += SUM_CHUNK) chunks.push(crcBytes(b.subarray(q, q + SUM_CHUNK)));
    let q = 0;
    while (part && q < b.length) {
      const n = Math.min(b.length - q, partSize - inPart);
      part.update(b.subarray(q, q + n));
      inPart += n;
      q += n;
      if (inPart === partSize) {
        partMd5s.push(part.digest());
        part = createHash('md5');
        inPart = 0;
      }
    }
  }
  let etag: string | null = null;
  if (part) {
    if (inPart > 0 || partMd5s.length === 0) partMd5s.push(part.digest());
    etag = src.size <= partSize
      ? `"${partMd5s[0]!.toString('hex')}"`
      : `"${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${partMd5s.length}"`;
  }
  return { sha256: whole.digest('hex'), sums: encodeSums(src.size, chunks), etag };
}

function crcBytes(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32LE(crc32(b), 0);
  return out;
}

function encodeSums(size: number, chunks: Buffer[]): Buffer {
  const head = Buffer.alloc(20);
  SUMS_MAGIC.copy(head, 0);
  head.writeUInt32LE(SUM_CHUNK, 8);
  head.writeBigUInt64LE(BigInt(size), 12);
  return Buffer.concat([head, ...chunks]);
}

interface Sums { chunk: number; size: number; hashes: Buffer }
function decodeSums(b: Buffer, what: string): Sums {
  if (b.length < 20 || !b.subarray(0, 8).equals(SUMS_MAGIC)) throw new DrError('DR_BAD_CHECKSUM', `${what} is not a drkit checksum list`);
  const chunk = b.readUInt32LE(8);
  const size = Number(b.readBigUInt64LE(12));
  const n = Math.ceil(size / chunk);
  if (chunk === 0 || b.length !== 20 + 4 * n) throw new DrError('DR_BAD_CHECKSUM', `${what} is damaged (length ${b.length})`);
  return { chunk, size, hashes: b.subarray(20) };
}

function interrupted(): DrError {
  return new DrError('DR_INTERRUPTED', 'archive transfer interrupted');
}

function errName(err: unknown): string {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number }; message?: string };
  return e?.Code ?? e?.name ?? 'error';
}
function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

export interface HeadInfo { size: number; sha256: string | null; etag: string | null }

export class ObjectStore {
  readonly client: S3Client;
  readonly partSize: number;
  readonly concurrency: number;
  readonly endpoint: string;

  constructor(readonly bucket: string, opts: S3Options = {}) {
    const partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > 5 * 1024 ** 3) {
      throw new DrError('DR_USAGE', `part size ${partSize} must be between 5 MiB and 5 GiB (an S3 limit)`);
    }
    const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new DrError('DR_USAGE', `concurrency ${concurrency} must be 1..64`);
    this.partSize = partSize;
    this.concurrency = concurrency;
    const endpoint = opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    this.endpoint = endpoint ?? `s3.${region}.amazonaws.com`;
    const config: S3ClientConfig = {
      region,
      forcePathStyle: true,
      // this generation of Ceph RGW rejects the SDK's default streamed (trailer) checksums
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 5,
    };
    if (endpoint) config.endpoint = endpoint;
    if (opts.accessKeyId || opts.secretAccessKey) {
      if (!opts.accessKeyId || !opts.secretAccessKey) throw new DrError('DR_USAGE', 'give both the access key id and the secret access key');
      config.credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
    }
    this.client = new S3Client(config);
  }

  destroy(): void {
    this.client.destroy();
  }

  private where(key?: string): string {
    return key === undefined ? `s3://${this.bucket}` : `s3://${this.bucket}/${key}`;
  }

  /** An SDK failure as one DrError naming the object and the endpoint. */
  fail(err: unknown, what: string, key?: string): DrError {
    if (err instanceof DrError) return err;
    const name = errName(err);
    const status = httpStatus(err);
    if (name === 'NoSuchBucket') return new DrError('DR_NO_STORE', `${what} ${this.where(key)}: the bucket does not exist`);
    if (name === 'AbortError') return interrupted();
    const sys = (err as NodeJS.ErrnoException)?.code;
    const reason = sys ? `${sys} (${this.endpoint})` : `${name}${status ? ` (HTTP ${status})` : ''}: ${String((err as Error)?.message ?? err).split('\n')[0]}`;
    return new DrError('DR_PEER', `${what} ${this.where(key)} failed: ${reason}`);
  }

  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (httpStatus(err) !== 404 && errName(err) !== 'NotFound' && errName(err) !== 'NoSuchBucket') throw this.fail(err, 'checking bucket');
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (errName(err) !== 'BucketAlreadyOwnedByYou') throw this.fail(err, 'creating bucket');
    }
  }

  async head(key: string): Promise<HeadInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: r.ContentLength ?? 0, sha256: r.Metadata?.[META_SHA] ?? null, etag: r.ETag ?? null };
    } catch (err) {
      if (httpStatus(err) === 404 || errName(err) === 'NotFound' || errName(err) === 'NoSuchKey') return null;
      throw this.fail(err, 'reading metadata of', key);
    }
  }

  /** A small object in one PUT, with its SHA-256 in the metadata. */
  async putBuffer(key: string, body: Buffer, sha256?: string, signal?: AbortSignal): Promise<string> {
    const sha = sha256 ?? createHash('sha256').update(body).digest('hex');
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, Metadata: { [META_SHA]: sha } }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw this.fail(err, 'uploading', key);
    }
    return sha;
  }

  /** A whole (small) object, checked against `sha256` (or its own metadata when not given). */
  async getBuffer(key: string, sha256?: string, signal?: AbortSignal): Promise<Buffer> {
    let body: Buffer;
    let meta: string | undefined;
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      meta = r.Metadata?.[META_SHA];
      body = Buffer.from(await r.Body!.transformToByteArray());
    } catch (err) {
      throw this.fail(err, 'downloading', key);
    }
    const want = sha256 ?? meta;
    if (!want) throw new DrError('DR_BAD_CHECKSUM', `${this.where(key)} carries no drkit checksum`);
    const got = createHash('sha256').update(body).digest('hex');
    if (got !== want) throw new DrError('DR_BAD_CHECKSUM', `${this.where(key)} is corrupt: its SHA-256 is ${got}, the archive recorded ${want}`);
    return body;
  }

  /** Missing object: null instead of an error. */
  async getBufferIfExists(key: string, sha256?: string): Promise<Buffer | null> {
    try {
      return await this.getBuffer(key, sha256);
    } catch (err) {
      if (err instanceof DrError && / NoSuchKey|HTTP 404/.test(err.message)) return null;
      throw err;
    }
  }

  /**
   * Upload `src` under `key` with its checksum and sums object; skipped when the object is
   * already there with the same SHA-256. Large sources resume an interrupted multipart upload.
   * Returns the number of bytes actually sent.
   */
  async putSource(key: string, src: Source, digest: Digest, opts: { signal?: AbortSignal; onBytes?: (n: number) => void } = {}): Promise<number> {
    const have = await this.head(key);
    // already there (the sums object went up first); with an ETag, byte for byte as far as S3 can tell
    if (have && have.size === src.size && have.sha256 === digest.sha256 && (digest.etag === null || have.etag === digest.etag)) return 0;
    // the sums object goes up alongside; it is in place before the object can be complete
    const sums = this.putBuffer(`${key}.sums`, digest.sums, undefined, opts.signal);
    sums.catch(() => undefined);
    if (src.size <= this.partSize) {
      await sums;
      const body = await src.read(0, src.size);
      if (opts.signal?.aborted) throw interrupted();
      await this.putBuffer(key, body, digest.sha256, opts.signal);
      opts.onBytes?.(body.length);
      return body.length;
    }
    return this.multipart(key, src, digest, { ...opts, before: sums });
  }

  private async multipart(key: string, src: Source, digest: Digest, opts: { signal?: AbortSignal; onBytes?: (n: number) => void; before: Promise<unknown> }): Promise<number> {
    const partSize = this.partSize;
    const count = Math.ceil(src.size / partSize);
    if (count > 10000) throw new DrError('DR_USAGE', `${this.where(key)}: ${src.size} bytes need more than 10000 parts of ${partSize}: use a larger --part-size`);
    // resume: an upload in progress for this key (newest first)
    let uploadId: string | null = null;
    const done = new Map<number, string>();
    const stale: string[] = [];
    try {
      const ups = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key }));
      const mine = (ups.Uploads ?? []).filter((u) => u.Key === key && u.UploadId)
        .sort((a, b) => (b.Initiated?.getTime() ?? 0) - (a.Initiated?.getTime() ?? 0));
      for (const u of mine) {
        if (uploadId === null) {
          uploadId = u.UploadId!;
          let marker: string | undefined;
          for (;;) {
            const parts = await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }));
            for (const p of parts.Parts ?? []) {
              const n = p.PartNumber ?? 0;
              const expect = n === count ? src.size - (count - 1) * partSize : partSize;
              if (n >= 1 && n <= count && p.Size === expect && p.ETag) done.set(n, p.ETag);
            }
            if (!parts.IsTruncated) break;
            marker = parts.NextPartNumberMarker;
          }
        } else stale.push(u.UploadId!);
      }
    } catch (err) {
      throw this.fail(err, 'listing uploads of', key);
    }
    const resumed = uploadId !== null;
    if (uploadId === null) {
      try {
        const r = await this.client.send(
          new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, Metadata: { [META_SHA]: digest.sha256 } }),
          { abortSignal: opts.signal },
        );
        uploadId = r.UploadId!;
      } catch (err) {
        throw this.fail(err, 'starting upload of', key);
      }
    }
    const id = uploadId;
    const etags = new Array<string>(count + 1);
    let sent = 0;
    let next = 1;
    const worker = async (): Promise<void> => {
      for (;;) {
        if (opts.signal?.aborted) throw interrupted();
        const n = next++;
        if (n > count) return;
        const pos = (n - 1) * partSize;
        const body = await src.read(pos, Math.min(partSize, src.size - pos));
        const prior = done.get(n);
        if (prior !== undefined && prior.toLowerCase() === `"${createHash('md5').update(body).digest('hex')}"`) {
          etags[n] = prior;
          continue;
        }
        try {
          const r = await this.client.send(
            new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: id, PartNumber: n, Body: body, ContentLength: body.length }),
            { abortSignal: opts.signal },
          );
          if (!r.ETag) throw new DrError('DR_PEER', `${this.where(key)}: part ${n} was stored without an ETag`);
          etags[n] = r.ETag;
        } catch (err) {
          throw this.fail(err, `uploading part ${n}/${count} of`, key);
        }
        sent += body.length;
        opts.onBytes?.(body.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, count) }, worker));
    await opts.before;
    const parts: CompletedPart[] = [];
    for (let n = 1; n <= count; n++) parts.push({ PartNumber: n, ETag: etags[n] });
    try {
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: id, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      throw this.fail(err, 'completing upload of', key);
    }
    for (const s of stale) await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: s })).catch(() => undefined);
    if (!resumed) return sent;
    // a resumed upload carries the metadata it was started with: it must be ours
    const head = await this.head(key);
    if (!head || head.size !== src.size || head.sha256 !== digest.sha256) {
      throw new DrError('DR_PEER', `${this.where(key)}: the completed upload does not carry the expected size and checksum (${head?.size} bytes, sha256 ${head?.sha256}); run the archive again`);
    }
    return sent;
  }

  /** Stream a whole object into `file` (created/truncated), checking its SHA-256. Returns its size. */
  async download(key: string, file: string, sha256: string, opts: { signal?: AbortSignal; onBytes?: (n: number) => void } = {}): Promise<number> {
    let body: Readable;
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: opts.signal });
      body = r.Body as Readable;
    } catch (err) {
      throw this.fail(err, 'downloading', key);
    }
    const hash = createHash('sha256');
    let size = 0;
    const out = fs.createWriteStream(file);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
        if (!out.write(chunk)) await once(out, 'drain');
        opts.onBytes?.(chunk.length);
      }
      out.end();
      await once(out, 'finish');
    } catch (err) {
      out.destroy();
      if (err instanceof DrError) throw err;
      if ((err as NodeJS.ErrnoException).code && (err as NodeJS.ErrnoException).syscall) throw fromSystemError(err, `cannot write ${file}`);
      throw this.fail(err, 'downloading', key);
    }
    const got = hash.digest('hex');
    if (got !== sha256) throw new DrError('DR_BAD_CHECKSUM', `${this.where(key)} is corrupt: its SHA-256 is ${got}, the archive recorded ${sha256}`);
    return size;
  }

  private sumsCache = new Map<string, Sums>();

  /** The checksum list of an object, checked against the SHA-256 the archive recorded for it. */
  async sums(key: string, sumsSha?: string): Promise<Sums> {
    const cached = this.sumsCache.get(key);
    if (cached) return cached;
    const s = decodeSums(await this.getBuffer(`${key}.sums`, sumsSha), this.where(`${key}.sums`));
    this.sumsCache.set(key, s);
    return s;
  }

  /**
   * Bytes [offset, offset+length) of an object, read with one ranged GET widened to whole
   * checksum chunks (readChunks()), every chunk checked against the object's sums.
   */
  async readRange(key: string, offset: number, length: number, sumsSha?: string, signal?: AbortSignal): Promise<Buffer> {
    const s = await this.sums(key, sumsSha);
    if (offset < 0 || length < 0 || offset + length > s.size) {
      throw new DrError('DR_OUT_OF_RANGE', `read ${offset}+${length} is past the end of ${this.where(key)} (${s.size} bytes)`);
    }
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    await this.readChunks(key, Math.floor(offset / s.chunk), Math.floor((offset + length - 1) / s.chunk), sumsSha, (c, bytes) => {
      const first = c * s.chunk;
      const from = Math.max(offset, first);
      const to = Math.min(offset + length, first + bytes.length);
      bytes.copy(out, from - offset, from - first, to - first);
    }, signal);
    return out;
  }

  private checkChunk(key: string, s: Sums, c: number, crc: number): void {
    if (crc !== s.hashes.readUInt32LE(c * 4)) {
      const first = c * s.chunk;
      const last = Math.min(s.size, first + s.chunk) - 1;
      throw new DrError('DR_BAD_CHECKSUM', `${this.where(key)} is corrupt: chunk ${c} (bytes ${first}..${last}) does not match its checksum`);
    }
  }

  /**
   * Checksum chunks c0..c1 of an object in one ranged GET, streamed: the bytes are gathered
   * into a chunk buffer as they arrive, each chunk is checked against the object's sums once
   * its last byte is in, then handed to `onChunk(chunk, bytes)`; a write it returns is awaited
   * before that buffer is filled again. Two chunk buffers take turns, so one chunk is written
   * while the next arrives, and the socket's buffers die young (far less garbage collection
   * than holding them until the chunk is complete). Memory: two chunks.
   */
  async readChunks(
    key: string, c0: number, c1: number, sumsSha: string | undefined,
    onChunk: (chunk: number, bytes: Buffer) => Promise<void> | void, signal?: AbortSignal,
  ): Promise<void> {
    const s = await this.sums(key, sumsSha);
    const start = c0 * s.chunk;
    const end = Math.min(s.size, (c1 + 1) * s.chunk);
    if (c0 < 0 || c1 < c0 || start >= end) throw new DrError('DR_OUT_OF_RANGE', `chunks ${c0}..${c1} are past the end of ${this.where(key)} (${s.size} bytes)`);
    const bufs = [Buffer.allocUnsafeSlow(Math.min(s.chunk, end - start)), Buffer.allocUnsafeSlow(Math.min(s.chunk, end - start))];
    const writes: Array<Promise<void> | void> = [undefined, undefined];
    let turn = 0;
    let c = c0;
    let within = 0;
    let pos = start;
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end - 1}` }), { abortSignal: signal });
      for await (const data of r.Body as AsyncIterable<Buffer>) {
        let q = 0;
        while (q < data.length) {
          if (pos >= end) throw new DrError('DR_BAD_CHECKSUM', `${this.where(key)} is corrupt: more than the ${end - start} bytes asked for at ${start}`);
          if (within === 0) await writes[turn]; // this buffer's last chunk is written
          const chunkLen = Math.min(s.chunk, s.size - c * s.chunk);
          const n = Math.min(data.length - q, chunkLen - within);
          data.copy(bufs[turn]!, within, q, q + n);
          within += n;
          pos += n;
          q += n;
          if (within === chunkLen) {
            this.checkChunk(key, s, c, crc32(bufs[turn]!.subarray(0, chunkLen)));
            const w = onChunk(c, bufs[turn]!.subarray(0, chunkLen));
            w?.catch(() => undefined); // its failure is taken when it is awaited, not as an unhandled rejection
            writes[turn] = w;
            turn ^= 1;
            c++;
            within = 0;
          }
        }
      }
      await Promise.all(writes);
    } catch (err) {
      await Promise.allSettled(writes); // never leave a write behind
      throw this.fail(err, 'reading', key);
    }
    if (pos !== end) throw new DrError('DR_BAD_CHECKSUM', `${this.where(key)} is corrupt: ${pos - start} bytes at ${start}, expected ${end - start}`);
  }

  /** Keys (and, with a delimiter, common prefixes) under `prefix`. */
  async list(prefix: string, delimiter?: string): Promise<{ keys: Array<{ key: string; size: number }>; prefixes: string[] }> {
    const keys: Array<{ key: string; size: number }> = [];
    const prefixes: string[] = [];
    let token: string | undefined;
    try {
      for (;;) {
        const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: delimiter, ContinuationToken: token }));
        for (const o of r.Contents ?? []) if (o.Key) keys.push({ key: o.Key, size: o.Size ?? 0 });
        for (const p of r.CommonPrefixes ?? []) if (p.Prefix) prefixes.push(p.Prefix);
        if (!r.IsTruncated) break;
        token = r.NextContinuationToken;
      }
    } catch (err) {
      throw this.fail(err, 'listing');
    }
    return { keys, prefixes };
  }

  /** Delete objects one by one (DeleteObjects needs a Content-MD5 that not every gateway takes). */
  async deleteKeys(keys: string[]): Promise<void> {
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < keys.length) {
        const Key = keys[i++]!;
        try {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
        } catch (err) {
          throw this.fail(err, 'deleting', Key);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, keys.length) }, worker));
  }
}
