// dr-journal / journal store benchmarks, each drkit figure next to its peer in the same run:
//   1. append: `dr-journal append DIR < stream` (durable at every FLUSH: an fdatasync after
//      each, group commit) vs `cat stream > file && sync file` of the same bytes on the same
//      disk, BENCH_ROUNDS (default 5) alternating rounds, the median of each; at the full
//      size also a diagnostic row, the floor of any Node append (scripts/lib/append-floor.mjs)
//   2. cat --from a seq near the end of the journal vs near the start: time to the first byte
//   3. restore at the latest point of a 1 GiB (BENCH_SIZE_MIB) volume through the point-in-time
//      reader (writing an image file) vs `cp` of an image of the same size
//   4. peak memory (RSS) of append, cat and restore as the journal grows (1/4 size, size, and
//      4x size when BENCH_GROW=1)
// The stream: BENCH_SIZE_MIB MiB of random 4 KiB writes to a volume of BENCH_SIZE_MIB MiB,
// a FLUSH every 1024 writes. Prints one NDJSON line per figure.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, fsyncSync, statSync, statfsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamWriter } from '../../dist/format/codec.js';
import { median, must, timed, streamFile, warm } from '../lib/bench.mjs';

const MiB = 1 << 20;
const root = new URL('../../', import.meta.url).pathname;
const BIN = join(root, 'bin', 'dr-journal');
const FLOOR = join(root, 'scripts', 'lib', 'append-floor.mjs');

// ------------------------------------------------------------------ restore child mode
if (process.argv[2] === '--restore-child') {
  const [, , , dir, out] = process.argv;
  const { JournalStore } = await import('../../dist/store/index.js');
  const store = await JournalStore.open(dir);
  const t0 = process.hrtime.bigint();
  const pit = await store.pointInTime(store.lastSeq);
  const ready = Number(process.hrtime.bigint() - t0) / 1e9;
  const fd = openSync(out, 'w');
  const v = pit.volumes[0];
  const chunk = 4 * MiB;
  let first = null;
  for (let off = 0; off < v.size; off += chunk) {
    const b = await pit.read(0, off, Math.min(chunk, v.size - off));
    if (first === null) first = Number(process.hrtime.bigint() - t0) / 1e9;
    let done = 0;
    while (done < b.length) done += writeSync(fd, b, done, b.length - done, off + done);
  }
  closeSync(fd);
  await pit.release();
  process.stderr.write(JSON.stringify({ ready, first }) + '\n');
  process.exit(0);
}

const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
// 5: a run of either side varies by 5-15% on this VM from one minute to the next
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'drkit-bench-journal-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));


/** Run under /usr/bin/time: seconds and peak RSS in MiB. */

function statfsRoom(path, bytes) {
  try {
    const st = statfsSync(path);
    return st.bavail * st.bsize >= bytes;
  } catch {
    return false;
  }
}

function sh(script) {
  return ['sh', ['-c', script]];
}

function emit(o) {
  process.stdout.write(JSON.stringify({ area: 'journal', ...o }) + '\n');
}

/** A stream of `bytes` MiB of random 4 KiB writes over a volume of `volSize`. */
function writeStream(path, bytes, volSize) {
  const w = new StreamWriter({ groupId: randomBytes(16), firstSeq: 1 });
  const file = streamFile(path);
  const put = (parts) => file.put(parts);
  const pool = randomBytes(8 * MiB + 4096);
  put([w.start()]);
  put(w.volume({ name: 'vol', size: volSize, blockSize: 4096, id: randomBytes(16) }));
  const blocks = volSize / 4096;
  const n = Math.floor(bytes / (4096 + 48));
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const block = x % blocks;
    const at = (i * 4096 * 13) % (8 * MiB);
    put(w.record({ type: 'write', volume: 0, offset: block * 4096, data: pool.subarray(at, at + 4096) }).parts);
    if (i % 1024 === 1023) put(w.record({ type: 'flush' }).parts);
  }
  put(w.end());
  file.close(true);
  return n;
}

/** Seconds until the first byte of `dr-journal cat DIR --from SEQ` arrives. */
function firstByte(store, from) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [BIN, 'cat', store, '--from', String(from)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let got = false;
    child.stdout.once('data', () => {
      got = true;
      resolve(Number(process.hrtime.bigint() - t0) / 1e9);
      child.kill('SIGKILL');
    });
    child.on('exit', (c) => {
      if (!got) reject(new Error(`cat exited ${c} without output`));
    });
  });
}

