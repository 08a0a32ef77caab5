// A full journal disk: the write that does not fit fails with NBD ENOSPC, dr-tap
// stops with a one-line DR_NO_SPACE error (exit 3), and the journal stays valid with
// everything that was flushed (writes acknowledged after the last FLUSH may be
// missing, as from a disk's cache in a crash).
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replayStreams } from '../helpers/tap-replay.js';
import { run } from '../helpers/run.js';
import { requirePeer, sh, startTap } from '../helpers/tap-run.js';

requirePeer('qemu-io');

t.test('journal on a full file system', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapf-'));
  const small = path.join(dir, 'small');
  mkdirSync(small);
  sh('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', small]);
  t.teardown(() => {
    spawnSync('umount', [small]);
    rmSync(dir, { recursive: true, force: true });
  });
  const disk = path.join(dir, 'd.img');
  const sock = path.join(dir, 's.sock');
  sh('truncate', ['-s', '8M', disk]);
  const J = path.join(small, 'J');
  const tap = await startTap(['nbd', '--export', `d=${disk}`, '--socket', sock, '--journal', J], { stdoutFile: null, waitFor: sock });
  t.teardown(() => tap.child.kill('SIGKILL'));
  const q = spawnSync('qemu-io', ['-f', 'raw', `nbd+unix:///d?socket=${sock}`,
    '-c', 'write -P 1 0 1M', '-c', 'flush', '-c', 'write -P 2 1M 1M', '-c', 'write -P 3 2M 1M', '-c', 'write -P 4 3M 1M', '-c', 'flush'], { encoding: 'utf8' });
  t.match(q.stdout + q.stderr, /write failed: No space left on device/, 'the client gets ENOSPC');
  const r = await tap.stop();
  t.equal(r.code, 3, 'dr-tap exits 3');
  t.match(r.stderr, /dr-tap: error: cannot write segment .*: no space left on device; stopping \(DR_NO_SPACE\)/, 'one clear line with DR_NO_SPACE');
  const cat = await run('dr-journal', ['cat', J]);
  t.equal(cat.code, 0, 'the journal opens and reads back');
  const rep = replayStreams([cat.stdout]);
  t.equal(rep.error, null, 'valid journal');
  t.ok(rep.images.get('d')!.subarray(0, 1 << 20).every((b) => b === 1), 'the flushed write is in the journal');
  t.ok(readFileSync(disk).subarray(0, 1 << 20).every((b) => b === 1), 'and in the backing store');
  t.ok((rep.counts.flush ?? 0) >= 1, 'with its FLUSH record');
});
