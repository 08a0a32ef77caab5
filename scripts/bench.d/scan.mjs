// dr-tap scan: an image of BENCH_SIZE_MIB (default 1024) MiB of random data was scanned
// once (its manifest saved); then 1% of its 4 KiB blocks change. Timed, page cache warm:
//   `dr-tap scan IMG --manifest M > stream` (finds and streams the changed blocks,
//      replaces the manifest)   vs   `sha256sum IMG`
//   and vs `rsync --inplace --no-whole-file -B 4096 IMG COPY` (COPY = the image before
//      the change, so rsync finds and sends the same blocks).
// Before each round the manifest and the copy are reset (untimed). Best of BENCH_ROUNDS (3).
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, statSync } from 'node:fs';
import { randomBytes, randomInt } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { faster, must, timed } from '../lib/bench.mjs';

const MiB = 1 << 20;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-scan-'));


try {
  const img = join(dir, 'vol.img');
  const copy = join(dir, 'copy.img');
  const m = join(dir, 'vol.manifest');
  const m0 = join(dir, 'vol.manifest.0');
  const stream = join(dir, 'stream.drj');
  const pool = randomBytes(64 * MiB + 4096);
  let fd = openSync(img, 'w');
  for (let o = 0, k = 0; o < size; o += 64 * MiB, k++) writeSync(fd, pool, (k % 8) * 512, Math.min(64 * MiB, size - o), o);
  closeSync(fd);
  const tap = join(root, 'bin/dr-tap');
  const base = timed('sh', ['-c', `exec ${tap} scan ${img} --manifest ${m} -q > ${stream}`]);
  copyFileSync(m, m0);
  copyFileSync(img, copy);
  // change 1% of the 4 KiB blocks
  const blocks = size / 4096;
  const changes = Math.round(blocks / 100);
  fd = openSync(img, 'r+');
  for (let i = 0; i < changes; i++) writeSync(fd, randomBytes(4096), 0, 4096, randomInt(blocks) * 4096);
  closeSync(fd);
  must('sh', ['-c', `cat ${img} ${copy} > /dev/null`]);
  let d = null, s = null, r = null, streamBytes = 0;
  for (let i = 0; i < rounds; i++) {
    copyFileSync(m0, m);
    const a = timed('sh', ['-c', `exec ${tap} scan ${img} --manifest ${m} -q > ${stream}`]);
    streamBytes = statSync(stream).size;
    const b = timed('sha256sum', [img]);
    // reset the rsync destination to the pre-change image
    const c0 = join(dir, 'copy0.img');
    if (i === 0) copyFileSync(copy, c0);
    else copyFileSync(c0, copy);
    must('sh', ['-c', `cat ${copy} > /dev/null`]);
    const c = timed('rsync', ['--inplace', '--no-whole-file', '--ignore-times', '-B', '4096', img, copy]);
    d = faster(d, a);
    s = faster(s, b);
    r = faster(r, c);
  }
  const out = (peer, p, note) => console.log(JSON.stringify({
    area: 'scan', name: `dr-tap scan of a ${size / MiB} MiB image with 1% of 4 KiB blocks changed`, drkit_s: Number(d.s.toFixed(3)), peer,
    peer_s: Number(p.s.toFixed(3)), ratio: Number((p.s / d.s).toFixed(3)), higher_is_better: true, drkit_peak_mib: d.peak, bytes: size,
    note: `${note}; CPU time (user+sys) drkit ${d.cpu.toFixed(2)}s, ${peer.split(' ')[0]} ${p.cpu.toFixed(2)}s; load average ${loadavg()[0].toFixed(1)}`,
  }));
  out('sha256sum', s, `best of ${rounds}; page cache warm; ${changes} blocks changed, stream ${streamBytes} bytes to a file; manifest replaced each run`);
  out('rsync --inplace --no-whole-file --ignore-times -B 4096', r, `best of ${rounds}; rsync updates a copy of the pre-change image (local, delta algorithm forced)`);
  console.log(JSON.stringify({
    area: 'scan', name: `dr-tap scan baseline (first run) of a ${size / MiB} MiB image of random data`, drkit_s: Number(base.s.toFixed(3)),
    peer: 'sha256sum', peer_s: Number(s.s.toFixed(3)), ratio: Number((s.s / base.s).toFixed(3)), higher_is_better: true, drkit_peak_mib: base.peak,
    bytes: size, note: 'the full baseline stream (every block) written to a file on the same disk; one run',
  }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
