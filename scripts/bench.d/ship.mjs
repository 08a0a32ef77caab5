// dr-ship: BENCH_SIZE_MIB (default 1024) MiB of journal through ssh on 127.0.0.1 (a real
// sshd), `dr-ship send DIR --once -- ssh ... dr-ship receive DIR2` (receiver appends,
// fdatasyncs and acknowledges) versus `cat SEGMENTS | ssh ... 'cat > FILE && sync FILE'` of
// the same segment bytes: the peer with the receiver's durability (the bytes on disk when
// the command returns), as `cat > file && sync file` is the peer of dr-journal append. The
// issue's literal peer, `cat > FILE` with no sync (its 1 GiB is written to disk after the
// clock stops), gets rows of its own. The data: 64 KiB writes, every other one random, the
// rest zeros ("half random, half zeros"). Figures:
//   1. plain (no compression)                    target >= 0.9x
//   2. --compress (brotli frames, zero blocks)   target > 1x
//   3. lag p50 / p99 under a steady write load: a writer appends 64 KiB writes at
//      BENCH_SHIP_LOAD_MIB (default 16) MiB/s for BENCH_SHIP_LOAD_S (default 20) s, synced
//      every 50 ms, while `dr-ship send --follow` ships them; lag sampled every 100 ms from
//      --json status lines (the age of the oldest unacknowledged record).
// Each set runs BENCH_ROUNDS times (default 5) interleaved; each figure is the median run
// (a sync's cost varies from run to run here, so one lucky run must not decide). Peak memory
// of dr-ship send via /usr/bin/time -f %M.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startSshd } from '../lib/sshd.mjs';
import { median, must, timed } from '../lib/bench.mjs';

