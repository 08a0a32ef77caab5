/**
 * Reading records back: records() yields decoded records, catStream() produces the
 * bytes of a valid stream (header, VOLUME records, the records copied verbatim from
 * the segments, END). Both start through the sparse index (no scan from the start
 * of the journal) and, with follow, keep reading as the appender adds records,
 * delivering only what it has made durable.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { DrError } from '../errors.js';
import {
  RecordType, decodePayload, encodeHeader, encodeRecord, type SequencedRecord, type VolumeRecord,
} from '../format/layout.js';
import { nowMicros } from '../format/codec.js';
import { ioError, sleep, exists } from './files.js';
import { LockFile } from './lock.js';
import { RecordWalker, segmentPaths, type RawRecord } from './segment.js';
import { ReadBuffers } from './read-buffers.js';
import { APPEND_LOCK, readDurable } from './state.js';
import type { JournalStore } from './store.js';

export interface RecordsOptions {
  fromSeq?: number;
  untilSeq?: number;
  follow?: boolean;
  signal?: AbortSignal;
  /** how often a follower looks for new records (ms) */
  pollMs?: number;
  /** read segments into these reused buffers (waiting while all are in use) */
  buffers?: ReadBuffers;
}
export interface CatOptions extends RecordsOptions {
  /** start at the first record with time >= sinceTime (microseconds) */
  sinceTime?: number;
}

interface Located { raw: RawRecord; volumes: VolumeRecord[] }

/** Where reading starts: checks the window. */
export function startSeq(store: JournalStore, opts: CatOptions): number {
  let start = opts.fromSeq ?? store.firstSeq;
  if (opts.sinceTime !== undefined) {
    const before = store.seqAtTime(opts.sinceTime - 1);
    start = Math.max(start, before ? before.seq + 1 : store.firstSeq);
  }
  if (!Number.isSafeInteger(start) || start < 1) throw new DrError('DR_USAGE', `bad start seq ${start}`);
  if (start < store.firstSeq) {
    throw new DrError('DR_OUTSIDE_WINDOW', `seq ${start} was folded into the base images by prune: ${store.describeWindow()}`);
  }
  return start;
}

/** The highest seq a reader may deliver now. */
function durableLimit(store: JournalStore): number {
  if (store.activeAppender) return store.activeAppender.durableSeq;
  const owner = LockFile.liveOwner(path.join(store.dir, APPEND_LOCK));
  if (owner === null) return Infinity;
  const d = readDurable(store.dir);
  return d && d.pid === owner ? d.seq : store.lastSeq;
}

