/**
 * Seeded journal streams for the store tests, and an independent reference: the
 * volumes' bytes at a seq, computed by replaying the records into plain buffers.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { StreamParser, StreamWriter, type RecordInput } from '../../src/format/codec.js';
import type { SequencedRecord, StreamHeader, VolumeRecord } from '../../src/format/layout.js';
import { mulberry32Float } from './random.js';

export const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
export const BIN = path.join(ROOT, 'bin', 'dr-journal');

/** mulberry32 as floats in [0, 1). */
export const rng = mulberry32Float;

export interface GenVolume { name: string; size: number; blockSize?: number }
export interface GenOptions {
  seed: number;
  records: number;
  volumes?: GenVolume[];
  firstSeq?: number;
  groupId?: Buffer;
  volumeIds?: Buffer[];
  /** a FLUSH every this many records (0: none) */
  flushEvery?: number;
  /** MARK records: name at the given record index */
  marks?: Array<{ at: number; name: string }>;
  /** include unaligned writes and zero ranges */
  unaligned?: boolean;
  /** microseconds of the first record; +step each record */
  startTime?: number;
  timeStep?: number;
  /** write the END trailer */
  end?: boolean;
  /** max write size in blocks */
  maxBlocks?: number;
}

export interface GenStream {
  header: StreamHeader;
  volumes: VolumeRecord[];
  records: SequencedRecord[];
  /** byte ranges of each record in `bytes` (seq -> [start, end)) */
  ranges: Map<number, [number, number]>;
  bytes: Buffer;
  writer: StreamWriter;
}

export function idFor(seed: number, salt: number): Buffer {
  const r = rng(seed * 7919 + salt);
  return Buffer.from(Array.from({ length: 16 }, () => Math.floor(r() * 256)));
}

export function genStream(o: GenOptions): GenStream {
  const r = rng(o.seed);
  const vols = o.volumes ?? [{ name: 'disk0', size: 1 << 20, blockSize: 4096 }];
  const groupId = o.groupId ?? idFor(o.seed, 1);
  const t0 = o.startTime ?? 1_795_000_000_000_000;
  const step = o.timeStep ?? 1000;
  const w = new StreamWriter({ groupId, firstSeq: o.firstSeq ?? 1, created: t0 - 1 });
  const parts: Buffer[] = [w.start()];
  const volumes: VolumeRecord[] = [];
  vols.forEach((v, i) => {
    const id = o.volumeIds?.[i] ?? idFor(o.seed, 100 + i);
    parts.push(...w.volume({ name: v.name, size: v.size, blockSize: v.blockSize ?? 4096, id }));
    volumes.push({ type: 'volume', seq: 0, time: t0 - 1, index: i, name: v.name, size: v.size, blockSize: v.blockSize ?? 4096, id });
  });
  const records: SequencedRecord[] = [];
  const ranges = new Map<number, [number, number]>();
  let pos = parts.reduce((n, p) => n + p.length, 0);
  const markAt = new Map((o.marks ?? []).map((m) => [m.at, m.name]));
  for (let i = 0; i < o.records; i++) {
    const time = t0 + i * step;
    let input: RecordInput;
    const mark = markAt.get(i);
    if (mark !== undefined) {
      input = { type: 'mark', kind: 'app', name: mark, id: idFor(o.seed, 1000 + i), time };
    } else if (o.flushEvery && i % o.flushEvery === o.flushEvery - 1) {
      input = { type: 'flush', time };
    } else {
      const vi = Math.floor(r() * vols.length);
      const v = volumes[vi]!;
      const bs = v.blockSize;
      const blocks = Math.max(1, Math.floor(r() * (o.maxBlocks ?? 4)) + 1);
      const roll = r();
      if (o.unaligned && roll < 0.15) {
        const off = Math.floor(r() * (v.size - 1));
        const len = Math.max(1, Math.min(v.size - off, Math.floor(r() * bs * 2) + 1));
        input = roll < 0.07
          ? { type: 'zero', volume: vi, offset: off, length: len, time }
          : { type: 'write', volume: vi, offset: off, data: fill(r, len), time };
      } else if (roll < 0.1) {
        const nb = Math.floor(v.size / bs);
        const b0 = Math.floor(r() * nb);
        const len = Math.min(nb - b0, blocks * 4) * bs;
        input = { type: 'zero', volume: vi, offset: b0 * bs, length: len, time };
      } else {
        const nb = Math.floor(v.size / bs);
        const b0 = Math.floor(r() * (nb - blocks + 1));
        input = { type: 'write', volume: vi, offset: b0 * bs, data: fill(r, blocks * bs), time };
      }
    }
    const { record, parts: rp } = w.record(input);
    records.push(record);
    const len = rp.reduce((n, p) => n + p.length, 0);
    ranges.set(record.seq, [pos, pos + len]);
    pos += len;
    parts.push(...rp);
  }
  if (o.end !== false) parts.push(...w.end(t0 + o.records * step));
  return { header: w.header, volumes, records, ranges, bytes: Buffer.concat(parts), writer: w };
}