const MiB = 1 << 20;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const loadMiB = Number(process.env.BENCH_SHIP_LOAD_MIB ?? 16);
const loadSeconds = Number(process.env.BENCH_SHIP_LOAD_S ?? 20);
const root = new URL('../../', import.meta.url).pathname;
const drShip = join(root, 'bin/dr-ship');
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-ship-'));
const log = (m) => process.stderr.write(`bench ship: ${m}\n`);
const remotePath = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`;

// The writer: appends 64 KiB writes (odd ones zero) through the store API, in its own process.
const writerJs = join(dir, 'writer.mjs');
writeFileSync(writerJs, `
import { randomBytes } from 'node:crypto';
import { JournalStore } from ${JSON.stringify(join(root, 'dist/store/index.js'))};
import { StreamWriter } from ${JSON.stringify(join(root, 'dist/format/codec.js'))};
const [dirArg, totalArg, rateArg, groupHex] = process.argv.slice(2);
const total = Number(totalArg), rate = Number(rateArg); // bytes, bytes/s (0 = as fast as possible)
const store = await JournalStore.open(dirArg, { create: true });
const a = await store.appender();
const w = new StreamWriter({ groupId: Buffer.from(groupHex, 'hex'), firstSeq: a.nextSeq });
const vol = { type: 'volume', seq: 0, time: 0, index: 0, blockSize: 4096, size: 4 * 1024 ** 3, id: Buffer.alloc(16, 1), name: 'disk0' };
a.begin(w.header, store.volumes.length ? store.volumes : [vol]);
const K = 64 * 1024, pool = randomBytes(64 * 1024 * 1024), zero = Buffer.alloc(K);
const t0 = performance.now();
let lastSync = t0;
for (let i = 0, n = 0; n < total; i++, n += K) {
  const data = i % 2 ? zero : pool.subarray(((i * 389) % 1024) * K, ((i * 389) % 1024) * K + K);
  const { record, parts } = w.record({ type: 'write', volume: 0, offset: (i * K) % (4 * 1024 ** 3), data });
  a.append(record, parts);
  if (rate > 0) {
    const due = t0 + (n / rate) * 1000;
    if (performance.now() - lastSync >= 50) { await a.sync(); lastSync = performance.now(); }
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  }
}
await a.sync();
await a.close();
await store.close();
`);



const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

const sshd = await startSshd();
try {
  const ssh = sshd.ssh;
  const group = randomBytes(16).toString('hex');
  const src = join(dir, 'src');
  log(`writing a ${size / MiB} MiB journal (64 KiB writes, half random, half zeros)`);
  must(process.execPath, [writerJs, src, String(size), '0', group]);
  const segDir = join(src, 'segments');
  const segments = readdirSync(segDir).filter((f) => f.endsWith('.drj')).sort().map((f) => join(segDir, f));
  const segBytes = segments.reduce((n, f) => n + statSync(f).size, 0);
  // warm the page cache for both sides
  must('bash', ['-c', `cat ${segments.map(q).join(' ')} > /dev/null`]);

  const peer = (durable) => {
    const out = join(dir, 'peer.out');
    const far = durable ? `cat > ${out} && sync ${out}` : `cat > ${out}`;
    const cmd = `set -o pipefail; cat ${segments.map(q).join(' ')} | ${ssh.map(q).join(' ')} ${q(far)}`;
    const t0 = process.hrtime.bigint();
    must('bash', ['-c', cmd]);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (statSync(out).size !== segBytes) throw new Error('peer copy is short');
    rmSync(out);
    spawnSync('sync'); // the next run does not pay for this one's dirty pages
    return s;
  };
  const ship = (compress) => {
    const dst = join(dir, 'dst');
    rmSync(dst, { recursive: true, force: true });
    const recvTime = join(dir, 'receive.time');
    const remote = `env PATH=${remotePath} /usr/bin/time -o ${recvTime} -f '%U %S' ${drShip} receive ${dst}`;
    const r = timed(drShip, ['send', src, '--once', '--json', ...(compress ? ['--compress'] : []), '--', ...ssh, remote]);
    const [ru, rs] = readFileSync(recvTime, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
    const done = r.stderr.split('\n').filter((l) => l.includes('"event":"done"')).map((l) => JSON.parse(l))[0];
    const info = JSON.parse(must(process.execPath, ['-e', `
      import(${JSON.stringify(join(root, 'dist/store/index.js'))}).then(async ({ JournalStore }) => {
        const s = await JournalStore.open(${JSON.stringify(dst)}, { readOnly: true });
        console.log(JSON.stringify({ lastSeq: s.lastSeq }));
      });`]).stdout);
    rmSync(dst, { recursive: true, force: true });
    return { ...r, done, lastSeq: info.lastSeq, recvCpu: ru + rs };
  };

  const srcLast = JSON.parse(must(process.execPath, ['-e', `
    import(${JSON.stringify(join(root, 'dist/store/index.js'))}).then(async ({ JournalStore }) => {
      const s = await JournalStore.open(${JSON.stringify(src)}, { readOnly: true });
      console.log(JSON.stringify({ lastSeq: s.lastSeq }));
    });`]).stdout).lastSeq;

  // Diagnostic: the same sender into a far end that only stores the bytes it gets (a greeting
  // and an ack of the last seq given at once, then `cat > file`): what shipping costs before any
  // receiver work (decoding, checking, indexing, fdatasync), i.e. the ceiling of the ratio.
  const senderOnly = (compress) => {
    const out = join(dir, 'sender-only.out');
    const remote = `printf 'drship-receive 1 seq=0 group=new compress=brotli\\nack ${srcLast}\\n'; cat > ${out}`;
    const r = timed(drShip, ['send', src, '--once', ...(compress ? ['--compress'] : []), '--', ...ssh, remote]);
    rmSync(out, { force: true });
    spawnSync('sync');
    return r;
  };

  for (const compress of [false, true]) {
    const runs = [];
    const peers = [];
    const barePeers = [];
    const alones = [];
    for (let i = 0; i < rounds; i++) {
      const p = peer(true);
      peers.push({ s: p });
      const bare = peer(false);
      barePeers.push({ s: bare });
      const alone = senderOnly(compress);
      alones.push(alone);
      const d = ship(compress);
      if (d.lastSeq !== srcLast) throw new Error(`replica ends at seq ${d.lastSeq}, source at ${srcLast}`);
      log(`${compress ? '--compress' : 'plain'} round ${i + 1}: dr-ship ${d.s.toFixed(2)} s (${d.peak} MiB peak, ${(d.done.wire_bytes / MiB).toFixed(0)} MiB on the wire, CPU send+ssh ${d.cpu.toFixed(2)} s, receive ${d.recvCpu.toFixed(2)} s), into cat ${alone.s.toFixed(2)} s, cat|ssh with sync ${p.toFixed(2)} s, without ${bare.toFixed(2)} s`);
      runs.push(d);
    }
    const mid = median(runs);
    const midAlone = median(alones);
    const midPeer = median(peers).s;
    const midBarePeer = median(barePeers).s;
    // one row against one peer's median time
    const row = (name, r, peerName, peerS, note) => console.log(JSON.stringify({
      area: 'ship', name, drkit_s: +r.s.toFixed(3), peer: peerName, peer_s: +peerS.toFixed(3),
      ratio: +(peerS / r.s).toFixed(3), higher_is_better: true, drkit_peak_mib: r.peak, bytes: segBytes, note,
    }));
    const what = `${size / MiB} MiB over ssh, ${compress ? '--compress, half random/half zero' : 'plain'}`;
    const durablePeer = "cat segments | ssh 'cat > file && sync file'";
    const barePeer = "cat segments | ssh 'cat > file'";
    row(what, mid, durablePeer, midPeer,
      `receiver appends, fdatasyncs and acks; the peer syncs its file too (the same durability); ${(mid.done.wire_bytes / MiB).toFixed(0)} MiB on the wire; `
        + `CPU of dr-ship send + its ssh client ${mid.cpu.toFixed(1)} s, of dr-ship receive ${mid.recvCpu.toFixed(1)} s; load average ${loadavg()[0].toFixed(1)} on ${availableParallelism()} CPUs; median of ${rounds}`);
    row(`${what} (against a peer that does not sync)`, mid, barePeer, midBarePeer,
      `the same dr-ship run against the issue's literal peer, whose bytes are still in the page cache when it returns (written to disk after the clock stops); median of ${rounds}`);
    row(`${what} (diagnostic: dr-ship send into a far end that only does cat > file)`, midAlone, barePeer, midBarePeer,
      `no dr-ship receive: a greeting and an ack given at once, then cat > file (nothing decoded, checked, indexed or synced): what the sender and ssh cost; CPU of dr-ship send + its ssh client ${midAlone.cpu.toFixed(1)} s; median of ${rounds}`);
  }

  // Lag under a steady write load.
  const lsrc = join(dir, 'lag-src');
  const ldst = join(dir, 'lag-dst');
  must(process.execPath, [writerJs, lsrc, String(MiB), '0', group]);
  const remote = `env PATH=${remotePath} ${drShip} receive ${ldst}`;
  const sender = spawn(drShip, ['send', lsrc, '--follow', '--json', '--status-interval', '100ms', '--', ...ssh, remote], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  sender.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => sender.on('exit', r));
  await new Promise((r) => setTimeout(r, 3000));
  log(`steady load: ${loadMiB} MiB/s for ${loadSeconds} s while dr-ship send --follow ships`);
  const loadStart = Date.now();
  await new Promise((resolve, reject) => {
    const w = spawn(process.execPath, [writerJs, lsrc, String(loadMiB * MiB * loadSeconds), String(loadMiB * MiB), group], { stdio: 'inherit' });
    w.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`writer exit ${c}`))));
  });
  const loadEnd = Date.now();
  await new Promise((r) => setTimeout(r, 2000));
  sender.kill('SIGTERM'); // graceful: closes the stream, waits for the last ack
  await exited;
  const lags = err.split('\n').filter((l) => l.includes('"event":"status"')).map((l) => JSON.parse(l))
    .filter((e) => Date.parse(e.time) >= loadStart + 1000 && Date.parse(e.time) <= loadEnd).map((e) => e.lag_ms).sort((a, b) => a - b);
  const pct = (p) => lags[Math.min(lags.length - 1, Math.floor((p / 100) * lags.length))];
  for (const p of [50, 99]) {
    console.log(JSON.stringify({
      area: 'ship', name: `lag p${p} under ${loadMiB} MiB/s of writes (--follow)`, drkit_s: +(pct(p) / 1000).toFixed(3),
      peer: null, peer_s: null, ratio: null, higher_is_better: false, bytes: loadMiB * MiB * loadSeconds,
      note: `age of the oldest unacknowledged record, ${lags.length} samples every 100 ms; p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${lags.at(-1)} ms; load average ${loadavg()[0].toFixed(1)}`,
    }));
  }
} finally {
  await sshd.stop();
  rmSync(dir, { recursive: true, force: true });
}