/** Raw records from `start` on, in order, crossing segments; follows the appender when asked. */
async function* rawRecords(store: JournalStore, start: number, opts: RecordsOptions): AsyncGenerator<Located | null> {
  // null: nothing more for now, the reader is about to wait
  const follow = Boolean(opts.follow);
  const pollMs = opts.pollMs ?? 100;
  let until = opts.untilSeq ?? Infinity;
  if (!follow) until = Math.min(until, store.lastSeq);
  if (start > until) return;
  let limit = follow ? durableLimit(store) : until;
  let seq = start;
  let fd: number | null = null;
  let file = '';
  let walker: RecordWalker | null = null;
  let volumes: VolumeRecord[] = [];
  const signal = opts.signal;
  const openAt = (data: string, offset: number | null): boolean => {
    try {
      fd = fs.openSync(data, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw ioError(err, `cannot open segment ${data}`);
    }
    file = data;
    walker = new RecordWalker(fd, data, 0, Infinity, opts.buffers?.size ?? 1 << 20, opts.buffers);
    const head = walker.header();
    if (!head) throw new DrError('DR_STORE_CORRUPT', `segment ${data} has no stream header`);
    volumes = [];
    for (;;) {
      const at = walker.pos;
      const r = walker.next();
      if (!r) break;
      if (r.h.code !== RecordType.VOLUME) {
        walker.pos = at;
        break;
      }
      volumes.push(decodePayload(r.h, r.payload, volumes) as VolumeRecord);
    }
    if (offset !== null) walker.pos = offset;
    return true;
  };
  const closeFd = (): void => {
    if (fd !== null) fs.closeSync(fd);
    (walker as RecordWalker | null)?.dispose();
    fd = null;
    walker = null;
  };
  try {
    // position through the index
    const first = store.segmentFor(seq);
    if (first) {
      const at = store.locate(seq);
      openAt(at.segment.data, at.offset);
    } else if (!follow) {
      return;
    }
    for (;;) {
      if (seq > until || signal?.aborted) return;
      if (walker === null) {
        // the segment starting at `seq` may not exist yet
        const next = segmentPaths(store.dir, seq).data;
        if (!exists(next) || !openAt(next, null)) {
          if (!follow) return;
          yield null;
          await sleep(pollMs, signal);
          continue;
        }
      }
      const w = walker as RecordWalker | null;
      if (!w) continue;
      // reused buffers: the next read may need one back from the consumer first
      if (opts.buffers?.exhausted) await opts.buffers.whenFree();
      const at = w.pos;
      const r = w.next();
      if (!r) {
        if (!follow) return;
        yield null;
        await sleep(pollMs, signal);
        continue;
      }
      if (r.h.code === RecordType.END) {
        closeFd();
        continue;
      }
      if (r.h.code === RecordType.VOLUME) throw new DrError('DR_STORE_CORRUPT', `VOLUME record after sequenced records in ${file}`);
      if (r.h.seq < seq) continue;
      if (r.h.seq !== seq) throw new DrError('DR_STORE_CORRUPT', `segment ${file}: seq ${r.h.seq} where ${seq} was expected`, { offset: r.offset });
      if (seq > limit) {
        limit = durableLimit(store);
        if (seq > limit) {
          w.pos = at;
          yield null;
          await sleep(pollMs, signal);
          continue;
        }
      }
      yield { raw: r, volumes };
      seq++;
    }
  } finally {
    closeFd();
  }
}

export async function* readRecords(store: JournalStore, opts: RecordsOptions): AsyncGenerator<SequencedRecord> {
  const start = startSeq(store, opts);
  for await (const item of rawRecords(store, start, opts)) {
    if (!item) continue;
    const { raw, volumes } = item;
    yield decodePayload(raw.h, raw.payload, volumes) as SequencedRecord;
  }
}

/** The bytes of a valid stream of the stored records. */
export function catStream(store: JournalStore, opts: CatOptions = {}): Readable {
  return Readable.from(catBytes(store, opts), { objectMode: false, highWaterMark: 1 << 20 });
}

async function* catBytes(store: JournalStore, opts: CatOptions): AsyncGenerator<Buffer> {
  for await (const c of catChunks(store, opts)) yield c.bytes;
}

export interface CatChunk {
  bytes: Buffer;
  /** the bytes were written out: with `reuse`, their memory is read into again */
  release(): void;
}

const noRelease = (): void => undefined;
/** cat's reused segment read buffers: memory bounded by these, not by the journal */
const CAT_BUFFER = 1 << 20;
const CAT_BUFFERS = 8;

/**
 * catStream()'s bytes as chunks. With `reuse`, segments are read into a few reused
 * buffers (ReadBuffers): every chunk must then be released once it was written out
 * (reading waits while all buffers are held).
 */
export async function* catChunks(store: JournalStore, opts: CatOptions & { reuse?: boolean }): AsyncGenerator<CatChunk> {
  if (!store.groupId) throw new DrError('DR_NO_STORE', `journal store ${store.dir} holds no volume group yet`);
  const start = startSeq(store, opts);
  const buffers = opts.reuse ? new ReadBuffers(CAT_BUFFER, CAT_BUFFERS) : undefined;
  const digest = createHash('sha256');
  let recordCount = 0;
  let byteCount = 0;
  let lastTime = 0;
  const header = encodeHeader({ groupId: store.groupId, firstSeq: start, created: nowMicros(), compatFeatures: 0 });
  digest.update(header);
  byteCount += header.length;
  const head: Buffer[] = [header];
  for (const v of store.volumes) {
    const parts = encodeRecord(v);
    digest.update(parts[0]!);
    recordCount++;
    for (const p of parts) {
      head.push(p);
      byteCount += p.length;
    }
  }
  yield { bytes: Buffer.concat(head), release: noRelease };
  // batch records that sit next to each other in the same read buffer; a batch holds its buffer until released
  let batchBuf: Buffer | null = null;
  let batchStart = 0;
  let batchEnd = 0;
  const batch = (): CatChunk => {
    const buf = batchBuf!;
    return { bytes: buf.subarray(batchStart, batchEnd), release: buffers ? () => buffers.unref(buf) : noRelease };
  };
  const sinceTime = opts.sinceTime ?? 0;
  for await (const item of rawRecords(store, start, { ...opts, buffers })) {
    if (!item) {
      if (batchBuf) yield batch();
      batchBuf = null;
      continue;
    }
    const { raw, volumes } = item;
    if (volumes.length > store.volumes.length) {
      throw new DrError('DR_VOLUME_MISMATCH', `a volume was added to ${store.dir} while following: run cat again from seq ${raw.h.seq}`);
    }
    if (raw.h.time < sinceTime) continue;
    const len = 32 + raw.h.payloadLength;
    digest.update(raw.hb);
    recordCount++;
    byteCount += len;
    lastTime = raw.h.time;
    if (batchBuf === raw.buf && batchEnd === raw.at && batchEnd - batchStart < (1 << 20)) {
      batchEnd += len;
    } else {
      if (batchBuf) yield batch();
      batchBuf = raw.buf;
      buffers?.ref(batchBuf);
      batchStart = raw.at;
      batchEnd = raw.at + len;
    }
  }
  if (batchBuf) yield batch();
  const end = encodeRecord({ type: 'end', seq: 0, time: Math.max(nowMicros(), lastTime), recordCount, byteCount, digest: digest.digest() });
  yield { bytes: Buffer.concat(end), release: noRelease };
}
