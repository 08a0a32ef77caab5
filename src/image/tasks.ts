/**
 * The work the image worker threads do, as plain functions of (task) -> result, so
 * they run the same in a worker (worker.ts) or inline. Each task covers one stripe
 * of an image (a few MiB) and reads it itself with pread, so the two cores read and
 * hash in parallel and no image bytes cross threads unless a caller needs them
 * (scan hands over changed blocks by transferring the stripe buffer, not copying it).
 */
import { createHash, hash } from 'node:crypto';
import { closeSync } from 'node:fs';
import { DrError } from '../errors.js';
import { openImage, readFully } from './device.js';
import { DIGEST_LENGTH } from './manifest.js';

/** Largest buffer a task reads at once. */
export const STRIPE = 8 << 20;

export interface CompareTask { kind: 'compare'; a: string; b: string; offset: number; length: number; chunk: number }
export interface HashTask { kind: 'hash'; path: string; offset: number; length: number; chunk: number }
export interface ScanTask { kind: 'scan'; path: string; offset: number; length: number; block: number; old: Uint8Array | null }
export type Task = CompareTask | HashTask | ScanTask;

/** Differing byte ranges [start, end) within the task, merged at chunk granularity, ends exact. */
export interface CompareResult { ranges: Array<[number, number]> }
export interface HashResult { digests: Uint8Array }
/**
 * states[i]: 0 unchanged (or an all-zero block on a first scan), 1 new data, 2 became all zero.
 * data holds the bytes of the state-1 blocks, one after the other, when there are any.
 */
export interface ScanResult { digests: Uint8Array; states: Uint8Array; data: Uint8Array | null; changed: number; zeroed: number }
export type TaskResult = CompareResult | HashResult | ScanResult;

const fds = new Map<string, number>();
function fdFor(path: string): number {
  let fd = fds.get(path);
  if (fd === undefined) {
    fd = openImage(path).fd;
    fds.set(path, fd);
  }
  return fd;
}
export function closeAll(): void {
  for (const fd of fds.values()) {
    try {
      closeSync(fd);
    } catch {
      /* ignore */
    }
  }
  fds.clear();
}

let bufA: Buffer | null = null;
let bufB: Buffer | null = null;
function scratch(which: 'a' | 'b', n: number): Buffer {
  let b = which === 'a' ? bufA : bufB;
  if (!b || b.length < n) {
    b = Buffer.allocUnsafeSlow(Math.max(n, STRIPE));
    if (which === 'a') bufA = b;
    else bufB = b;
  }
  return b;
}

function readExact(path: string, buf: Buffer, length: number, offset: number): void {
  const n = readFully(fdFor(path), buf, length, offset, path);
  if (n !== length) throw new DrError('DR_IO', `${path} ended at byte ${offset + n} while reading (did it shrink?)`);
}

export function runTask(t: Task): { result: TaskResult; transfer: ArrayBuffer[] } {
  switch (t.kind) {
    case 'compare': return { result: compareTask(t), transfer: [] };
    case 'hash': {
      const r = hashTask(t);
      return { result: r, transfer: [r.digests.buffer as ArrayBuffer] };
    }
    case 'scan': {
      const r = scanTask(t);
      const transfer = [r.digests.buffer as ArrayBuffer, r.states.buffer as ArrayBuffer];
      if (r.data) transfer.push(r.data.buffer as ArrayBuffer);
      return { result: r, transfer };
    }
  }
}

/** compare reads in pieces that stay in the CPU cache between the read and the memcmp */
const COMPARE_PIECE = 256 * 1024;

