// Marks and checkpoints across taps: two taps journaling into store directories,
// written to at the same time, get the same MARK (name and id) through their
// control sockets; a held tap makes the checkpoint retry with a longer timeout;
// a restarted tap continues its journal's group and sequence.
import t from 'tap';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replayStreams } from '../helpers/tap-replay.js';
import { BIN, run } from '../helpers/run.js';
import { spawn } from 'node:child_process';
import { requirePeer, sh, shAsync, startTap } from '../helpers/tap-run.js';

requirePeer('qemu-io');

async function journalStream(dir: string): Promise<Buffer> {
  const r = await run('dr-journal', ['cat', dir]);
  if (r.code !== 0) throw new Error(`dr-journal cat ${dir}: ${r.stderr}`);
  return r.stdout;
}

t.test('a checkpoint across two taps while both are written to', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const taps = [];
  for (const n of ['a', 'b']) {
    sh('truncate', ['-s', '4M', path.join(dir, `${n}.img`)]);
    const tp = await startTap(['nbd', '--export', `${n}=${path.join(dir, `${n}.img`)}`, '--socket', path.join(dir, `${n}.sock`),
      '--journal', path.join(dir, `J${n}`), '--control', path.join(dir, `${n}.ctl`)], { stdoutFile: null, waitFor: path.join(dir, `${n}.ctl`) });
    t.teardown(() => tp.child.kill('SIGKILL'));
    taps.push(tp);
  }
  t.equal(statSync(path.join(dir, 'a.ctl')).mode & 0o777, 0o600, 'control socket is created 0600');
  const uri = (n: string) => `nbd+unix:///${n}?socket=${path.join(dir, `${n}.sock`)}`;
  const writer = (n: string, p: number) => {
    const cmds: string[] = [];
    for (let i = 0; i < 48; i++) cmds.push('-c', `aio_write -P ${p + (i % 7)} ${(i * 64) % 4000}k 64k`, ...(i % 8 === 7 ? ['-c', 'aio_flush'] : []));
    return shAsync('qemu-io', ['-f', 'raw', uri(n), ...cmds, '-c', 'aio_flush']);
  };
  const writers = Promise.all([writer('a', 0x10), writer('b', 0x40)]);
  const ctl = ['--control', path.join(dir, 'a.ctl'), '--control', path.join(dir, 'b.ctl')];
  const m1 = await run('dr-tap', ['mark', ...ctl, 'cp1', '--kind', 'app', '--json']);
  t.equal(m1.code, 0, `mark exits 0 ${m1.stderr}`);
  const r1 = JSON.parse(m1.stdout.toString()) as { id: string; heldMs: number; attempts: number; taps: Array<{ seq: number }>; nextTimeoutMs: number };
  t.equal(r1.taps.length, 2, 'both taps recorded the mark');
  t.type(r1.heldMs, 'number', `writes were held ${r1.heldMs.toFixed(2)}ms`);
  t.ok(r1.attempts >= 1, `attempts reported (${r1.attempts})`);
  await writers;

  // a tap held by someone else: the checkpoint releases all, retries with a longer timeout, and then succeeds
  const other = net.connect({ path: path.join(dir, 'b.ctl') });
  await new Promise((r) => other.once('connect', r));
  other.write(JSON.stringify({ op: 'quiesce', timeoutMs: 1000 }) + '\n');
  const held = await new Promise<string>((r) => other.once('data', (d) => r(d.toString())));
  t.match(held, /"ok":true/, 'another client holds tap b');
  // dr-tap mark runs; once it reports its first failed attempt, the other client goes away and tap b releases
  const m2 = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(BIN + 'dr-tap', ['mark', ...ctl, 'cp2', '--timeout', '100ms', '--attempts', '8'], { env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/attempt 1:/.test(stderr)) other.destroy();
    });
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  other.destroy();
  t.equal(m2.code, 0, 'the checkpoint succeeds after retries');
  t.match(m2.stderr, /attempt 1: .*retrying with 200ms/, 'the failed attempt is reported and the timeout doubled');
  t.match(m2.stderr, /writes held/, 'how long writes were held is reported');
  t.match(m2.stdout, /mark cp2 \(user\) id [0-9a-f-]+ at seq \d+ in .*a\.ctl\nmark cp2 \(user\) id [0-9a-f-]+ at seq \d+ in .*b\.ctl\n/);

  // a tap held too long: nothing is recorded
  const other2 = net.connect({ path: path.join(dir, 'a.ctl') });
  await new Promise((r) => other2.once('connect', r));
  other2.write(JSON.stringify({ op: 'quiesce', timeoutMs: 1000 }) + '\n');
  await new Promise((r) => other2.once('data', r));
  const m3 = await run('dr-tap', ['mark', ...ctl, 'never', '--timeout', '20ms', '--attempts', '2']);
  other2.destroy();
  t.equal(m3.code, 3, 'not every tap confirmed: exit 3');
  t.match(m3.stderr, /nothing was recorded \(DR_TIMEOUT\)/);

  for (const tp of taps) t.equal((await tp.stop()).code, 0, 'tap stops cleanly');
  const ja = replayStreams([await journalStream(path.join(dir, 'Ja'))]);
  const jb = replayStreams([await journalStream(path.join(dir, 'Jb'))]);
  for (const [n, j] of [['a', ja], ['b', jb]] as const) {
    t.equal(j.error, null, `journal ${n} valid`);
    t.ok(j.images.get(n)!.equals(readFileSync(path.join(dir, `${n}.img`))), `journal ${n} rebuilds volume ${n}`);
    t.notOk(j.marks.some((m) => m.name === 'never'), `no mark from the failed checkpoint in ${n}`);
  }
  for (const name of ['cp1', 'cp2']) {
    const a = ja.marks.find((m) => m.name === name);
    const b = jb.marks.find((m) => m.name === name);
    t.ok(a && b && a.id === b.id && a.kind === b.kind, `${name}: the same MARK (name, id, kind) in both journals`);
  }
  t.equal(ja.marks.find((m) => m.name === 'cp1')!.id.replace(/-/g, ''), r1.id.replace(/-/g, ''), 'the id dr-tap mark reported');

  // restart tap a on its journal: group and sequence continue, no second baseline
  const before = ja.lastSeq;
  const tp = await startTap(['nbd', '--export', `a=${path.join(dir, 'a.img')}`, '--socket', path.join(dir, 'a.sock'), '--journal', path.join(dir, 'Ja')], { stdoutFile: null, waitFor: path.join(dir, 'a.sock') });
  t.teardown(() => tp.child.kill('SIGKILL'));
  t.match(tp.stderr(), new RegExp(`next seq ${before + 1}\\b`), 'the restarted tap continues at the next seq');
  sh('qemu-io', ['-f', 'raw', uri('a'), '-c', 'write -P 0x99 1M 8k', '-c', 'flush']);
  t.equal((await tp.stop()).code, 0);
  const again = replayStreams([await journalStream(path.join(dir, 'Ja'))]);
  t.equal(again.header.groupId.toString('hex'), ja.header.groupId.toString('hex'), 'same group');
  t.equal(again.marks.filter((m) => m.name === 'baseline:a').length, 1, 'one baseline only');
  t.ok(again.images.get('a')!.equals(readFileSync(path.join(dir, 'a.img'))), 'the journal still rebuilds the volume');
});