async function run(bytes, full) {
  const stream = join(dir, `s${bytes}.drj`);
  const n = writeStream(stream, bytes, size);
  const store = join(dir, `j${bytes}`);
  const copy = join(dir, 'copy.drj');
  // Alternating rounds, each output removed right before the next run of either: on this
  // VM, dirtying page cache in memory the guest gave back to the host costs system time,
  // so a lone run of each mostly measures which one ran after a large file was deleted.
  const peers = [];
  const apps = [];
  const floors = [];
  for (let round = 0; round < ROUNDS; round++) {
    rmSync(store, { recursive: true, force: true });
    warm(stream);
    peers.push(timed(...sh(`cat '${stream}' > '${copy}' && sync '${copy}'`)));
    rmSync(copy, { force: true });
    if (full) {
      // the diagnostic floor (scripts/lib/append-floor.mjs), in the same rounds
      warm(stream);
      floors.push(timed(process.execPath, [FLOOR, copy], { stdinPath: stream }));
      rmSync(copy, { force: true });
    }
    warm(stream);
    apps.push(timed(process.execPath, [BIN, 'append', store], { stdinPath: stream }));
  }
  const peer = median(peers);
  const app = median(apps);
  const mib = Math.round(bytes / MiB);
  emit({
    name: `append ${mib} MiB of 4 KiB writes`, drkit_s: +app.s.toFixed(3), peer: 'cat > file && sync file', peer_s: +peer.s.toFixed(3),
    ratio: +(peer.s / app.s).toFixed(2), higher_is_better: true, drkit_peak_mib: Math.max(...apps.map((a) => a.peak)), bytes: statSync(stream).size,
    note: `${n} writes, FLUSH every 1024 (each followed by an fdatasync, group commit), 64 MiB segments; median of ${ROUNDS} alternating rounds (drkit ${apps.map((a) => a.s.toFixed(2)).join('/')} s, peer ${peers.map((a) => a.s.toFixed(2)).join('/')} s); CPU s drkit ${app.cpu} vs peer ${peer.cpu}; target ratio >= 0.8`,
  });
  if (full) {
    const floor = median(floors);
    emit({
      name: `append ${mib} MiB (diagnostic: the floor, no decoding, checks or index)`, drkit_s: +floor.s.toFixed(3), peer: 'cat > file && sync file', peer_s: +peer.s.toFixed(3),
      ratio: +(peer.s / floor.s).toFixed(2), higher_is_better: true, drkit_peak_mib: Math.max(...floors.map((a) => a.peak)),
      note: `not drkit: scripts/lib/append-floor.mjs, the least an append in Node does (read and CRC-32 every byte on a worker thread, write on the thread pool, fdatasync every 4 MiB, group commit), in the same rounds as the rows above (${floors.map((a) => a.s.toFixed(2)).join('/')} s); what dr-journal append spends beyond it is decoding, checks, the index and segments; CPU s ${floor.cpu}`,
    });
  }
  rmSync(stream, { force: true });
  // cat from near the end vs near the start: time to first byte
  const ends = [];
  const starts = [];
  for (let i = 0; i < 3; i++) {
    ends.push(await firstByte(store, n - 100));
    starts.push(await firstByte(store, 2));
  }
  const end = Math.min(...ends);
  const start = Math.min(...starts);
  emit({
    name: `cat --from near the end of a ${mib} MiB journal: time to first byte`, drkit_s: +end.toFixed(3), peer: 'cat --from 2 (near the start)',
    peer_s: +start.toFixed(3), ratio: +(start / end).toFixed(2), higher_is_better: true, bytes,
    note: 'equal times mean the seek does not depend on the position (process start included)',
  });
  const catMem = timed(...sh(`'${process.execPath}' '${BIN}' cat '${store}' > /dev/null`));
  emit({ name: `cat of a ${mib} MiB journal (peak memory)`, drkit_s: +catMem.s.toFixed(3), drkit_peak_mib: catMem.peak, bytes, peer: null, peer_s: null, ratio: null, higher_is_better: false, note: 'memory must stay flat as the journal grows' });
  if (full) {
    // restore at latest vs cp of an image of the same size
    const img = join(dir, 'img.raw');
    must('sh', ['-c', `head -c ${size} /dev/urandom > '${img}'`]);
    // both outputs on tmpfs when it has room: compares the restore engine with cp, not two writers fighting over the disk
    const outDir = process.env.BENCH_OUT_DIR ?? (statfsRoom('/dev/shm', 2 * size + 64 * MiB) ? '/dev/shm' : dir);
    const out = join(outDir, `drkit-bench-restored-${process.pid}.img`);
    const cpOut = join(outDir, `drkit-bench-cp-${process.pid}.img`);
    // 3 alternating rounds, each output removed before the next run: a lone cp onto fresh
    // tmpfs memory took 0.5 s in one run and 2.1 s in another
    const cps = [];
    const ress = [];
    for (let round = 0; round < 3; round++) {
      warm(img);
      cps.push(timed('cp', [img, cpOut]));
      rmSync(cpOut, { force: true });
      ress.push(timed(process.execPath, [new URL(import.meta.url).pathname, '--restore-child', store, out]));
      rmSync(out, { force: true });
    }
    const cp = median(cps);
    const res = median(ress);
    const detail = JSON.parse(res.stderr.trim().split('\n').pop());
    emit({
      name: `restore latest of a ${size / MiB} MiB volume from a ${mib} MiB journal of random 4 KiB writes`, drkit_s: +res.s.toFixed(3), peer: 'cp of an image',
      peer_s: +cp.s.toFixed(3), ratio: +(cp.s / res.s).toFixed(2), higher_is_better: true, drkit_peak_mib: Math.max(...ress.map((r) => r.peak)), bytes: size,
      note: `point-in-time reader (pread per block run), output to ${outDir}: block map ready in ${detail.ready.toFixed(3)}s, first 4 MiB read at ${detail.first.toFixed(3)}s; median of 3 alternating rounds (drkit ${ress.map((r) => r.s.toFixed(2)).join('/')} s, cp ${cps.map((r) => r.s.toFixed(2)).join('/')} s); CPU s drkit ${res.cpu} vs cp ${cp.cpu}; target ratio >= 0.67 (1.5x cp)`,
    });
    rmSync(img, { force: true });
  } else {
    const out = join(dir, 'restored.img');
    const res = timed(process.execPath, [new URL(import.meta.url).pathname, '--restore-child', store, out]);
    emit({ name: `restore latest from a ${mib} MiB journal (peak memory)`, drkit_s: +res.s.toFixed(3), drkit_peak_mib: res.peak, bytes: size, peer: null, peer_s: null, ratio: null, higher_is_better: false, note: 'memory: block map bounded by the volume size' });
    rmSync(out, { force: true });
  }
  rmSync(store, { recursive: true, force: true });
}

await run(size / 4, false);
await run(size, true);
if (process.env.BENCH_GROW === '1') await run(size * 4, false);
