// dr-verify: images of BENCH_SIZE_MIB (default 1024) MiB, page cache warm.
//   1. `dr-verify compare A B` of two identical images vs `cmp A B` (both read everything)
//   2. `dr-verify hashes A` (SHA-256 per 64 KiB chunk, both cores) vs `sha256sum A`
// Each pair runs BENCH_ROUNDS times (default 3) interleaved, best time counts.
// Peak memory via /usr/bin/time -f %M.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, copyFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { faster, timed } from '../lib/bench.mjs';

const MiB = 1 << 20;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-verify-'));



function line(name, d, peer, p, note) {
  console.log(JSON.stringify({
    area: 'verify', name, drkit_s: Number(d.s.toFixed(3)), peer, peer_s: Number(p.s.toFixed(3)),
    ratio: Number((p.s / d.s).toFixed(3)), higher_is_better: true, drkit_peak_mib: d.peak, bytes: size,
    note: `${note}; CPU time (user+sys) drkit ${d.cpu.toFixed(2)}s, ${peer} ${p.cpu.toFixed(2)}s; load average ${loadavg()[0].toFixed(1)}`,
  }));
}

try {
  const a = join(dir, 'a.img');
  const b = join(dir, 'b.img');
  const pool = randomBytes(64 * MiB);
  const fd = openSync(a, 'w');
  for (let o = 0; o < size; o += pool.length) writeSync(fd, pool, 0, Math.min(pool.length, size - o));
  closeSync(fd);
  copyFileSync(a, b);
  spawnSync('sh', ['-c', `cat ${a} ${b} > /dev/null`]);
  const verify = join(root, 'bin/dr-verify');
  // interleave drkit and peer rounds
  let dC = null, pC = null;
  for (let i = 0; i < rounds; i++) {
    const d = timed(verify, ['compare', a, b, '-q']);
    const p = timed('cmp', [a, b]);
    dC = faster(dC, d);
    pC = faster(pC, p);
  }
  line(`dr-verify compare of two identical ${size / MiB} MiB images`, dC, 'cmp', pC, `best of ${rounds}; page cache warm; ${process.env.DRKIT_THREADS ?? 'all'} cores`);
  let dH = null, pH = null;
  for (let i = 0; i < rounds; i++) {
    const d = timed('sh', ['-c', `exec ${verify} hashes ${a} -q > /dev/null`]);
    const p = timed('sha256sum', [a]);
    dH = faster(dH, d);
    pH = faster(pH, p);
  }
  line(`dr-verify hashes of a ${size / MiB} MiB image (SHA-256 per 64 KiB, both cores)`, dH, 'sha256sum', pH, `best of ${rounds}; page cache warm; manifest to /dev/null`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
