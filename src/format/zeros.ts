/**
 * Whether a range of a buffer is all zero bytes: the test behind the zero pages that
 * compressed shipping never sends and record CRCs fold in arithmetically. No view is made
 * (it runs for every page); data that is not zero almost always fails on its first or
 * last word, before the comparison.
 */
const ZEROS = Buffer.alloc(64 * 1024);

/** Bytes start..end of `b` are all zero. */
export function isZero(b: Buffer, start: number, end: number): boolean {
  if (end - start >= 8 && (b.readUInt32LE(start) !== 0 || b.readUInt32LE(end - 4) !== 0)) return false;
  for (let at = start; at < end; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - at);
    if (b.compare(ZEROS, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}
