// crc32Short must give zlib.crc32's value: from scratch, continuing a running CRC, and
// handing on to zlib.crc32 for the rest (how record CRCs are computed).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { crc32Short } from '../../src/format/crc32-short.js';

t.test('equals zlib.crc32 for every length up to 64 and any start', async (t) => {
  const b = randomBytes(200);
  let bad = 0;
  for (let start = 0; start < 8; start++) {
    for (let len = 0; len <= 64; len++) if (crc32Short(b, start, start + len) !== crc32(b.subarray(start, start + len))) bad++;
  }
  t.equal(bad, 0, 'no length or start differs');
  t.equal(crc32Short(Buffer.from('123456789'), 0, 9), 0xcbf43926, 'the CRC-32 check value');
});

t.test('continues a running CRC either way round', async (t) => {
  const b = randomBytes(4096 + 48);
  const whole = crc32(b);
  t.equal(crc32(b.subarray(28), crc32Short(b, 0, 28)), whole, 'short prefix, then zlib');
  t.equal(crc32Short(b, 28, b.length, crc32(b.subarray(0, 28))), whole, 'zlib prefix, then short');
  t.equal(crc32Short(b, 24, 28, crc32Short(b, 0, 24)), crc32(b.subarray(0, 28)), 'in two short steps');
});
