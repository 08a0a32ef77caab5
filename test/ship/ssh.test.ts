// dr-ship through a real OpenSSH server on 127.0.0.1: a journal shipped with
// `ssh -T ... dr-ship receive DIR`, the connection killed mid-stream, compression,
// a receiver of another group, a hanging receiver.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeJournal, digestJournal, journalCat, catRecords, volumeDigest } from '../helpers/ship-journal.js';
import { DR_SHIP, childPids, killLeftovers, pidsByArgs, run, sleepMs, waitFor } from '../helpers/ship-run.js';

let sshd: Sshd;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'drkit-ship-'));
t.before(async () => {
  sshd = await startSshd();
});
t.teardown(async () => {
  killLeftovers();
  await sshd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const via = (dir: string) => [...sshd.ssh, sshd.remote(DR_SHIP, 'receive', dir)];

t.test('a journal survives the ssh connection being killed three times mid-stream', async (t) => {
  const src = path.join(tmp, 'kill-src');
  const dst = path.join(tmp, 'kill-dst');
  const made = await makeJournal(src, { writes: 256, writeSize: 32 * 1024 });
  // 8 MiB at 4 MiB/s: about two seconds on the wire; the ssh client is killed when
  // the acknowledged seq passes 1/4, 1/2 and 3/4 of the journal.
  const r = run(DR_SHIP, ['send', src, '--rate', '4M', '--json', '--status-interval', '50ms', '--', ...via(dst)]);
  const pid = r.child.pid!;
  const acked = () => Number(r.events().filter((e) => e.event === 'status').at(-1)?.acked_seq ?? 0);
  let kills = 0;
  for (const part of [0.25, 0.5, 0.75]) {
    await waitFor(`acks past ${part} of the journal`, () => acked() >= made.lastSeq * part || r.child.exitCode !== null, 30_000);
    const ssh = childPids(pid, 'ssh');
    if (ssh.length === 0) break; // already done
    for (const p of ssh) process.kill(p, 'SIGKILL');
    kills++;
  }
  const res = await r.done;
  t.equal(res.code, 0, 'send exits 0 once everything is acknowledged');
  t.equal(kills, 3, 'killed ssh mid-stream three times');
  t.match(res.stderr, /reconnecting in/, 'the sender says it reconnects');
  const connected = r.events().filter((e) => e.event === 'connected');
  t.ok(connected.length >= kills + 1, 'one connection per kill, plus the first');
  t.ok(connected.slice(1).some((e) => Number(e.receiver_seq) > 0), 'later connections resume after the receiver\'s durable seq');
  const a = await digestJournal(src);
  const b = await digestJournal(dst);
  t.equal(b.lastSeq, made.lastSeq, 'same last seq');
  t.equal(b.records, a.records, 'same number of records');
  t.equal(b.digest, a.digest, 'the same records, byte for byte');
  t.equal(b.groupId, a.groupId, 'same group');
  const catA = journalCat(src);
  const catB = journalCat(dst);
  t.ok(catRecords(catB).equals(catRecords(catA)), `dr-journal cat of both stores: the same bytes (${catA.length}), but for the header's creation time`);
  t.equal(await volumeDigest(dst), await volumeDigest(src), 'the volume at the latest point is the same on both sides');

  // Shipping again finds the receiver caught up and sends nothing.
  const again = await run(DR_SHIP, ['send', src, '--once', '--json', '--', ...via(dst)]).done;
  t.equal(again.code, 0, '--once on a caught-up replica exits 0');
  const done = again.stderr.split('\n').filter((l) => l.includes('"event":"done"')).map((l) => JSON.parse(l));
  t.equal(done[0]?.bytes, 0, 'nothing was sent again');
});

t.test('--compress: brotli frames negotiated, the same records in about half the bytes on the wire', async (t) => {
  const src = path.join(tmp, 'z-src');
  const dst = path.join(tmp, 'z-dst');
  // 20 MiB: the receiver reuses its decoding memory every 8 MiB (after those bytes are written)
  await makeJournal(src, { writes: 320, writeSize: 64 * 1024 });
  const r = run(DR_SHIP, ['send', src, '--compress', '--json', '--', ...via(dst)]);
  const res = await r.done;
  t.equal(res.code, 0, 'exit 0');
  const conn = r.events().find((e) => e.event === 'connected');
  t.equal(conn?.compress, 'brotli', 'brotli negotiated');
  const done = r.events().find((e) => e.event === 'done')!;
  t.ok(Number(done.wire_bytes) < Number(done.bytes) * 0.6, `half-zero data shrinks on the wire (${done.wire_bytes} of ${done.bytes} bytes)`);
  t.equal((await digestJournal(dst)).digest, (await digestJournal(src)).digest, 'the same records arrive');
});

t.test('a receiving store of another group: DR_GROUP_MISMATCH, no retry loop', async (t) => {
  const src = path.join(tmp, 'g-src');
  const dst = path.join(tmp, 'g-dst');
  await makeJournal(src, { writes: 8, writeSize: 4096 });
  const other = await makeJournal(dst, { writes: 3, writeSize: 4096 });
  const started = Date.now();
  const r = run(DR_SHIP, ['send', src, '--json', '--', ...via(dst)]);
  const res = await r.done;
  t.equal(res.code, 2, 'exit 2');
  t.match(res.stderr, /dr-ship: error: receiver: .*volume group.*\(DR_GROUP_MISMATCH\)/, 'one clear error line with the code');
  t.notMatch(res.stderr, /reconnecting/, 'not retried');
  t.equal(r.events().filter((e) => e.event === 'connected').length, 1, 'a single connection');
  t.ok(Date.now() - started < 10_000, 'gives up at once');
  const d = await digestJournal(dst);
  t.equal(d.lastSeq, other.lastSeq, 'the receiving store is untouched');
});

t.test('a hanging receiver: --timeout abandons the connection and the sender resumes', async (t) => {
  const src = path.join(tmp, 'h-src');
  const dst = path.join(tmp, 'h-dst');
  await makeJournal(src, { writes: 96, writeSize: 32 * 1024 });
  const r = run(DR_SHIP, ['send', src, '--rate', '1M', '--timeout', '2s', '--json', '--', ...via(dst)]);
  await waitFor('the first ack', () => r.events().some((e) => e.event === 'status' && Number(e.acked_seq) > 0)).catch((err) => {
    throw new Error(`${err.message}; stderr: ${r.stderr().slice(-2000)}`);
  });
  const receivers = pidsByArgs('receive', dst);
  t.ok(receivers.length >= 1, 'found the remote receiver process');
  for (const p of receivers) process.kill(p, 'SIGSTOP');
  await waitFor('the timeout', () => /DR_TIMEOUT/.test(r.stderr()), 15_000);
  for (const p of receivers) process.kill(p, 'SIGCONT');
  const res = await r.done;
  t.equal(res.code, 0, 'completes after the receiver is gone');
  t.match(res.stderr, /acknowledged nothing for .* \(DR_TIMEOUT\); reconnecting/, 'timeout reported, then reconnect');
  t.equal((await digestJournal(dst)).digest, (await digestJournal(src)).digest, 'the same records arrive');
});

t.test('--rate is honoured within 10%', async (t) => {
  const src = path.join(tmp, 'r-src');
  const dst = path.join(tmp, 'r-dst');
  await makeJournal(src, { writes: 96, writeSize: 64 * 1024 }); // 6 MiB
  const rate = 3 * 1024 * 1024;
  const r = run(DR_SHIP, ['send', src, '--rate', '3M', '--json', '--', ...via(dst)]);
  const res = await r.done;
  t.equal(res.code, 0, 'exit 0');
  const connected = r.events().find((e) => e.event === 'connected')!;
  const done = r.events().find((e) => e.event === 'done')!;
  const seconds = (Date.parse(String(done.time)) - Date.parse(String(connected.time))) / 1000;
  const achieved = Number(done.wire_bytes) / seconds;
  t.ok(Math.abs(achieved - rate) / rate <= 0.1, `achieved ${(achieved / 1048576).toFixed(2)} MiB/s for a limit of 3 MiB/s (${seconds.toFixed(2)} s)`);
});

t.test('--once: 0 caught up, 1 RPO breached (hook run once, with details), 3 unreachable', async (t) => {
  const src = path.join(tmp, 'o-src');
  const dst = path.join(tmp, 'o-dst');
  // records written an hour ago: the lag is an hour until they are acknowledged
  await makeJournal(src, { writes: 20, writeSize: 4096, startMicros: (Date.now() - 3_600_000) * 1000 });
  const hookOut = path.join(tmp, 'hook.env');
  const hook = `env | grep ^DR_RPO_ | sort >> ${hookOut}`;
  const r = run(DR_SHIP, ['send', src, '--once', '--rpo', '10m', '--on-rpo-breach', hook, '--json', '--', ...via(dst)]);
  const res = await r.done;
  t.equal(res.code, 1, 'exit 1: the RPO was breached');
  t.match(res.stderr, /warning: RPO breached: lag 1h\d+m is over the target 10m0s \(acknowledged up to seq 0; oldest unacknowledged record seq 1 from /, 'warning on stderr');
  t.match(res.stderr, /dr-ship: error: the RPO target was exceeded during this run \(1 breach, lag up to 1h\d+m\); everything was shipped, acknowledged up to seq 21 \(DR_RPO_BREACH\)\n$/, 'and a last line for cron');
  const breach = r.events().filter((e) => e.event === 'rpo-breach');
  t.equal(breach.length, 1, 'one breach event');
  t.ok(r.events().some((e) => e.event === 'rpo-recovered'), 'a recovery event once caught up');
  const { readFileSync } = await import('node:fs');
  const env = readFileSync(hookOut, 'utf8');
  t.equal(env.match(/^DR_RPO_EVENT=breach$/gm)?.length, 1, 'the hook ran once');
  t.match(env, /^DR_RPO_TARGET_MS=600000$/m, 'target in the environment');
  t.match(env, /^DR_RPO_OLDEST_SEQ=1$/m, 'oldest unacknowledged record in the environment');
  t.match(env, /^DR_RPO_LAG_MS=36\d{5}$/m, 'lag in the environment');

  const ok = await run(DR_SHIP, ['send', src, '--once', '--rpo', '10m', '--', ...via(dst)]).done;
  t.equal(ok.code, 0, 'exit 0: caught up, nothing unacknowledged');

  const unreachable = await run(DR_SHIP, ['send', src, '--once', '--retries', '1', '--',
    ...sshd.ssh.map((a) => (a === String(sshd.port) ? '1' : a)), sshd.remote(DR_SHIP, 'receive', dst)]).done;
  t.equal(unreachable.code, 3, 'exit 3: peer unreachable');
  t.match(unreachable.stderr, /dr-ship: error: peer unreachable after 2 attempts: .*\(DR_PEER\)/, 'says so in one line');
});
