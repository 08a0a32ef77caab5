// dr-restore: a volume of BENCH_SIZE_MIB (default 1024) MiB restored to a file at a point near the
// end of a journal of random 4 KiB writes, versus `cp` of an image of the same size; and how the
// restore grows with the journal's size (BENCH_RESTORE_JOURNALS, MiB, default "256,1024"; add 4096
// for the 4 GiB figure). For every journal size:
//   1. dr-restore --at mark:near-end --out FILE (sparse file, fsynced, renamed into place)
//      vs `cp IMG FILE && sync FILE` (a fully allocated image, made durable the same way), twice:
//      cold (the store's files and IMG dropped from the page cache before every run of either, as
//      after a while on this machine, whose DAMON pages out files idle for ~30 s) and warm (both
//      read once right before every run)
//   2. dr-restore --tar | cat (every byte streamed, with the manifest's sha256) vs tar -cf - IMG | cat
//   3. --serve: time from starting the server to the first 4 KiB read by qemu-io, vs qemu-nbd on IMG
// Fairness: the two sides alternate (AB, BA, ...), the last output is deleted right before every
// run of either; BENCH_ROUNDS (default 3) runs of each, the MEDIAN wall time of each side counts
// (ratio of the medians; every run's time is in the note). Peak memory via /usr/bin/time -f %M.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamWriter } from '../../dist/format/codec.js';
import { alternate, evict, median, must, spread, timed, streamFile, warm } from '../lib/bench.mjs';

const MiB = 1 << 20;
const BLOCK = 4096;
const volSize = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const journals = (process.env.BENCH_RESTORE_JOURNALS ?? '256,1024').split(',').map((s) => Number(s) * MiB);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-restore-'));
const bin = (c) => join(root, 'bin', c);




const pool = randomBytes(64 * MiB);

/** A stream of `bytes` of random 4 KiB writes over the volume, a MARK "near-end" 64 records before the end. */
function writeJournal(path, bytes) {
  const w = new StreamWriter({ groupId: randomBytes(16), firstSeq: 1 });
  const file = streamFile(path);
  const put = (parts) => file.put(parts);
  put([w.start()]);
  put(w.volume({ name: 'disk0', size: volSize, blockSize: BLOCK, id: randomBytes(16) }));
  const n = bytes / BLOCK;
  const blocks = volSize / BLOCK;
  for (let i = 0; i < n; i++) {
    if (i === n - 64) put(w.record({ type: 'mark', kind: 'app', name: 'near-end', id: randomBytes(16) }).parts);
    const b = Math.floor(Math.random() * blocks);
    const p = Math.floor(Math.random() * (pool.length / BLOCK)) * BLOCK;
    put(w.record({ type: 'write', volume: 0, offset: b * BLOCK, data: pool.subarray(p, p + BLOCK) }).parts);
    if (i % 4096 === 4095) put(w.record({ type: 'flush' }).parts);
  }
  put(w.end());
  file.close();
}

function writeImage(path) {
  const fd = openSync(path, 'w');
  for (let off = 0; off < volSize; off += 8 * MiB) writeSync(fd, pool.subarray(0, Math.min(8 * MiB, volSize - off)));
  closeSync(fd);
}

