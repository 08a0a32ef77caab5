/**
 * CRC-32 (the zlib / ISO-HDLC polynomial, the same value as zlib.crc32) of a few
 * bytes, computed in JavaScript from a table. Every record has two CRCs over its
 * 24- and 28-byte header prefixes; zlib.crc32 costs a call into C++ and a new Buffer
 * view each time (about 0.3 us, a fifth of a 4 KiB record's whole checksum cost),
 * while this loop over 28 bytes costs a few tens of nanoseconds. Long ranges (the
 * payload) still go to zlib.crc32, continuing from the value this returns.
 */
const TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c;
}

/** CRC-32 of b[start..end), continuing from `crc` (0 to start afresh), as zlib.crc32(b.subarray(start, end), crc). */
export function crc32Short(b: Uint8Array, start: number, end: number, crc = 0): number {
  let c = ~crc;
  for (let i = start; i < end; i++) c = TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
