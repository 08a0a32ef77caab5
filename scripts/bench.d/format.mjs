// Stream codec: dr-verify stream (decode + check every CRC, order and the trailer) of a
// 1 GiB stream of 64 KiB writes, against `cat FILE > /dev/null` and `sha256sum FILE`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, writeSync, closeSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamWriter } from '../../dist/format/codec.js';

const MiB = 1 << 20;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-format-'));
const file = join(dir, 'stream.drj');
try {
  const w = new StreamWriter({ groupId: randomBytes(16), firstSeq: 1 });
  const fd = openSync(file, 'w');
  writeSync(fd, w.start());
  for (const p of w.volume({ name: 'disk0', size, blockSize: 4096, id: randomBytes(16) })) writeSync(fd, p);
  const data = randomBytes(64 * 1024);
  for (let off = 0; off < size; off += data.length) for (const p of w.record({ type: 'write', volume: 0, offset: off, data }).parts) writeSync(fd, p);
  for (const p of w.end()) writeSync(fd, p);
  closeSync(fd);
  spawnSync('cat', [file], { stdio: ['ignore', 'ignore', 'ignore'] }); // warm the page cache for all three

  const time = (cmd, args) => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
    return { s, peakMiB: Math.round(Number(r.stderr.trim().split('\n').pop()) / 1024) };
  };
  const drkit = time('bin/dr-verify', ['stream', file]);
  const cat = time('sh', ['-c', `cat ${file} > /dev/null`]);
  const sha = time('sha256sum', [file]);
  const fig = (peer, p) => ({ area: 'format', name: `dr-verify stream, ${size / MiB} MiB of 64 KiB writes`, drkit_s: drkit.s, peer, peer_s: p.s, ratio: p.s / drkit.s, higher_is_better: true, drkit_peak_mib: drkit.peakMiB, bytes: size });
  console.log(JSON.stringify(fig('cat > /dev/null', cat)));
  console.log(JSON.stringify(fig('sha256sum', sha)));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
