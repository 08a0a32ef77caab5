/**
 * Test helpers for the verify/scan area: temp dirs, deterministic image contents,
 * and a plain replay of a journal stream onto an image file (WRITE and ZERO records
 * in order), used to check that a stream rebuilds exactly the bytes it came from.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { StreamParser, type StreamItem } from '../../src/format/codec.js';

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'drkit-verify-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Deterministic pseudo-random bytes (xorshift), so failures are reproducible. */
export function pattern(length: number, seed = 1): Buffer {
  const b = Buffer.alloc((length + 3) & ~3);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b.subarray(0, length);
}

export function decodeStream(bytes: Buffer): StreamItem[] {
  const p = new StreamParser();
  const out = p.push(bytes);
  p.finish();
  return out;
}

/** Apply the WRITE and ZERO records of `bytes` to `image` (created/extended to the volume size). */
export function replay(bytes: Buffer, image: string): StreamItem[] {
  const items = decodeStream(bytes);
  const fd = openSync(image, 'a+');
  closeSync(fd);
  const w = openSync(image, 'r+');
  try {
    for (const it of items) {
      if (it.type === 'volume' && it.index === 0) ftruncateSync(w, Math.max(it.size, 0));
      if (it.type === 'write') writeSync(w, it.data, 0, it.data.length, it.offset);
      if (it.type === 'zero') writeSync(w, Buffer.alloc(it.length), 0, it.length, it.offset);
    }
  } finally {
    closeSync(w);
  }
  return items;
}

export function sameFile(a: string, b: string): boolean {
  return readFileSync(a).equals(readFileSync(b));
}

/** Is a peer program on PATH? Under CI=true a missing peer must fail the test. */
export function havePeer(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
