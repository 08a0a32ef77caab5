/**
 * Seeded random workloads for apply and restore tests: a valid journal stream of
 * several volumes, and the reference bytes of every volume at every mark and at
 * the end, computed independently of the code under test (by plain Buffer copies).
 *
 * API
 *   const w = makeWorkload({ seed: 42 });          // every option has a default
 *   w.stream          Buffer: header, VOLUME records, the records, END
 *   w.records         SequencedRecord[] in stream order (seq = firstSeq + index)
 *   w.volumes         [{ name, size, blockSize, id }] in index order
 *   w.groupId, w.firstSeq, w.lastSeq
 *   w.marks           [{ name, kind, seq, time, images: Buffer[] }]: images[v] is volume
 *                     v right after the MARK record (same order as w.volumes)
 *   w.final           Buffer[]: every volume after the last record
 *   w.imagesAt(seq)   Buffer[]: every volume after record `seq` (firstSeq-1 = all zero)
 *   w.recordStart[i]  byte offset of w.records[i] in w.stream; w.endOffset = offset of END
 *   w.streamFrom(seq, { end }) Buffer: a stream of the same group and volumes holding
 *                     records seq.. (header.firstSeq = seq); end=false leaves out END
 *   w.streamRange(from, to, { end }) Buffer: the same for records from..to
 *   w.truncated(n)    the first n bytes of w.stream (a stream without its END)
 *   rng(seed)         the generator itself: () => uint32
 *
 * Options (WorkloadOptions): seed; volumes [{ name, size, blockSize? }] (default
 * db 3 MiB/512 and logs 2 MiB/4096); records (sequenced records, default 600);
 * markEvery (a MARK about every N records, default 60); maxWrite (default 64 KiB);
 * signatures (SIGNATURE records with correct digests, default false); firstSeq
 * (default 1); startTime (microseconds, default fixed); largeZeroes (add ZERO
 * ranges of >= 4 MiB when a volume is that big, default true).
 *
 * Writes are unaligned or block aligned, overlap each other, and some end exactly
 * at a volume's end; ZERO ranges (some with the discard flag) cut through earlier
 * writes; FLUSH, HEARTBEAT and an unknown ignorable record type appear in between.
 * Times never go backwards and sometimes repeat.
 */
import { createHash } from 'node:crypto';
import { StreamWriter, type RecordInput } from '../../src/format/codec.js';
import type { MarkKind, SequencedRecord } from '../../src/format/layout.js';
import { mulberry32 } from './random.js';

export interface WorkloadVolume { name: string; size: number; blockSize: number; id: Buffer }

export interface WorkloadOptions {
  seed: number;
  volumes?: Array<{ name: string; size: number; blockSize?: number }>;
  records?: number;
  markEvery?: number;
  maxWrite?: number;
  signatures?: boolean;
  firstSeq?: number;
  startTime?: number;
  largeZeroes?: boolean;
}

export interface WorkloadMark { name: string; kind: MarkKind; seq: number; time: number; images: Buffer[] }

export interface Workload {
  seed: number;
  groupId: Buffer;
  firstSeq: number;
  lastSeq: number;
  volumes: WorkloadVolume[];
  records: SequencedRecord[];
  stream: Buffer;
  recordStart: number[];
  endOffset: number;
  marks: WorkloadMark[];
  final: Buffer[];
  imagesAt(seq: number): Buffer[];
  streamFrom(seq: number, opts?: { end?: boolean }): Buffer;
  streamRange(from: number, to: number, opts?: { end?: boolean }): Buffer;
  truncated(bytes: number): Buffer;
}

/** mulberry32: () => uint32. */
export const rng = mulberry32;

const DEFAULT_T0 = 1_795_000_000_000_000;
const UNKNOWN_IGNORABLE = 0x8000 | 0x0123;

function idFrom(next: () => number): Buffer {
  const b = Buffer.alloc(16);
  for (let i = 0; i < 16; i += 4) b.writeUInt32LE(next(), i);
  return b;
}

function fillRandom(next: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) b.writeUInt32LE(next(), i);
  for (; i < n; i++) b[i] = next() & 0xff;
  return b;
}

