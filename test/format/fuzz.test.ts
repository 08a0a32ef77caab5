// Fuzz: at least 10,000 mutated streams per run. Each one either decodes to valid
// records or is rejected with a documented DR_ code and a byte offset; never a crash,
// a hang (the parser is synchronous: a run that returns did not hang) or an allocation
// beyond the format's limits.
import t from 'tap';
import { crc32 } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { StreamParser } from '../../src/format/codec.js';
import { LIMITS, HEADER_SIZE } from '../../src/format/layout.js';
import { CODES, DrError } from '../../src/errors.js';
import { GOLDEN } from '../helpers/golden.js';

const seed = Number(process.env.DRKIT_FUZZ_SEED ?? Date.now() % 1_000_000);
const runs = Number(process.env.DRKIT_FUZZ_RUNS ?? 10_000);

function rng(s: number) {
  let x = s >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

const fixtures = GOLDEN.map((g) => readFileSync(new URL(`../fixtures/${g.name}.drj`, import.meta.url)));

/** Record starts of a fixture, for length mutations that keep the header CRC valid. */
function recordStarts(buf: Buffer): number[] {
  const starts: number[] = [];
  let off = HEADER_SIZE;
  while (off + 32 <= buf.length) {
    starts.push(off);
    off += 32 + buf.readUInt32LE(off + 4);
  }
  return starts;
}

t.test(`fuzz ${runs} mutated streams (seed ${seed}; replay with DRKIT_FUZZ_SEED=${seed})`, async (t) => {
  const rand = rng(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const outcomes: Record<string, number> = {};
  let maxPending = 0;
  for (let i = 0; i < runs; i++) {
    const base = fixtures[pick(fixtures.length)]!;
    let buf = Buffer.from(base);
    const kind = pick(6);
    switch (kind) {
      case 0: { // bit flips
        const flips = 1 + pick(4);
        for (let f = 0; f < flips; f++) { const at = pick(buf.length); buf[at]! ^= 1 << pick(8); }
        break;
      }
      case 1: // truncation
        buf = buf.subarray(0, pick(buf.length));
        break;
      case 2: { // inserted bytes
        const at = pick(buf.length + 1);
        const ins = Buffer.alloc(1 + pick(40));
        for (let k = 0; k < ins.length; k++) ins[k] = pick(256);
        buf = Buffer.concat([buf.subarray(0, at), ins, buf.subarray(at)]);
        break;
      }
      case 3: { // deleted bytes
        const at = pick(buf.length);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + pick(40))]);
        break;
      }
      case 4: { // huge or wrong payload length with a valid header CRC
        const starts = recordStarts(buf);
        if (starts.length === 0) break;
        const at = starts[pick(starts.length)]!;
        const lens = [0xffffffff, LIMITS.maxPayload + 1, LIMITS.maxPayload, buf.readUInt32LE(at + 4) + 1 + pick(100), pick(64)];
        buf.writeUInt32LE(lens[pick(lens.length)]! >>> 0, at + 4);
        buf.writeUInt32LE(crc32(buf.subarray(at, at + 24)), at + 24);
        break;
      }
      default: { // garbage after a valid prefix
        const cut = pick(buf.length);
        const junk = Buffer.alloc(pick(4096));
        for (let k = 0; k < junk.length; k++) junk[k] = pick(256);
        buf = Buffer.concat([buf.subarray(0, cut), junk]);
      }
    }
    const p = new StreamParser();
    const chunk = 1 + pick(97);
    try {
      for (let o = 0; o < buf.length; o += chunk) {
        p.push(buf.subarray(o, o + chunk));
        maxPending = Math.max(maxPending, p.pendingBytes);
      }
      p.finish();
      outcomes.valid = (outcomes.valid ?? 0) + 1;
    } catch (err) {
      if (!(err instanceof DrError) || !(err.code in CODES) || typeof err.detail.offset !== 'number') {
        t.fail(`mutation ${i} (kind ${kind}) threw something other than a DrError with an offset: ${(err as Error)?.stack}`);
        return;
      }
      if (err.detail.offset < 0 || err.detail.offset > buf.length) {
        t.fail(`mutation ${i}: offset ${err.detail.offset} outside the input of ${buf.length} bytes`);
        return;
      }
      outcomes[err.code] = (outcomes[err.code] ?? 0) + 1;
    }
  }
  t.ok(maxPending <= LIMITS.maxPayload + 32 + 4096 + 97, `parser never held more than a record (max ${maxPending} bytes)`);
  t.ok(Object.keys(outcomes).length >= 6, `outcomes spread over many codes: ${JSON.stringify(outcomes)}`);
  t.equal(Object.values(outcomes).reduce((a, b) => a + b, 0), runs, 'every mutated stream accounted for');
});
