// dr-ship without the network: schedule files, SIGHUP reload, --follow, the
// receiver refusing what it does not understand, a stream on stdin resent from the
// bounded buffer after the receiver is killed, usage errors.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StreamWriter } from '../../src/format/codec.js';
import { newId } from '../../src/format/layout.js';
import { parseSchedule, windowAt } from '../../src/transport/schedule.js';
import { makeJournal, digestJournal, VOLUME_SIZE } from '../helpers/ship-journal.js';
import { BIN, DR_SHIP, childPids, killLeftovers, run, waitFor } from '../helpers/ship-run.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'drkit-shiplocal-'));
t.teardown(() => {
  killLeftovers();
  rmSync(tmp, { recursive: true, force: true });
});

/** A journal stream in memory: `n` writes of `size` bytes, half random half zero. */
function streamBytes(n: number, size: number, end = true): Buffer {
  const w = new StreamWriter({ groupId: newId(), firstSeq: 1 });
  const parts: Buffer[] = [w.start(), ...w.volume({ name: 'disk0', size: VOLUME_SIZE, blockSize: 4096, id: newId() })];
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(size, i % 2 ? 0 : (i * 7) & 0xff);
    parts.push(...w.record({ type: 'write', volume: 0, offset: (i * size) % (VOLUME_SIZE - size), data }).parts);
  }
  if (end) parts.push(...w.end());
  return Buffer.concat(parts);
}

t.test('schedule files: windows, weekdays, past midnight, errors with line numbers', async (t) => {
  const s = parseSchedule(['# DAYS HOURS RATE RPO', 'mon-fri 08:00-18:00 10M 5m', '', 'mon-fri 18:00-08:00 unlimited 30s  # nights', 'sat,sun * 1M/s none'].join('\n'), 'x');
  t.equal(s.windows.length, 3);
  const at = (iso: string) => windowAt(s, new Date(iso));
  // local time: build dates without a zone suffix
  t.equal(at('2026-11-23T09:30:00')?.line, 2, 'Monday morning: business hours');
  t.equal(at('2026-11-23T09:30:00')?.rate, 10 * 1024 * 1024);
  t.equal(at('2026-11-23T09:30:00')?.rpo, 300_000);
  t.equal(at('2026-11-23T18:00:00')?.line, 4, 'Monday 18:00: the night window starts');
  t.equal(at('2026-11-24T07:59:00')?.line, 4, 'Tuesday 07:59: still Monday night');
  t.equal(at('2026-11-24T07:59:00')?.rate, Infinity, 'unlimited');
  t.equal(at('2026-11-22T12:00:00')?.line, 5, 'Sunday: weekend line');
  t.equal(at('2026-11-22T12:00:00')?.rpo, null, 'no RPO target');
  t.equal(at('2026-11-23T03:00:00'), null, 'Monday 03:00: Sunday night is not in any window (nights are mon-fri)');
  const bad = (text: string) => t.throws(() => parseSchedule(text, 'f.sched'), { code: 'DR_BAD_SCHEDULE' });
  t.throws(() => parseSchedule('* * 1M 5m\nmon-fry 08:00-09:00 1M 5m', 'f.sched'), { code: 'DR_BAD_SCHEDULE', message: /f.sched line 2: bad days "mon-fry"/ });
  t.throws(() => parseSchedule('\n\n* 25:00-26:00 1M 5m', 'f.sched'), { message: /line 3: bad time "25:00"/ });
  t.throws(() => parseSchedule('* * fast 5m', 'f.sched'), { message: /line 1: bad rate "fast"/ });
  t.throws(() => parseSchedule('* * 1M soon', 'f.sched'), { message: /line 1: bad RPO "soon"/ });
  t.throws(() => parseSchedule('* * 1M', 'f.sched'), { message: /line 1: expected 4 fields/ });
  bad('* 08:00-08:00 1M 5m');
});

t.test('a malformed schedule is refused before connecting', async (t) => {
  const f = path.join(tmp, 'bad.sched');
  writeFileSync(f, '# ok\nmon-fri 08:00-18:00 10M 5m\nmon-fri 8-18 10M 5m\n');
  const res = await run(DR_SHIP, ['send', path.join(tmp, 'nowhere'), '--schedule', f, '--', 'true']).done;
  t.equal(res.code, 2);
  t.equal(res.stderr.trim(), `dr-ship: error: schedule ${f} line 3: bad time "8": use HH:MM (00:00-23:59, 24:00 as an end) (DR_BAD_SCHEDULE)`);
});

