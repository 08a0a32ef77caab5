// dr-tap nbd against real NBD clients (qemu-io, qemu-img, nbdcopy, nbdinfo): after
// each run, the journal stream alone rebuilds every volume byte for byte, and a
// second run continues the same group and sequence.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replayFiles, replayStreams } from '../helpers/tap-replay.js';
import { requirePeer, sh, shAsync, startTap } from '../helpers/tap-run.js';

for (const p of ['qemu-io', 'qemu-img', 'nbdcopy', 'nbdinfo']) requirePeer(p);

const MiB = 1024 * 1024;

t.test('qemu-io, qemu-img convert, nbdcopy and nbdinfo through the tap; the stream rebuilds the volumes', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const d0 = path.join(dir, 'd0.img');
  const d1 = path.join(dir, 'd1.img');
  const sock = path.join(dir, 'nbd.sock');
  const state = path.join(dir, 'tap.state');
  // d0 already holds data (a baseline must be recorded), d1 is empty and sparse
  const pre = Buffer.alloc(4 * MiB);
  randomBytes(MiB).copy(pre, 0);
  randomBytes(4096).copy(pre, 3 * MiB + 8192);
  pre[2 * MiB + 4095] = 1; // a block that is zero except its last byte is not a zero block
  writeFileSync(d0, pre);
  writeFileSync(d1, Buffer.alloc(0));
  sh('truncate', ['-s', '2M', d1]);

  const s1 = path.join(dir, 'run1.drj');
  const tap = await startTap(['nbd', '--export', `d0=${d0}`, '--export', `d1=${d1}`, '--socket', sock, '--state', state, '--sign-every', '20ms', '--json'], { stdoutFile: s1, waitFor: sock });
  t.teardown(() => tap.child.kill('SIGKILL'));
  t.equal(statSync(sock).mode & 0o777, 0o600, 'unix socket is created 0600');
  const uri0 = `nbd+unix:///d0?socket=${sock}`;
  const uri1 = `nbd+unix:///d1?socket=${sock}`;

  // nbdinfo --list sees both exports with their sizes
  const list = JSON.parse(sh('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${sock}`])) as { exports: Array<{ 'export-name': string; 'export-size': number; can_flush: boolean; can_trim: boolean; can_zero: boolean; can_fua: boolean; is_read_only: boolean }> };
  t.same(list.exports.map((e) => [e['export-name'], e['export-size']]), [['d0', 4 * MiB], ['d1', 2 * MiB]], 'nbdinfo --list: both exports and sizes');
  const e0 = list.exports[0]!;
  t.ok(e0.can_flush && e0.can_trim && e0.can_zero && e0.can_fua && !e0.is_read_only, 'transmission flags: flush, trim, zero, fua, writable');

  // qemu-img convert a random image into d1; nbdcopy --flush a random image into d0 (both while the baseline may be running)
  const src1 = path.join(dir, 'src1.img');
  const src0 = path.join(dir, 'src0.img');
  const b1 = randomBytes(2 * MiB);
  b1.fill(0, 512 * 1024, 768 * 1024); // a zero run: qemu-img writes zeroes or skips it
  writeFileSync(src1, b1);
  const b0 = Buffer.alloc(4 * MiB);
  randomBytes(3 * MiB).copy(b0, MiB / 2);
  writeFileSync(src0, b0);
  await Promise.all([
    shAsync('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src1, uri1]),
    shAsync('nbdcopy', ['--flush', src0, uri0]),
  ]);
  t.ok(readFileSync(d1).equals(b1), 'qemu-img convert -n: d1 holds the source image');
  t.ok(readFileSync(d0).equals(b0), 'nbdcopy --flush: d0 holds the source image');

  // qemu-io: patterns, unaligned and FUA writes, write -z, discard, flush, read -P verification
  const out = sh('qemu-io', ['-f', 'raw', uri0,
    '-c', 'write -P 0x11 0 64k',
    '-c', 'write -P 0x22 4095 10000',
    '-c', 'write -f -P 0x33 1M 128k',
    '-c', 'write -z 2M 256k',
    '-c', 'discard 3M 64k',
    '-c', 'flush',
    '-c', 'read -P 0x11 0 4095',
    '-c', 'read -P 0x22 4095 10000',
    '-c', 'read -P 0x33 1M 128k',
    '-c', 'read -P 0 2M 256k',
    '-c', 'read -P 0 3M 64k',
  ]);
  t.notMatch(out, /Pattern verification failed|error/i, 'qemu-io reads back every pattern through the tap');
  // two writers at once on the two exports
  await Promise.all([
    shAsync('qemu-io', ['-f', 'raw', uri0, '-c', 'aio_write -P 0x44 0 512k', '-c', 'aio_write -P 0x45 512k 512k', '-c', 'aio_flush']),
    shAsync('qemu-io', ['-f', 'raw', uri1, '-c', 'aio_write -P 0x55 0 1M', '-c', 'aio_write -z 1M 64k', '-c', 'aio_flush']),
  ]);
  await new Promise((r) => setTimeout(r, 100)); // a few signatures

  const r1 = await tap.stop('SIGTERM');
  t.equal(r1.code, 0, `SIGTERM: exit 0 (stderr: ${r1.stderr.trim()})`);

  const events = r1.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event: string; total?: number; recorded?: number; writes?: number });
  t.same(events.map((e) => e.event).filter((e) => e !== 'baseline'), ['listening', 'baseline-complete', 'stopped'], '--json events on stderr (stdout is the stream)');
  const progress = events.filter((e) => e.event === 'baseline');
  t.ok(progress.length > 0 && progress.at(-1)!.recorded === progress.at(-1)!.total, 'baseline progress reaches its total');
  const rep = replayFiles([s1]);
  t.equal(rep.error, null, 'the stream is valid and complete');
  t.ok(rep.ended, 'the stream ends with its END trailer');
  t.ok(rep.images.get('d0')!.equals(readFileSync(d0)), 'replaying the journal alone gives d0 byte for byte');
  t.ok(rep.images.get('d1')!.equals(readFileSync(d1)), 'replaying the journal alone gives d1 byte for byte');
  t.same(rep.marks.filter((m) => m.name.startsWith('baseline:')).map((m) => m.name).sort(), ['baseline:d0', 'baseline:d1'], 'a baseline MARK per volume');
  t.ok((rep.counts.zero ?? 0) >= 3, 'write -z, discard and aio_write -z became ZERO records');
  t.ok((rep.counts.flush ?? 0) >= 3, 'flushes became FLUSH records');
  t.ok(rep.signaturesChecked > 0, `signatures recorded (${rep.signaturesChecked})`);
  t.equal(rep.signatureMismatches, 0, 'every SIGNATURE matches the rebuilt bytes at its seq');

  // second run: same group, sequence continues, no new baseline
  const s2 = path.join(dir, 'run2.drj');
  const tap2 = await startTap(['nbd', '--export', `d0=${d0}`, '--export', `d1=${d1}`, '--socket', sock, '--state', state], { stdoutFile: s2, waitFor: sock });
  t.teardown(() => tap2.child.kill('SIGKILL'));
  sh('qemu-io', ['-f', 'raw', uri1, '-c', 'write -P 0x66 100k 3000', '-c', 'flush']);
  const r2 = await tap2.stop('SIGINT');
  t.equal(r2.code, 0, 'SIGINT: exit 0');
  const two = replayStreams([readFileSync(s1), readFileSync(s2)]);
  const run2 = replayFiles([s2]);
  t.equal(run2.header.groupId.toString('hex'), rep.header.groupId.toString('hex'), 'second run continues the group id');
  t.equal(run2.header.firstSeq, rep.lastSeq + 1, 'second run continues the sequence');
  t.equal(run2.marks.length, 0, 'no new baseline in the second run');
  t.ok(two.images.get('d1')!.equals(readFileSync(d1)) && two.images.get('d0')!.equals(readFileSync(d0)), 'both runs replayed give the volumes byte for byte');
});

t.test('TCP: binds 127.0.0.1 by default, any free port with --port 0', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'd.img');
  sh('truncate', ['-s', '1M', disk]);
  const out = path.join(dir, 's.drj');
  const tap = await startTap(['nbd', '--export', `tcpvol=${disk}`, '--port', '0'], { stdoutFile: out, waitFor: disk });
  t.teardown(() => tap.child.kill('SIGKILL'));
  const m = /on 127\.0\.0\.1:(\d+),/.exec(tap.stderr());
  t.ok(m, 'listening on 127.0.0.1 and the port is printed');
  const info = sh('nbdinfo', ['--size', `nbd://127.0.0.1:${m![1]}/tcpvol`]);
  t.equal(info.trim(), String(1024 * 1024), 'nbdinfo over TCP sees the export');
  sh('qemu-io', ['-f', 'raw', `nbd://127.0.0.1:${m![1]}/tcpvol`, '-c', 'write -P 7 0 4k', '-c', 'flush']);
  t.equal((await tap.stop()).code, 0);
  t.ok(replayFiles([out]).images.get('tcpvol')!.equals(readFileSync(disk)), 'journal rebuilds the volume');
});
