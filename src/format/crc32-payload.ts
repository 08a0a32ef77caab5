/**
 * CRC-32 of a record payload (the same value as zlib.crc32), with its all-zero 4 KiB
 * pages accounted for without reading them through the CRC: block devices are full of
 * zero blocks, and appending N zero bytes to a message changes its CRC by a fixed linear
 * map (CRC-32 is linear over GF(2)): crc(A || 0^N) = (x^(8N) * crc(A) mod P) xor crc(0^N),
 * the identity zlib's crc32_combine() rests on. A page is tested with a comparison against
 * zeros (several times faster than the CRC it saves; random data fails it at its first
 * bytes, so it costs almost nothing there) and, if zero, folded in with one 32-step
 * multiplication instead of 4096 table steps.
 */
import { crc32 } from 'node:zlib';
import { isZero } from './zeros.js';

const POLY = 0xedb88320;
const PAGE = 4096;

/** a * b modulo the CRC polynomial (both in the reflected bit order zlib uses). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(8 * PAGE) mod P: x^1 (0x40000000 reflected) squared 15 times is x^32768 */
const PAGE_SHIFT = (() => {
  let t = 0x40000000;
  for (let i = 0; i < 15; i++) t = multModP(t, t);
  return t;
})();
/** CRC-32 of a page of zeros on its own */
const PAGE_ZEROS_CRC = crc32(Buffer.alloc(PAGE));

/** `crc` continued over one page of zeros (zlib.crc32 of them, arithmetically). */
export function crc32ZeroPage(crc: number): number {
  return (multModP(PAGE_SHIFT, crc) ^ PAGE_ZEROS_CRC) >>> 0;
}

/** zlib.crc32(b, crc), with whole zero pages of `b` (at multiples of 4 KiB from its start) folded in arithmetically. */
export function crc32Payload(b: Buffer, crc = 0): number {
  const n = b.length;
  // Node 20's zlib.crc32 answers 0, not `crc`, for an empty view of an empty ArrayBuffer
  // (Buffer.allocUnsafe(0).subarray(0, 0)): an empty piece must leave the CRC as it is
  if (n === 0) return crc;
  if (n < 2 * PAGE) return crc32(b, crc);
  let from = 0; // start of the bytes not yet in `crc`
  for (let at = 0; at + PAGE <= n; at += PAGE) {
    if (!isZero(b, at, at + PAGE)) continue;
    if (at > from) crc = crc32(b.subarray(from, at), crc);
    crc = crc32ZeroPage(crc);
    from = at + PAGE;
  }
  return from === 0 ? crc32(b, crc) : from < n ? crc32(b.subarray(from), crc) : crc;
}
