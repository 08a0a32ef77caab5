// Golden vectors pin the format byte for byte: the encoder must reproduce every
// fixture exactly, and the decoder must read each back, whole and one byte at a time.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { StreamParser, type StreamItem } from '../../src/format/codec.js';
import { GOLDEN, encodeGolden } from '../helpers/golden.js';

const dir = new URL('../fixtures/', import.meta.url);

function decodeAll(buf: Buffer, chunk: number): StreamItem[] {
  const p = new StreamParser();
  const out: StreamItem[] = [];
  for (let i = 0; i < buf.length; i += chunk) p.push(buf.subarray(i, i + chunk), out);
  return out;
}

for (const g of GOLDEN) {
  t.test(`golden ${g.name}`, async (t) => {
    const file = new URL(`${g.name}.drj`, dir);
    const bytes = encodeGolden(g);
    if (process.env.DRKIT_WRITE_FIXTURES === '1') writeFileSync(file, bytes);
    const fixture = readFileSync(file);
    t.ok(bytes.equals(fixture), 'encoder reproduces the fixture byte for byte');

    const whole = decodeAll(fixture, fixture.length);
    const bytewise = decodeAll(fixture, 1);
    t.equal(whole.length, 1 + g.volumes.length + g.records.length + (g.end ? 1 : 0), 'every record decoded');
    t.same(bytewise.map(strip), whole.map(strip), 'one byte at a time decodes the same');
    const recs = whole.filter((r) => r.type !== 'header' && r.type !== 'volume' && r.type !== 'end');
    recs.forEach((r, i) => {
      const want = g.records[i]!;
      t.equal(r.type, want.type);
      t.equal((r as { seq: number }).seq, g.firstSeq + i, 'seq counts up from the header');
      if (r.type === 'write' && want.type === 'write') t.ok(r.data.equals(want.data), 'write data round-trips');
    });
    const p = new StreamParser();
    p.push(fixture);
    if (g.end) {
      t.doesNotThrow(() => p.finish(), 'complete stream');
    } else {
      t.throws(() => p.finish(), { code: 'DR_TRUNCATED' }, 'a stream without END is truncated, even at a record boundary');
    }
  });
}

function strip(it: StreamItem): unknown {
  return JSON.parse(JSON.stringify(it));
}