/** Seconds from spawning `cmd` until qemu-io has read the first 4 KiB of `uri` (retrying until it listens). */
async function firstByte(cmd, args, uri) {
  const t0 = process.hrtime.bigint();
  const child = spawn(cmd, args, { stdio: 'ignore' });
  try {
    for (;;) {
      const r = spawnSync('qemu-io', ['-f', 'raw', '-r', '-c', 'read 0 4096', uri], { encoding: 'utf8' });
      if (r.status === 0 && /read 4096\/4096/.test(r.stdout)) break;
      if (child.exitCode !== null) throw new Error(`${cmd} exited ${child.exitCode}`);
      if (Number(process.hrtime.bigint() - t0) / 1e9 > 30) throw new Error(`${cmd}: no first byte in 30 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return { s: Number(process.hrtime.bigint() - t0) / 1e9 };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
  }
}

const emit = (o) => console.log(JSON.stringify({ area: 'restore', higher_is_better: true, ...o }));
const fix = (x) => Number(x.toFixed(3));

try {
  const img = join(dir, 'image.raw');
  writeImage(img);
  for (const jbytes of journals) {
    const store = join(dir, 'store');
    const stream = join(dir, 'journal.drj');
    writeJournal(stream, jbytes);
    must(bin('dr-journal'), ['append', store, stream, '-q']);
    rmSync(stream);
    const jm = `${jbytes / MiB} MiB journal`;
    const out = join(dir, 'out.img');
    const fresh = () => {
      rmSync(out, { force: true });
      for (const f of readdirSync(dir)) if (f.startsWith('.out.img')) rmSync(join(dir, f), { force: true });
    };
    let allocated = 0;
    const restoreRun = () => {
      const r = timed(bin('dr-restore'), [store, '--at', 'mark:near-end', '--out', out, '-q']);
      allocated = Number(must('stat', ['-c', '%b*%B', out]).stdout.trim().split('*').reduce((x, y) => x * y));
      return r;
    };
    const cpRun = () => timed('sh', ['-c', `cp ${img} ${out} && sync ${out}`]);
    for (const cache of ['cold', 'warm']) {
      const runs = alternate(rounds, {
        prepare: () => {
          fresh();
          if (cache === 'cold') evict(store, img);
          else warm(store, img);
        },
        drkit: restoreRun,
        peer: cpRun,
      });
      fresh();
      const d = median(runs.drkit);
      const p = median(runs.peer);
      emit({
        name: `restore ${volSize / MiB} MiB volume near the end of a ${jm} (--out FILE, ${cache})`, drkit_s: fix(d.s), peer: 'cp IMG FILE && sync FILE',
        peer_s: fix(p.s), ratio: fix(p.s / d.s), drkit_peak_mib: Math.max(...runs.drkit.map((r) => r.peak)), bytes: volSize,
        note: `${volSize / MiB} MiB volume, ${jm} of random 4 KiB writes (${Math.round(allocated / MiB)} MiB of the restored file allocated); `
          + `store and IMG ${cache === 'cold' ? 'dropped from the page cache' : 'read into the page cache'} before every run; median of ${rounds} alternating runs each `
          + `(drkit ${spread(runs.drkit)} s, cp ${spread(runs.peer)} s); CPU (user+sys) of the medians drkit ${d.cpu.toFixed(2)} s, cp ${p.cpu.toFixed(2)} s`,
      });
    }
    const note = `${volSize / MiB} MiB volume, ${jm} of random 4 KiB writes; page cache warm`;
    warm(store, img);

    // through a pipe: GNU tar reads nothing when its output is /dev/null
    const tarRuns = alternate(Math.min(rounds, 2), {
      prepare: () => warm(store, img),
      drkit: () => timed('sh', ['-c', `${bin('dr-restore')} ${store} --at mark:near-end --tar -q | cat > /dev/null`]),
      peer: () => timed('sh', ['-c', `tar -cf - -C ${dir} image.raw | cat > /dev/null`]),
    });
    const tar = median(tarRuns.drkit);
    const tarPeer = median(tarRuns.peer);
    emit({
      name: `group tar of a ${volSize / MiB} MiB volume near the end of a ${jm} (--tar | cat, with sha256)`, drkit_s: fix(tar.s), peer: 'tar -cf - IMG | cat',
      peer_s: fix(tarPeer.s), ratio: fix(tarPeer.s / tar.s), drkit_peak_mib: tar.peak, bytes: volSize, note: `peak memory is of the shell and dr-restore; ${note}; CPU (user+sys) drkit ${tar.cpu.toFixed(2)} s, tar ${tarPeer.cpu.toFixed(2)} s`,
    });

    const sock = join(dir, 'nbd.sock');
    const fb = [];
    const fbPeer = [];
    for (let r = 0; r < rounds; r++) {
      fb.push(await firstByte(bin('dr-restore'), [store, '--serve', '--socket', sock, '--at', 'mark:near-end', '-q'], `nbd+unix:///mark:near-end?socket=${sock}`));
      fbPeer.push(await firstByte('qemu-nbd', ['-r', '-f', 'raw', '-k', sock, '-x', 'img', img], `nbd+unix:///img?socket=${sock}`));
    }
    const fbBest = Math.min(...fb.map((x) => x.s));
    const fbPeerBest = Math.min(...fbPeer.map((x) => x.s));
    emit({
      name: `serve: start to first 4 KiB read over NBD, ${jm}`, drkit_s: fix(fbBest), peer: 'qemu-nbd -r IMG', peer_s: fix(fbPeerBest),
      ratio: fix(fbPeerBest / fbBest), bytes: BLOCK, note: `best of ${rounds} each; includes process start and qemu-io connect retries (10 ms); ${note}`,
    });
    rmSync(store, { recursive: true, force: true });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
