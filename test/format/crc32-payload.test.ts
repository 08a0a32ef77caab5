// The zero-page shortcut of the payload CRC gives zlib.crc32's value byte for byte: random
// data, zero pages anywhere (aligned, at the start, at the end, all of it), partial tails,
// and continuing from a CRC already running.
import t from 'tap';
import { crc32 } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { crc32Payload, crc32ZeroPage } from '../../src/format/crc32-payload.js';

t.test('one page of zeros folded in equals zlib over the zeros', async (t) => {
  const zeros = Buffer.alloc(4096);
  for (const start of [0, 1, 0xffffffff, 0x12345678, crc32(randomBytes(100))]) {
    t.equal(crc32ZeroPage(start), crc32(zeros, start), `from ${start.toString(16)}`);
  }
});

t.test('payloads with and without zero pages: the same value as zlib.crc32', async (t) => {
  const P = 4096;
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['short random', randomBytes(100)],
    ['one page of zeros', Buffer.alloc(P)],
    ['all zeros, 64 KiB', Buffer.alloc(64 * 1024)],
    ['all zeros plus a tail', Buffer.alloc(64 * 1024 + 17)],
    ['random, 64 KiB', randomBytes(64 * 1024)],
    ['header then zeros (a zero write record)', Buffer.concat([randomBytes(24), Buffer.alloc(64 * 1024)])],
    ['zeros then random', Buffer.concat([Buffer.alloc(3 * P), randomBytes(2 * P + 5)])],
    ['random then zeros', Buffer.concat([randomBytes(2 * P), Buffer.alloc(3 * P)])],
    ['alternating pages', Buffer.concat([randomBytes(P), Buffer.alloc(P), randomBytes(P), Buffer.alloc(P), randomBytes(P)])],
    ['zeros with one byte set at a page end', (() => { const b = Buffer.alloc(4 * P); b[2 * P - 1] = 1; return b; })()],
    ['zeros with one byte set mid page', (() => { const b = Buffer.alloc(4 * P); b[P + 2000] = 7; return b; })()],
  ];
  for (const [name, b] of cases) {
    t.equal(crc32Payload(b), crc32(b), name);
    const start = crc32(randomBytes(28));
    t.equal(crc32Payload(b, start), crc32(b, start), `${name}, continuing`);
  }
  // an empty view of an empty ArrayBuffer (zlib.crc32 itself answers 0 for it in Node 20) leaves a running CRC as it is
  const start = crc32(randomBytes(28));
  t.equal(crc32Payload(Buffer.allocUnsafe(0).subarray(0, 0), start), start, 'empty view of an empty buffer, continuing');
  // many random mixes: every one must agree (the list of those that do not is empty)
  const differ: string[] = [];
  for (let i = 0; i < 200; i++) {
    const parts: Buffer[] = [];
    const n = 1 + Math.floor(Math.random() * 12);
    for (let k = 0; k < n; k++) {
      const len = Math.floor(Math.random() * 3 * P);
      parts.push(Math.random() < 0.5 ? Buffer.alloc(len) : randomBytes(len));
    }
    const b = Buffer.concat(parts);
    if (crc32Payload(b, i) !== crc32(b, i)) differ.push(`mix ${i}: ${parts.map((p) => `${p.every((x) => x === 0) ? 'z' : 'r'}${p.length}`).join(' ')}`);
  }
  t.same(differ, [], '200 random mixes of zero and random runs agree with zlib');
});
