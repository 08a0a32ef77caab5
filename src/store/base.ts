/**
 * Base images: per volume, the bytes as of the window start (everything older
 * folded in by prune). Generation g of volume i is base/<i>.<g>.img (a sparse
 * file of the volume's size) with base/<i>.<g>.map, a bitmap of 1 MiB regions
 * that may hold non-zero bytes. Generation 0 has no files: every volume reads as
 * zeroes.
 */
import fs from 'node:fs';
import path from 'node:path';

export const BASE = 'base';
export const REGION = 1 << 20;

export function baseFiles(dir: string, volume: number, gen: number): { img: string; map: string } {
  return {
    img: path.join(dir, BASE, `${volume}.${gen}.img`),
    map: path.join(dir, BASE, `${volume}.${gen}.map`),
  };
}

export function regionCount(size: number): number {
  return Math.ceil(size / REGION);
}

/** The region bitmap, or null if absent (then every region may hold data). */
export function readBaseMap(file: string, size: number): Uint8Array | null {
  try {
    const b = fs.readFileSync(file);
    if (b.length !== Math.ceil(regionCount(size) / 8)) return null;
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  } catch {
    return null;
  }
}

export function regionSet(map: Uint8Array | null, region: number): boolean {
  if (map === null) return true;
  return ((map[region >> 3] ?? 0) & (1 << (region & 7))) !== 0;
}

/**
 * Split [pos, pos+n) of a volume into runs of regions the base image holds data in
 * (held) or not (zeroes, nothing to read): visit(start, end, held), in order, adjacent
 * regions of the same kind merged.
 */
export function baseRegionRuns(map: Uint8Array | null, pos: number, n: number, visit: (start: number, end: number, held: boolean) => void): void {
  const end = pos + n;
  let cur = pos;
  while (cur < end) {
    const held = regionSet(map, Math.floor(cur / REGION));
    let e = Math.min(end, (Math.floor(cur / REGION) + 1) * REGION);
    while (e < end && regionSet(map, Math.floor(e / REGION)) === held) e = Math.min(end, e + REGION);
    visit(cur, e, held);
    cur = e;
  }
}

export function setRegions(map: Uint8Array, offset: number, length: number): void {
  if (length <= 0) return;
  const r0 = Math.floor(offset / REGION);
  const r1 = Math.floor((offset + length - 1) / REGION);
  for (let r = r0; r <= r1; r++) map[r >> 3] = (map[r >> 3] ?? 0) | (1 << (r & 7));
}