t.test('usage: the transport command is required', async (t) => {
  const res = await run(DR_SHIP, ['send', tmp]).done;
  t.equal(res.code, 2);
  t.match(res.stderr, /name the transport command after --.*\(DR_USAGE\)/);
});

t.test('--follow ships new records as they are appended; SIGHUP reloads the schedule; SIGTERM stops cleanly', async (t) => {
  const src = path.join(tmp, 'f-src');
  const dst = path.join(tmp, 'f-dst');
  const sched = path.join(tmp, 'follow.sched');
  writeFileSync(sched, '* * unlimited 1h\n');
  await makeJournal(src, { writes: 10, writeSize: 4096 });
  const r = run(DR_SHIP, ['send', src, '--follow', '--schedule', sched, '--json', '--', DR_SHIP, 'receive', dst]);
  await waitFor('the first records', () => r.events().some((e) => e.event === 'status' && Number(e.acked_seq) === 10));
  const more = await makeJournal(src, { writes: 20, writeSize: 4096 });
  await waitFor('the appended records', () => r.events().some((e) => e.event === 'status' && Number(e.acked_seq) === more.lastSeq));
  writeFileSync(sched, '* * unlimited 1h\nsun-thu 09:00-25:00 1M 1m\n');
  r.child.kill('SIGHUP');
  await waitFor('the reload warning', () => /line 2/.test(r.stderr())).catch((err) => {
    throw new Error(`${err.message}: ${r.stderr().split('\n').filter((l) => !l.includes('"status"')).join('\n')}`);
  });
  t.match(r.stderr(), /warning: schedule .*follow.sched line 2: .*\(DR_BAD_SCHEDULE\); keeping the schedule in force/, 'bad reload: warning with the line, old schedule kept');
  writeFileSync(sched, '* * 2M 1h\n');
  r.child.kill('SIGHUP');
  await waitFor('the reload', () => r.events().some((e) => e.event === 'schedule-reloaded'));
  await waitFor('the new rate in force', () => r.events().some((e) => e.event === 'status' && e.rate_limit_bps === 2 * 1024 * 1024));
  r.child.kill('SIGTERM');
  const res = await r.done;
  t.equal(res.code, 0, 'SIGTERM: the stream is closed properly, exit 0');
  const a = await digestJournal(src);
  const b = await digestJournal(dst);
  t.equal(b.lastSeq, a.lastSeq, 'everything appended arrived');
  t.equal(b.digest, a.digest, 'same records');
});

t.test('a stream on stdin: unacknowledged records are resent after the receiver is killed', async (t) => {
  const dst = path.join(tmp, 's-dst');
  const bytes = streamBytes(128, 64 * 1024); // 8 MiB
  const r = run(DR_SHIP, ['send', '-', '--buffer', '2M', '--rate', '3M', '--json', '--status-interval', '50ms', '--', DR_SHIP, 'receive', dst], { input: bytes });
  const acked = () => Number(r.events().filter((e) => e.event === 'status').at(-1)?.acked_seq ?? 0);
  let kills = 0;
  for (const part of [1 / 3, 2 / 3]) {
    await waitFor(`acks past ${part} of the stream`, () => acked() >= 128 * part || r.child.exitCode !== null, 30_000);
    const kids = childPids(r.child.pid!);
    if (kids.length === 0) break;
    for (const p of kids) process.kill(p, 'SIGKILL');
    kills++;
  }
  const res = await r.done;
  t.equal(res.code, 0, 'exit 0');
  t.equal(kills, 2, 'receiver killed twice mid-stream');
  const ref = path.join(tmp, 's-ref');
  const direct = await run(DR_SHIP, ['send', '-', '--', DR_SHIP, 'receive', ref], { input: bytes }).done;
  t.equal(direct.code, 0);
  const a = await digestJournal(ref);
  const b = await digestJournal(dst);
  t.equal(b.lastSeq, 128, 'all 128 records');
  t.equal(b.digest, a.digest, 'the same records as an unbroken run');
});

