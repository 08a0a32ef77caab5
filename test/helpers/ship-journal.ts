/**
 * Journal stores for the dr-ship tests, built through the store API (the same
 * appender dr-journal uses): mixed data (random and zero-filled writes, a flush
 * and a mark now and then), record times chosen by the test.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { JournalStore } from '../../src/store/index.js';
import { StreamWriter } from '../../src/format/codec.js';
import { encodeRecord, newId } from '../../src/format/layout.js';

export const VOLUME_SIZE = 16 * 1024 * 1024;

export interface JournalSpec {
  /** number of WRITE records (a FLUSH follows every 16th) */
  writes: number;
  /** bytes per write */
  writeSize: number;
  /** 16-byte group id; random by default */
  groupId?: Buffer;
  /** time of the first record, microseconds (default: now) */
  startMicros?: number;
  /** odd writes are zeros, even writes random (default true) */
  mixed?: boolean;
  /** segment file size when the store is created (default: the store's) */
  segmentSize?: number;
  /** sizes of extra writes appended after the others (e.g. one larger than a read slice) */
  bigWrites?: number[];
}

/** Create (or extend) a store in `dir` with the given records. Returns its group id and last seq. */
export async function makeJournal(dir: string, spec: JournalSpec): Promise<{ groupId: Buffer; lastSeq: number; bytes: number }> {
  const store = await JournalStore.open(dir, { create: true, ...(spec.segmentSize ? { segmentSize: spec.segmentSize } : {}) });
  const groupId = store.groupId ?? spec.groupId ?? newId();
  const appender = await store.appender();
  const w = new StreamWriter({ groupId, firstSeq: appender.nextSeq });
  const volumes = store.volumes.length
    ? store.volumes
    : [{ type: 'volume' as const, seq: 0 as const, time: 0, index: 0, blockSize: 4096, size: VOLUME_SIZE, id: Buffer.alloc(16, 0x5a), name: 'disk0' }];
  appender.begin(w.header, volumes);
  let t = spec.startMicros ?? Date.now() * 1000;
  let bytes = 0;
  for (let i = 0; i < spec.writes; i++) {
    const data = Buffer.alloc(spec.writeSize);
    if (spec.mixed === false || i % 2 === 0) randomFillSync(data);
    const offset = (i * spec.writeSize) % (VOLUME_SIZE - spec.writeSize);
    const { record, parts } = w.record({ type: 'write', volume: 0, offset: offset - (offset % 4096), data, time: t++ });
    appender.append(record, parts);
    bytes += spec.writeSize;
    if (i % 16 === 15) {
      const f = w.record({ type: 'flush', time: t++ });
      appender.append(f.record, f.parts);
    }
  }
  for (const size of spec.bigWrites ?? []) {
    const data = randomFillSync(Buffer.alloc(size));
    const { record, parts } = w.record({ type: 'write', volume: 0, offset: 0, data, time: t++ });
    appender.append(record, parts);
    bytes += size;
  }
  await appender.sync();
  const lastSeq = appender.nextSeq - 1;
  await appender.close();
  await store.close();
  return { groupId, lastSeq, bytes };
}

/** Every record of a store, hashed in order: equal digests = the same records, byte for byte. */
export async function digestJournal(dir: string, untilSeq?: number): Promise<{ lastSeq: number; records: number; digest: string; groupId: string | null }> {
  const store = await JournalStore.open(dir, { readOnly: true });
  const h = createHash('sha256');
  let records = 0;
  try {
    for await (const r of store.records({ fromSeq: store.firstSeq, untilSeq: untilSeq ?? store.lastSeq })) {
      for (const p of encodeRecord(r)) h.update(p);
      records++;
    }
    return { lastSeq: store.lastSeq, records, digest: h.digest('hex'), groupId: store.groupId ? store.groupId.toString('hex') : null };
  } finally {
    await store.close();
  }
}

/** `dr-journal cat DIR` (the real command): the stream's bytes. */
export function journalCat(dir: string): Buffer {
  const bin = new URL('../../bin/dr-journal', import.meta.url).pathname;
  return execFileSync(bin, ['cat', dir], { maxBuffer: 1 << 30 });
}

/**
 * The records of a `dr-journal cat` stream without what differs between two
 * catted copies of equal stores: the header's creation time (and the header CRC),
 * and the END trailer whose digest covers that header.
 */
export function catRecords(stream: Buffer): Buffer {
  const HEADER = 64;
  const END = 32 + 48;
  return Buffer.concat([stream.subarray(0, 44), stream.subarray(HEADER, stream.length - END)]);
}

/** SHA-256 of volume 0 as of the store's last seq (the point-in-time reader, i.e. what a restore gives). */
export async function volumeDigest(dir: string): Promise<string> {
  const store = await JournalStore.open(dir, { readOnly: true });
  const pit = await store.pointInTime(store.lastSeq);
  const h = createHash('sha256');
  try {
    const size = pit.volumes[0]!.size;
    for (let off = 0; off < size; off += 1 << 20) h.update(await pit.read(0, off, Math.min(1 << 20, size - off)));
    return h.digest('hex');
  } finally {
    await pit.release();
    await store.close();
  }
}
