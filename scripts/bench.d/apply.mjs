// dr-apply: a stream of BENCH_SIZE_MIB (default 1024) MiB of 64 KiB writes applied to a new
// replica (`dr-apply --target IMG < stream`, durable at the end: fdatasync + state file)
// versus `dd if=RAW of=IMG bs=64K conv=fsync` of the same bytes. Figures:
//   1. writes in volume order (what dd does)
//   2. the same writes in a shuffled order (dd still writes in order: its time is the same)
//   3. writes in order with a FLUSH record every 64 MiB (dr-apply fdatasyncs and records its
//      state at each one; dd still syncs once)
// Fairness: the two sides alternate (AB, BA, ...), BENCH_ROUNDS (default 3) runs each; right
// before every run of either the last target is deleted and both inputs are read into the page
// cache; the MEDIAN wall time of each side counts (ratio of the medians; every run's time is in
// the note). Peak memory via /usr/bin/time -f %M.
import { mkdtempSync, openSync, writeSync, closeSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamWriter } from '../../dist/format/codec.js';
import { alternate, median, must, spread, timed, streamFile, warm } from '../lib/bench.mjs';

const MiB = 1 << 20;
const KiB64 = 64 * 1024;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-apply-'));


// Record i carries a 64 KiB slice of a random pool, so the data is not all alike.
const pool = randomBytes(16 * MiB + KiB64);
const dataFor = (block) => pool.subarray((block * 4096 * 7) % (16 * MiB), (block * 4096 * 7) % (16 * MiB) + KiB64);

function writeStream(path, order, flushEvery) {
  const w = new StreamWriter({ groupId: randomBytes(16), firstSeq: 1 });
  const file = streamFile(path);
  const put = (parts) => file.put(parts);
  put([w.start()]);
  put(w.volume({ name: 'disk0', size, blockSize: 4096, id: randomBytes(16) }));
  let bytes = 0;
  for (const block of order) {
    put(w.record({ type: 'write', volume: 0, offset: block * KiB64, data: dataFor(block) }).parts);
    bytes += KiB64;
    if (flushEvery && bytes % flushEvery === 0) put(w.record({ type: 'flush' }).parts);
  }
  put(w.end());
  file.close();
}

function writeRaw(path) {
  const fd = openSync(path, 'w');
  for (let block = 0; block < size / KiB64; block++) writeSync(fd, dataFor(block));
  closeSync(fd);
}

const blocks = size / KiB64;
const inOrder = Array.from({ length: blocks }, (_, i) => i);
const shuffled = [...inOrder];
for (let i = shuffled.length - 1; i > 0; i--) {
  const j = Math.floor(Math.random() * (i + 1));
  [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
}


function fresh(target) {
  rmSync(target, { force: true });
  rmSync(target + '.drstate', { force: true });
  must('sync', []);
}

try {
  const raw = join(dir, 'raw.img');
  writeRaw(raw);
  const cases = [
    { name: `dr-apply of ${size / MiB} MiB of 64 KiB writes (volume order)`, order: inOrder, flushEvery: 0 },
    { name: `dr-apply of ${size / MiB} MiB of 64 KiB writes (shuffled order)`, order: shuffled, flushEvery: 0 },
    { name: `dr-apply of ${size / MiB} MiB of 64 KiB writes (volume order, FLUSH every 64 MiB)`, order: inOrder, flushEvery: 64 * MiB },
  ];
  const target = join(dir, 'replica.img');
  for (const c of cases) {
    const stream = join(dir, 'stream.drj');
    writeStream(stream, c.order, c.flushEvery);
    const runs = alternate(rounds, {
      prepare: () => {
        fresh(target);
        warm(stream, raw);
      },
      drkit: () => timed(join(root, 'bin/dr-apply'), ['--target', target, '-q'], { stdinPath: stream }),
      peer: () => timed('dd', [`if=${raw}`, `of=${target}`, 'bs=64K', 'conv=fsync', 'status=none']),
    });
    fresh(target);
    const d = median(runs.drkit);
    const p = median(runs.peer);
    console.log(JSON.stringify({
      area: 'apply', name: c.name, drkit_s: Number(d.s.toFixed(3)), peer: 'dd bs=64K conv=fsync', peer_s: Number(p.s.toFixed(3)),
      ratio: Number((p.s / d.s).toFixed(3)), higher_is_better: true, drkit_peak_mib: Math.max(...runs.drkit.map((r) => r.peak)), bytes: size,
      note: `median of ${rounds} alternating runs each (dr-apply ${spread(runs.drkit)} s, dd ${spread(runs.peer)} s); target deleted and inputs read into the page cache before every run; `
        + `target is a new file on ${tmpdir()}; stream read from a file on standard input; CPU (user+sys) of the medians drkit ${d.cpu.toFixed(2)} s, dd ${p.cpu.toFixed(2)} s`,
    }));
    rmSync(stream, { force: true });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