function fill(r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  const word = Math.floor(r() * 0xffffffff) >>> 0;
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE((word ^ Math.imul(i, 2654435761)) >>> 0, i);
  for (let i = n - (n % 4); i < n; i++) b[i] = (word + i) & 0xff;
  return b;
}

/** The volumes' bytes after every record up to and including `seq`, replayed from scratch. */
export function reference(volumes: VolumeRecord[], records: SequencedRecord[], seq: number): Buffer[] {
  const out = volumes.map((v) => Buffer.alloc(v.size));
  for (const rec of records) {
    if (rec.seq > seq) break;
    if (rec.type === 'write') rec.data.copy(out[rec.volume]!, rec.offset);
    else if (rec.type === 'zero') out[rec.volume]!.fill(0, rec.offset, rec.offset + rec.length);
  }
  return out;
}

export function tmpdir(prefix = 'drj-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Run bin/dr-journal with stdin bytes; returns status, stdout (Buffer) and stderr. */
/** The environment for spawned commands: without the test runner's TypeScript loader (NODE_OPTIONS). */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

export function journal(args: string[], input?: Buffer, opts: { timeout?: number } = {}): SpawnSyncReturns<Buffer> & { err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, maxBuffer: 1 << 30, timeout: opts.timeout ?? 60_000, env: childEnv() });
  return Object.assign(r, { err: r.stderr.toString() });
}

export function journalAsync(args: string[]) {
  return spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv() });
}

/** Every file under `dir` with its size and SHA-256: to check that a refused command changed nothing. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** Decode a whole stream (must be complete). */
export function decode(bytes: Buffer): { header: StreamHeader; volumes: VolumeRecord[]; records: SequencedRecord[] } {
  const p = new StreamParser();
  const items = p.push(bytes);
  p.finish();
  return {
    header: items[0] as StreamHeader,
    volumes: items.filter((i): i is VolumeRecord => i.type === 'volume'),
    records: items.filter((i): i is SequencedRecord => i.type !== 'header' && i.type !== 'volume' && i.type !== 'end'),
  };
}

/** Comparable form of a record: sorted keys, Buffers as hex, absent flags as false. */
export function plain(r: SequencedRecord): string {
  const o: Record<string, unknown> = { ...r };
  if (r.type === 'write') o.fua = Boolean(r.fua);
  if (r.type === 'zero') o.discard = Boolean(r.discard);
  const keys = Object.keys(o).sort();
  return keys.map((k) => {
    const v = o[k];
    return `${k}=${Buffer.isBuffer(v) ? v.toString('hex') : String(v)}`;
  }).join(' ');
}

/** The part of a generated stream from record `fromSeq` on, as a new stream (a resend). */
export function restream(g: GenStream, fromSeq: number, toSeq = Infinity, end = true): Buffer {
  const w = new StreamWriter({ groupId: g.header.groupId, firstSeq: fromSeq, created: g.header.created });
  const parts: Buffer[] = [w.start()];
  for (const v of g.volumes) parts.push(...w.volume({ name: v.name, size: v.size, blockSize: v.blockSize, id: v.id, time: v.time }));
  for (const r of g.records) if (r.seq >= fromSeq && r.seq <= toSeq) parts.push(...w.record(r as RecordInput).parts);
  if (end) parts.push(...w.end());
  return Buffer.concat(parts);
}