export function makeWorkload(opts: WorkloadOptions): Workload {
  const next = rng(opts.seed);
  const int = (n: number) => next() % n; // 0..n-1 (n < 2^32)
  const chance = (p: number) => next() / 2 ** 32 < p;
  const volSpecs = opts.volumes ?? [{ name: 'db', size: 3 << 20, blockSize: 512 }, { name: 'logs', size: 2 << 20, blockSize: 4096 }];
  const volumes: WorkloadVolume[] = volSpecs.map((v) => ({ name: v.name, size: v.size, blockSize: v.blockSize ?? 4096, id: idFrom(next) }));
  const groupId = idFrom(next);
  const firstSeq = opts.firstSeq ?? 1;
  const count = opts.records ?? 600;
  const markEvery = opts.markEvery ?? 60;
  const maxWrite = opts.maxWrite ?? 64 * 1024;
  const largeZeroes = opts.largeZeroes ?? true;
  const t0 = opts.startTime ?? DEFAULT_T0;

  const images = volumes.map((v) => Buffer.alloc(v.size));
  const inputs: RecordInput[] = [];
  const marks: WorkloadMark[] = [];
  let time = t0;
  let markNo = 0;

  const pickRange = (v: WorkloadVolume, max: number): { offset: number; length: number } => {
    const aligned = chance(0.4);
    let length = chance(0.3) ? 1 + int(Math.min(max, 600)) : 1 + int(max);
    if (aligned) length = Math.max(v.blockSize, Math.floor(length / v.blockSize) * v.blockSize);
    length = Math.min(length, v.size);
    let offset: number;
    if (chance(0.05)) offset = v.size - length; // ends exactly at the volume's end
    else {
      offset = int(v.size - length + 1);
      if (aligned) offset = Math.floor(offset / v.blockSize) * v.blockSize;
    }
    return { offset, length };
  };

  for (let i = 0; i < count; i++) {
    time += chance(0.1) ? 0 : 1 + int(2000);
    const vi = int(volumes.length);
    const v = volumes[vi]!;
    const img = images[vi]!;
    const isLast = i === count - 1;
    if ((i + 1) % markEvery === 0 || isLast) {
      const kinds: MarkKind[] = ['crash', 'app', 'user'];
      const kind = kinds[markNo % 3]!;
      const name = isLast ? 'final' : `m${++markNo}`;
      inputs.push({ type: 'mark', kind, name, id: idFrom(next), time });
      marks.push({ name, kind, seq: firstSeq + inputs.length - 1, time, images: images.map((b) => Buffer.from(b)) });
      continue;
    }
    const roll = int(100);
    if (roll < 62) {
      const { offset, length } = pickRange(v, maxWrite);
      const data = fillRandom(next, length);
      data.copy(img, offset);
      inputs.push({ type: 'write', volume: vi, offset, data, fua: chance(0.05), time });
    } else if (roll < 74) {
      let r = pickRange(v, 256 * 1024);
      if (largeZeroes && v.size >= (8 << 20) && chance(0.3)) {
        const length = (4 << 20) + int(v.size - (4 << 20) - 4096);
        r = { offset: int(v.size - length + 1), length };
      }
      img.fill(0, r.offset, r.offset + r.length);
      inputs.push({ type: 'zero', volume: vi, offset: r.offset, length: r.length, discard: chance(0.5), time });
    } else if (roll < 84) {
      inputs.push({ type: 'flush', time });
    } else if (roll < 88) {
      inputs.push({ type: 'heartbeat', time });
    } else if (roll < 89) {
      inputs.push({ type: 'unknown', code: UNKNOWN_IGNORABLE, flags: 0, payload: fillRandom(next, int(40)), time });
    } else if (opts.signatures && roll < 96) {
      const { offset, length } = pickRange(v, 512 * 1024);
      const digest = createHash('sha256').update(img.subarray(offset, offset + length)).digest();
      inputs.push({ type: 'signature', volume: vi, offset, length, algorithm: 'sha256', digest, time });
    } else {
      const { offset, length } = pickRange(v, maxWrite);
      const data = fillRandom(next, length);
      data.copy(img, offset);
      inputs.push({ type: 'write', volume: vi, offset, data, time });
    }
  }

  const encode = (fromIndex: number, withEnd: boolean, toIndex = inputs.length - 1) => {
    const w = new StreamWriter({ groupId, firstSeq: firstSeq + fromIndex, created: t0 });
    const parts: Buffer[] = [w.start()];
    for (const v of volumes) parts.push(...w.volume({ name: v.name, size: v.size, blockSize: v.blockSize, id: v.id, time: t0 }));
    const starts: number[] = [];
    const records: SequencedRecord[] = [];
    let off = parts.reduce((n, p) => n + p.length, 0);
    for (let i = fromIndex; i <= toIndex; i++) {
      const { record, parts: ps } = w.record(inputs[i]!);
      starts.push(off);
      for (const p of ps) off += p.length;
      parts.push(...ps);
      records.push(record);
    }
    const endOffset = off;
    if (withEnd) parts.push(...w.end(time));
    return { stream: Buffer.concat(parts), starts, records, endOffset };
  };
  const full = encode(0, true);
  const final = images;

  const imagesAt = (seq: number): Buffer[] => {
    const out = volumes.map((v) => Buffer.alloc(v.size));
    for (const r of full.records) {
      if (r.seq > seq) break;
      if (r.type === 'write') r.data.copy(out[r.volume]!, r.offset);
      else if (r.type === 'zero') out[r.volume]!.fill(0, r.offset, r.offset + r.length);
    }
    return out;
  };

  return {
    seed: opts.seed,
    groupId,
    firstSeq,
    lastSeq: firstSeq + inputs.length - 1,
    volumes,
    records: full.records,
    stream: full.stream,
    recordStart: full.starts,
    endOffset: full.endOffset,
    marks,
    final,
    imagesAt,
    streamFrom: (seq, o = {}) => encode(seq - firstSeq, o.end ?? true).stream,
    streamRange: (from, to, o = {}) => encode(from - firstSeq, o.end ?? true, to - firstSeq).stream,
    truncated: (bytes) => full.stream.subarray(0, bytes),
  };
}
