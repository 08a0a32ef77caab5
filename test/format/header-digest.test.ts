// HeaderDigest batches record headers; its value must be that of updating header by header.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { HeaderDigest } from '../../src/format/header-digest.js';
import { HEADER_SIZE, RECORD_HEADER_SIZE } from '../../src/format/layout.js';

t.test('same SHA-256 as one update per header, across batch boundaries and mid-way digests', async (t) => {
  const head = randomBytes(HEADER_SIZE);
  const d = new HeaderDigest();
  const plain = createHash('sha256');
  d.raw(head);
  plain.update(head);
  for (let i = 0; i < 600; i++) {
    const rec = randomBytes(RECORD_HEADER_SIZE + (i % 7) * 10); // a header, maybe with payload after it
    d.update(rec);
    plain.update(rec.subarray(0, RECORD_HEADER_SIZE));
    if (i === 0 || i === 255 || i === 256 || i === 599) t.same(d.digest(), plain.copy().digest(), `after ${i + 1} records`);
  }
  d.flush();
  t.same(d.digest(), plain.copy().digest(), 'flush() changes nothing');
});
