/**
 * The small state files of a store: store.json (identity: group id, volumes,
 * segment size), window.json (where the history window starts and which base
 * image generation holds everything before it) and `durable` (the last seq the
 * running appender has made durable, read by followers in other processes).
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { DrError } from '../errors.js';
import type { VolumeRecord } from '../format/layout.js';
import { readJson, writeFileDurable } from './files.js';
import type { MarkInfo } from './segment.js';

export const APPEND_LOCK = 'append.lock';
export const PRUNE_LOCK = 'prune.lock';
export const STORE_FORMAT = 'drkit-journal-store';
export const DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024;
export const MIN_SEGMENT_SIZE = 64 * 1024;
export const MAX_SEGMENT_SIZE = 1024 * 1024 * 1024;

export interface VolumeMeta { index: number; name: string; size: number; blockSize: number; id: string; time: number }
export interface StoreMeta {
  format: typeof STORE_FORMAT;
  version: 1;
  groupId: string | null;
  created: number;
  segmentSize: number;
  volumes: VolumeMeta[];
}

export interface WindowState {
  /** first seq of the history window; older records live in the base images */
  firstSeq: number;
  /** base image generation (0: no base files, every volume reads as zeroes) */
  baseGen: number;
  /** time of the last record folded into the base (0 if none) */
  baseTime: number;
  foldedRecords: number;
  foldedMarks: MarkInfo[];
  prunedAt: number;
}

export function metaPath(dir: string): string {
  return path.join(dir, 'store.json');
}
export function windowPath(dir: string): string {
  return path.join(dir, 'window.json');
}
export function durablePath(dir: string): string {
  return path.join(dir, 'durable');
}

export function readMeta(dir: string): StoreMeta | null {
  const m = readJson<StoreMeta>(metaPath(dir));
  if (m === null) return null;
  if (m.format !== STORE_FORMAT || m.version !== 1 || !Array.isArray(m.volumes)) {
    throw new DrError('DR_STORE_CORRUPT', `${metaPath(dir)} is not a drkit journal store description (format ${String(m.format)} version ${String(m.version)})`);
  }
  return m;
}
export function writeMeta(dir: string, m: StoreMeta): void {
  writeFileDurable(metaPath(dir), JSON.stringify(m, null, 1) + '\n');
}
export function readWindow(dir: string): WindowState | null {
  return readJson<WindowState>(windowPath(dir));
}
export function writeWindow(dir: string, w: WindowState): void {
  writeFileDurable(windowPath(dir), JSON.stringify(w) + '\n');
}

export function volumeToMeta(v: VolumeRecord): VolumeMeta {
  return { index: v.index, name: v.name, size: v.size, blockSize: v.blockSize, id: v.id.toString('hex'), time: v.time };
}
export function volumeFromMeta(v: VolumeMeta): VolumeRecord {
  return { type: 'volume', seq: 0, time: v.time, index: v.index, blockSize: v.blockSize, size: v.size, id: Buffer.from(v.id, 'hex'), name: v.name };
}

/** `durable`: u64 seq | u64 time | u32 pid | u32 CRC-32 of bytes 0..19 (not fsynced: a hint for followers). */
export function encodeDurable(seq: number, time: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(BigInt(seq), 0);
  b.writeBigUInt64LE(BigInt(time), 8);
  b.writeUInt32LE(process.pid, 16);
  b.writeUInt32LE(crc32(b.subarray(0, 20)), 20);
  return b;
}
export function readDurable(dir: string): { seq: number; time: number; pid: number } | null {
  try {
    const b = fs.readFileSync(durablePath(dir));
    if (b.length !== 24 || crc32(b.subarray(0, 20)) !== b.readUInt32LE(20)) return null;
    return { seq: Number(b.readBigUInt64LE(0)), time: Number(b.readBigUInt64LE(8)), pid: b.readUInt32LE(16) };
  } catch {
    return null;
  }
}