function compareTask(t: CompareTask): CompareResult {
  const ranges: Array<[number, number]> = [];
  const piece = Math.max(COMPARE_PIECE, t.chunk);
  for (let pos = t.offset; pos < t.offset + t.length; pos += piece) {
    const len = Math.min(piece, t.offset + t.length - pos);
    const a = scratch('a', len);
    const b = scratch('b', len);
    readExact(t.a, a, len, pos);
    readExact(t.b, b, len, pos);
    const va = a.subarray(0, len);
    const vb = b.subarray(0, len);
    if (va.equals(vb)) continue;
    for (let c = 0; c < len; c += t.chunk) {
      const e = Math.min(c + t.chunk, len);
      const ca = va.subarray(c, e);
      const cb = vb.subarray(c, e);
      if (ca.equals(cb)) continue;
      let first = 0;
      while (ca[first] === cb[first]) first++;
      let last = ca.length - 1;
      while (ca[last] === cb[last]) last--;
      const start = pos + c + first;
      const end = pos + c + last + 1;
      const prev = ranges[ranges.length - 1];
      // merge with the previous range when the chunks are adjacent
      if (prev && Math.floor((prev[1] - 1) / t.chunk) + 1 >= Math.floor(start / t.chunk)) prev[1] = end;
      else ranges.push([start, end]);
    }
  }
  return { ranges };
}

function hashTask(t: HashTask): HashResult {
  const count = Math.ceil(t.length / t.chunk);
  const digests = new Uint8Array(new ArrayBuffer(count * DIGEST_LENGTH));
  if (t.chunk <= STRIPE) {
    for (let pos = t.offset, i = 0; pos < t.offset + t.length; pos += STRIPE) {
      const len = Math.min(STRIPE, t.offset + t.length - pos);
      const buf = scratch('a', len);
      readExact(t.path, buf, len, pos);
      for (let c = 0; c < len; c += t.chunk, i++) {
        const d = hash('sha256', buf.subarray(c, Math.min(c + t.chunk, len)), 'buffer') as unknown as Buffer;
        digests.set(d, i * DIGEST_LENGTH);
      }
    }
  } else {
    for (let i = 0; i < count; i++) {
      const h = createHash('sha256');
      const start = t.offset + i * t.chunk;
      const end = Math.min(start + t.chunk, t.offset + t.length);
      for (let pos = start; pos < end; pos += STRIPE) {
        const len = Math.min(STRIPE, end - pos);
        const buf = scratch('a', len);
        readExact(t.path, buf, len, pos);
        h.update(buf.subarray(0, len));
      }
      digests.set(h.digest(), i * DIGEST_LENGTH);
    }
  }
  return { digests };
}

const zeroBlocks = new Map<number, Buffer>();
function zeroBlock(n: number): Buffer {
  let z = zeroBlocks.get(n);
  if (!z) {
    z = Buffer.alloc(n);
    zeroBlocks.set(n, z);
  }
  return z;
}

function scanTask(t: ScanTask): ScanResult {
  const count = Math.ceil(t.length / t.block);
  const digests = new Uint8Array(new ArrayBuffer(count * DIGEST_LENGTH));
  const states = new Uint8Array(new ArrayBuffer(count));
  // the stripe is read into a reused buffer (fresh memory would cost a page fault per
  // 4 KiB); only the changed blocks are copied out, in order, for the main thread
  const stripe = scratch('a', t.length);
  readExact(t.path, stripe, t.length, t.offset);
  const old = t.old ? Buffer.from(t.old.buffer, t.old.byteOffset, t.old.byteLength) : null;
  let changed = 0;
  let zeroed = 0;
  let changedBytes = 0;
  for (let i = 0; i < count; i++) {
    const start = i * t.block;
    const block = stripe.subarray(start, Math.min(start + t.block, t.length));
    const d = hash('sha256', block, 'buffer') as unknown as Buffer;
    digests.set(d, i * DIGEST_LENGTH);
    if (old && d.equals(old.subarray(i * DIGEST_LENGTH, (i + 1) * DIGEST_LENGTH))) continue;
    // A zero block is one whose every byte, the last included, is zero: compare the whole block.
    const isZero = block.equals(zeroBlock(block.length));
    if (isZero) {
      if (old) {
        states[i] = 2;
        zeroed++;
      }
    } else {
      states[i] = 1;
      changed++;
      changedBytes += block.length;
    }
  }
  let data: Uint8Array | null = null;
  if (changed > 0) {
    data = new Uint8Array(new ArrayBuffer(changedBytes));
    let at = 0;
    for (let i = 0; i < count; i++) {
      if (states[i] !== 1) continue;
      const start = i * t.block;
      const end = Math.min(start + t.block, t.length);
      data.set(stripe.subarray(start, end), at);
      at += end - start;
    }
  }
  return { digests, states, data, changed, zeroed };
}