t.test('stdin cut short: the valid records are shipped, then DR_TRUNCATED', async (t) => {
  const dst = path.join(tmp, 't-dst');
  const bytes = streamBytes(10, 4096, false);
  const res = await run(DR_SHIP, ['send', '-', '--', DR_SHIP, 'receive', dst], { input: bytes.subarray(0, bytes.length - 100) }).done;
  t.equal(res.code, 3);
  t.match(res.stderr, /standard input ended with a truncated record after seq 9; the records before it were shipped \(DR_TRUNCATED\)/);
  t.equal((await digestJournal(dst)).lastSeq, 9, 'the 9 complete records are stored');
});

t.test('the receiver acknowledges the last records of a burst without more input', async (t) => {
  // 40 MiB at once, then nothing (no END, stdin kept open, as from a sender waiting for
  // its acks): the tail arrives while the sync started at 32 MiB still runs; the sync it
  // needs must still happen (it did not: the receiver waited for more input, and the
  // sender timed out after 30 s with the last record unacknowledged).
  const { spawn } = await import('node:child_process');
  const dst = path.join(tmp, 'burst-dst');
  const n = 640;
  const stream = streamBytes(n, 64 * 1024, false);
  const child = spawn(DR_SHIP, ['receive', dst], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stdin.write(Buffer.concat([Buffer.from('drship-send 1 compress=none from=1\n'), stream]));
  const started = Date.now();
  try {
    await waitFor(`an ack of seq ${n}`, () => new RegExp(`^ack ${n}$`, 'm').test(out), 10_000);
  } finally {
    child.stdin.end();
    await new Promise((r) => child.once('exit', r));
  }
  t.ok(Date.now() - started < 10_000, `acknowledged within ${Date.now() - started} ms`);
  t.equal((await digestJournal(dst)).lastSeq, n, 'all of it stored');
});

t.test('streams piped in and out: the pipe is widened to 1 MiB so the writer runs ahead of the reader', async (t) => {
  const stream = path.join(tmp, 'piped.drs');
  writeFileSync(stream, streamBytes(16, 64 * 1024));
  // The writer side of a real shell pipe asks the pipe's size (fcntl F_GETPIPE_SZ, 1032)
  // until the reader has set it, says what it saw on stderr, then sends its bytes.
  // (fd 3: the pipe, as standard output is the command substitution's own pipe in $(...))
  const sizeThenSend = (first: string) => `exec 3>&1; for i in $(seq 200); do s=$(perl -e 'open(my $p, ">&=", 3) or die; print fcntl($p, 1032, 0)'); [ "$s" = 1048576 ] && break; sleep 0.05; done; echo "pipe size $s" >&2; ${first}cat ${stream}`;
  const dst = path.join(tmp, 'piped-dst');
  const recv = await run('bash', ['-c', `{ ${sizeThenSend("printf 'drship-send 1 compress=none from=1\\n'; ")}; } | ${DR_SHIP} receive ${dst}`]).done;
  t.equal(recv.code, 0, recv.stderr);
  t.match(recv.stderr, /^pipe size 1048576$/m, 'dr-ship receive widened its standard input');
  t.match(recv.stdout, /^ack 16$/m, 'and stored and acknowledged the stream');
  const store = path.join(tmp, 'piped-store');
  const app = await run('bash', ['-c', `{ ${sizeThenSend('')}; } | ${BIN}dr-journal append ${store}`]).done;
  t.equal(app.code, 0, app.stderr);
  t.match(app.stderr, /^pipe size 1048576$/m, 'dr-journal append too');
  t.match(app.stderr, /appended 16 record\(s\)/);
  // and the other way: dr-journal cat widens the pipe it writes into (the reader asks its standard input)
  const readSize = `for i in $(seq 200); do s=$(perl -e 'print fcntl(STDIN, 1032, 0)'); [ "$s" = 1048576 ] && break; sleep 0.05; done; echo "pipe size $s" >&2; wc -c`;
  const cat = await run('bash', ['-c', `set -o pipefail; ${BIN}dr-journal cat ${store} | { ${readSize}; }`]).done;
  t.equal(cat.code, 0, cat.stderr);
  t.match(cat.stderr, /^pipe size 1048576$/m, 'dr-journal cat widened its standard output');
  t.ok(Number(cat.stdout.trim()) > 16 * 64 * 1024, 'and wrote the stream through it');
});

t.test('the receiver refuses what it does not understand', async (t) => {
  const dst = path.join(tmp, 'r-dst');
  const cases: Array<[string, Buffer, string, RegExp]> = [
    ['not a sender', Buffer.from('GET / HTTP/1.1\r\n\r\n'), 'DR_BAD_MAGIC', /not a dr-ship sender/],
    ['another version', Buffer.from('drship-send 2 compress=none from=1\n'), 'DR_UNSUPPORTED_VERSION', /sender speaks dr-ship protocol 2; this receiver speaks 1/],
    ['unknown compression', Buffer.from('drship-send 1 compress=lz4 from=1\n'), 'DR_UNSUPPORTED_FEATURE', /compression "lz4"/],
    ['not a stream', Buffer.concat([Buffer.from('drship-send 1 compress=none from=1\n'), Buffer.alloc(100, 0x41)]), 'DR_BAD_MAGIC', /not a drkit journal stream/],
  ];
  const good = streamBytes(4, 4096);
  const corrupt = Buffer.from(good);
  corrupt[good.length - 200] ^= 0xff;
  cases.push(['a corrupt record', Buffer.concat([Buffer.from('drship-send 1 compress=none from=1\n'), corrupt]), 'DR_BAD_CHECKSUM', /checksum mismatch/]);
  // each case its own store, all at once; the corrupt stream goes to `dst`
  const results = await Promise.all(cases.map(([what, input], i) => run(DR_SHIP, ['receive', i === cases.length - 1 ? dst : `${dst}-${i}`], { input }).done.then((res) => ({ what, res }))));
  for (const [i, [what, , code, msg]] of cases.entries()) {
    const res = results[i]!.res;
    t.equal(res.code, 2, `${what}: exit 2`);
    const lines = res.stdout.trim().split('\n');
    t.match(lines[0], /^drship-receive 1 seq=\d+ group=\S+ compress=brotli$/, `${what}: greeting first`);
    t.match(lines.at(-1), new RegExp(`^error ${code} `), `${what}: error line for the sender`);
    t.match(res.stderr, msg, `${what}: says what`);
    t.match(res.stderr, new RegExp(`^dr-ship: error: .*\\(${code}\\)\\n$`), `${what}: one line on stderr`);
  }
  const d = await digestJournal(dst);
  t.equal(d.lastSeq, 3, 'the records before the corrupt one were kept');
});

t.test('compressed frames: zeros, sparse, brotli and stored blocks round-trip; damage is refused', async (t) => {
  const { encodeFrames, FrameDecoder } = await import('../../src/transport/compress.js');
  const { randomBytes } = await import('node:crypto');
  const random = randomBytes(256 * 1024);
  const text = Buffer.from('2026-11-21T22:00:00Z INFO dr-ship: shipped seq 4711 to drsite\n'.repeat(5000)).subarray(0, 256 * 1024);
  const sparse = Buffer.concat([randomBytes(8192), Buffer.alloc(120 * 1024), randomBytes(4096), Buffer.alloc(256 * 1024 - 8192 - 120 * 1024 - 4096)]);
  const raw = Buffer.concat([Buffer.alloc(256 * 1024), sparse, text, random, randomBytes(1000)]);
  const frames = Buffer.concat(await encodeFrames(raw));
  const kinds: number[] = [];
  for (let off = 0; off < frames.length; off += 9 + frames.readUInt32LE(off + 5)) kinds.push(frames[off]!);
  t.same(kinds, [2, 3, 1, 0, 0], 'zeros, sparse, brotli, stored, stored');
  t.ok(frames.length < raw.length * 0.45, `${frames.length} bytes on the wire for ${raw.length}`);
  const d = new FrameDecoder();
  const out: Buffer[] = [];
  for (let i = 0; i < frames.length; i += 7777) out.push(...d.push(frames.subarray(i, i + 7777)));
  t.ok(Buffer.concat(out).equals(raw), 'decoded in odd-sized pieces: the same bytes');
  const bad = Buffer.from(frames);
  bad[0] = 9;
  t.throws(() => new FrameDecoder().push(bad), { code: 'DR_BAD_RECORD', message: /bad compressed frame header at wire byte 0/ });
  const badSparse = Buffer.from(frames);
  const second = 9 + frames.readUInt32LE(5);
  badSparse[second + 9] ^= 0xff; // the page bitmap no longer matches the pages sent
  t.throws(() => new FrameDecoder().push(badSparse), { code: 'DR_BAD_RECORD' });
});
