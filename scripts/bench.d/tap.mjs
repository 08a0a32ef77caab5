// dr-tap nbd: BENCH_SIZE_MIB (default 1024) of random data written through `nbdcopy --flush`
// and through `qemu-img convert -n` into `dr-tap nbd --journal DIR` (every byte journaled and
// written to the backing file) versus the same into `qemu-nbd` serving a plain file.
// Each pair runs BENCH_ROUNDS times (default 2) interleaved; the best time of each counts,
// since the disk's speed changes a lot from one second to the next. Peak memory of dr-tap
// is measured with /usr/bin/time -f %M.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { must } from '../lib/bench.mjs';

const MiB = 1 << 20;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-tap-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


async function waitFor(path, proc) {
  const t0 = Date.now();
  while (!existsSync(path)) {
    if (proc.exitCode !== null) throw new Error(`server exited: ${proc.stderrText}`);
    if (Date.now() - t0 > 20000) throw new Error(`no socket ${path}`);
    await sleep(20);
  }
}

function startServer(kind, target, sock, extra = []) {
  const memFile = join(dir, 'mem.txt');
  const toNull = extra.includes('--stream-to-null');
  const journal = toNull ? [] : ['--journal', join(dir, 'J')];
  const args = kind === 'drkit'
    ? ['-f', '%M', '-o', memFile, join(root, 'bin/dr-tap'), 'nbd', '--export', `d=${target}`, '--socket', sock, ...journal, '-q', ...extra.filter((a) => a !== '--stream-to-null')]
    : ['-f', '%M', '-o', memFile, 'qemu-nbd', '-f', 'raw', '-t', '-e', '16', '-x', 'd', '-k', sock, target];
  const out = toNull ? openSync('/dev/null', 'w') : 'ignore';
  const p = spawn('/usr/bin/time', args, { stdio: ['ignore', out, 'pipe'] });
  p.stderrText = '';
  p.stderr.on('data', (d) => (p.stderrText += d));
  p.memFile = memFile;
  return p;
}

async function stopServer(p) {
  // SIGTERM the server itself (the child of /usr/bin/time), then wait for time to report
  const kids = readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  for (const k of kids) process.kill(Number(k), 'SIGTERM');
  await new Promise((r) => (p.exitCode !== null ? r() : p.once('exit', r)));
  if (p.exitCode !== 0) throw new Error(`server exit ${p.exitCode}: ${p.stderrText}`);
  return Math.round(Number(readFileSync(p.memFile, 'utf8').trim().split('\n').pop()) / 1024);
}

function client(kind, src, uri) {
  const [cmd, args] = kind === 'nbdcopy'
    ? ['nbdcopy', ['--flush', src, uri]]
    : ['qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, uri]];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function once(server, clientKind, src, extra) {
  const target = join(dir, 'target.img');
  rmSync(target, { force: true });
  rmSync(join(dir, 'J'), { recursive: true, force: true });
  must('truncate', ['-s', String(size), target]);
  must('sync', []);
  const sock = join(dir, `${server}.sock`);
  rmSync(sock, { force: true });
  const p = startServer(server, target, sock, extra);
  await waitFor(sock, p);
  await sleep(200);
  const s = client(clientKind, src, `nbd+unix:///d?socket=${sock}`);
  const peak = await stopServer(p);
  return { s, peak };
}

try {
  const src = join(dir, 'src.img');
  const fd = openSync(src, 'w');
  for (let off = 0; off < size; off += 16 * MiB) writeSync(fd, randomBytes(Math.min(16 * MiB, size - off)));
  closeSync(fd);
  spawnSync('cat', [src], { stdio: 'ignore' }); // warm the page cache: the source is read at memory speed by every run
  const variants = [
    { name: '', extra: [] },
    { name: ', --backing-sync flush', extra: ['--backing-sync', 'flush'] },
    // diagnostic: the same without journal I/O (stream to /dev/null, backing synced on FLUSH):
    // what the NBD server and the tap cost apart from writing the journal
    { name: ' (diagnostic: journal stream to /dev/null instead)', extra: ['--stream-to-null'] },
  ];
  for (const clientKind of ['nbdcopy', 'qemu-img']) {
    for (const v of variants) {
      let best = { drkit: Infinity, peer: Infinity, peak: 0 };
      for (let i = 0; i < rounds; i++) {
        const q = await once('qemu-nbd', clientKind, src, []);
        const d = await once('drkit', clientKind, src, v.extra);
        best = { drkit: Math.min(best.drkit, d.s), peer: Math.min(best.peer, q.s), peak: Math.max(best.peak, d.peak) };
      }
      const what = clientKind === 'nbdcopy' ? 'nbdcopy --flush' : 'qemu-img convert -n';
      const into = v.extra.includes('--stream-to-null') ? 'dr-tap nbd' : 'dr-tap nbd --journal';
      console.log(JSON.stringify({
        area: 'tap', name: `${what} of ${size / MiB} MiB into ${into}${v.name}`,
        drkit_s: +best.drkit.toFixed(3), peer: 'qemu-nbd (plain file, no journal)', peer_s: +best.peer.toFixed(3),
        ratio: +(best.peer / best.drkit).toFixed(3), higher_is_better: true, drkit_peak_mib: best.peak, bytes: size,
        note: `best of ${rounds} interleaved runs each`,
      }));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
