// Broken transport: dr-ship send over a real sshd on loopback, rate-limited so the
// breaks land mid-stream, broken at seeded random instants in three ways, in turn:
// the ssh client killed (kill -9), the receiving dr-ship killed (kill -9, on the far
// side), the sending dr-ship killed (kill -9, then started again). In between, more
// records arrive in the source store. The end state must be identical to a clean
// run over a plain pipe: same last seq, the records of `dr-journal cat` of both
// stores byte for byte (the header and END of a cat carry the time of the cat), a
// valid store, and every mark restoring to its reference.
// Replay: DRKIT_RELIABILITY_SEED=<seed in the failure message>.
import t from 'tap';
import { join } from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { childPids, pidsByArgs } from '../helpers/ship-run.js';
import { makeWorkload } from '../helpers/workload.js';
import { figures, killLeftovers, rand, replay, rounds, runBin, seedFor, sleep, start, tempDir, waitFor, BASE_SEED, type Proc } from '../helpers/reliability-common.js';
import { BIN } from '../helpers/run.js';
import { catRecords, checkMarks, lastSeq, verifyJournal } from '../helpers/reliability-store.js';

let sshd: Sshd | undefined;
t.before(async () => {
  sshd = await startSshd();
});
t.teardown(async () => {
  killLeftovers();
  await sshd?.stop();
});
t.setTimeout(900_000); // the suite's machine may be busy: the per-step limits catch hangs
const f = figures(t, 'ship-breaks');

const events = (p: Proc) =>
  p.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return {};
    }
  });

t.test('ssh, receiver and sender killed at random points: the same journal as a clean run', async (t) => {
  const seed = seedFor('ship');
  const r = rand(seed);
  const w = makeWorkload({ seed, volumes: [{ name: 'disk', size: 8 << 20, blockSize: 4096 }], records: 900, markEvery: 150, maxWrite: 32 * 1024 });
  const work = tempDir(t, 'drkit-rel-ship-');
  const src = join(work, 'src');
  const dst = join(work, 'dst');
  const clean = join(work, 'clean');
  // the source store grows in parts while shipping goes on
  const parts = 4;
  const cut = (i: number) => w.firstSeq + Math.floor((i * w.records.length) / parts);
  let part = 0;
  const appendPart = async () => {
    const from = cut(part);
    const to = cut(part + 1) - 1;
    const a = await runBin('dr-journal', ['append', src, '--segment-size', '512K'], { input: w.streamRange(from, to, { end: to === w.lastSeq }) });
    t.ok(a.code === 0 || a.code === 3, `part ${part + 1} appended to the source ${a.stderr.trim()}`);
    part++;
  };
  await appendPart();
  const remote = (dir: string) => [...sshd!.ssh, sshd!.remote(`${BIN}dr-ship`, 'receive', dir)];
  const breaks = rounds(21, 120);
  // slow enough on the wire that the data lasts for every break (about a second each)
  const rate = Math.max(32 * 1024, Math.floor(w.stream.length / (breaks * 1.3)));
  const startSender = () => start('dr-ship', ['send', src, '--rate', String(rate), '--json', '--status-interval', '200ms', '--timeout', '10s', '--', ...remote(dst)], { stdin: 'ignore' });

  const kinds = ['ssh', 'receiver', 'sender'] as const;
  const history: string[] = [];
  let sender = startSender();
  let seenConnections = 0;
  for (let b = 0; b < breaks; b++) {
    const kind = kinds[b % 3]!;
    const why = () => replay('ship', `break ${b + 1} (${kind}); ${history.join(' ')}`);
    // wait for a fresh connection (or for the sender to finish: then more records arrive)
    for (;;) {
      const connected = events(sender).filter((e) => e.event === 'connected').length;
      if (connected > seenConnections) {
        seenConnections = connected;
        break;
      }
      if (sender.exited) {
        const res = await sender.done;
        t.equal(res.code, 0, `the sender exits 0 once caught up ${res.stderr.slice(-300)} ${why()}`);
        if (part < parts) await appendPart();
        else break;
        sender = startSender();
        seenConnections = 0;
        continue;
      }
      await sleep(20);
    }
    if (sender.exited) break; // nothing left to ship
    const at = 30 + Math.floor(r() * 700);
    await sleep(at);
    if (kind === 'ssh') {
      const pids = childPids(sender.pid, 'ssh');
      for (const p of pids) process.kill(p, 'SIGKILL');
      if (pids.length) f.breaks++;
      history.push(`ssh@${at}ms:${pids.length}`);
    } else if (kind === 'receiver') {
      const pids = pidsByArgs('receive', dst);
      for (const p of pids) process.kill(p, 'SIGKILL');
      if (pids.length) {
        f.breaks++;
        f.kills++;
      }
      history.push(`recv@${at}ms:${pids.length}`);
    } else {
      const res = await sender.kill9();
      if (res.signal === 'SIGKILL') {
        f.breaks++;
        f.kills++;
      }
      history.push(`send@${at}ms:${res.signal ?? res.code}`);
      // its ssh client goes when its pipe closes; start again, as cron or systemd would
      if (part < parts && r() < 0.5) await appendPart();
      sender = startSender();
      seenConnections = 0;
    }
    // the receiving store is valid at every break (a cut never leaves a torn record visible)
    if (b % 4 === 3) {
      await sleep(100);
      const v = await verifyJournal(dst).catch((e: Error) => e.message);
      // a receiver may hold the lock at this instant; only corruption is a failure
      t.notMatch(String(v ?? ''), /DR_STORE_CORRUPT|DR_BAD_CHECKSUM|DR_SEQ_GAP/, `the receiving store is valid between breaks ${why()}`);
    }
  }
  while (part < parts) await appendPart();
  // let the last sender finish (it resumes after the receiver's durable seq)
  if (sender.exited) sender = startSender();
  const timer = setTimeout(() => sender.child.kill('SIGKILL'), 120_000);
  const res = await sender.done;
  clearTimeout(timer);
  const why = replay('ship', history.join(' '));
  t.equal(res.code, 0, `the last sender exits 0, caught up ${res.stderr.slice(-400)} ${why}`);
  t.ok(f.breaks >= Math.floor(breaks * 0.9), `${f.breaks} breaks done ${why}`);

  // the clean run, over a plain pipe
  const c = await runBin('dr-ship', ['send', src, '--', `${BIN}dr-ship`, 'receive', clean], { timeoutMs: 120_000 });
  t.equal(c.code, 0, `the clean run ${c.stderr.trim()}`);
  const [ls, ld, lc] = [await lastSeq(src), await lastSeq(dst), await lastSeq(clean)];
  t.equal(ld, lc, `same last seq as the clean run ${why}`);
  t.equal(ls, w.lastSeq, 'the source holds the whole workload');
  const [cs, cd, cc] = [await catRecords(src), await catRecords(dst), await catRecords(clean)];
  f.bytesCompared += cd.length + cs.length;
  const same = cd.equals(cc) && cd.equals(cs);
  if (!same) f.lost++;
  t.ok(same, `dr-journal cat of the broken run's store is byte-identical to the clean run's and the source's (${cd.length} bytes of records) ${why}`);
  t.equal(await verifyJournal(dst), null, `the receiving store is valid ${why}`);
  await checkMarks(t, f, dst, w, work, why);
  t.comment(`seed ${BASE_SEED}: ${history.join(' ')}`);
});
