// --backing-sync checkpoint (the default with --journal): FLUSH makes the journal
// durable and the backing store is synced at checkpoints. After a crash (SIGKILL)
// whose backing-store writes were lost, the next run repairs the backing store from
// the journal before serving it.
import t from 'tap';
import { mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replayStreams } from '../helpers/tap-replay.js';
import { run } from '../helpers/run.js';
import { requirePeer, sh, startTap } from '../helpers/tap-run.js';

requirePeer('qemu-io');

t.test('a crashed tap repairs its backing store from the journal', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'd.img');
  const sock = path.join(dir, 's.sock');
  const J = path.join(dir, 'J');
  sh('truncate', ['-s', '4M', disk]);
  const args = ['nbd', '--export', `d=${disk}`, '--socket', sock, '--journal', J, '--checkpoint-every', '1h'];
  const tap = await startTap(args, { stdoutFile: null, waitFor: sock });
  t.teardown(() => tap.child.kill('SIGKILL'));
  const uri = `nbd+unix:///d?socket=${sock}`;
  sh('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x5a 0 256k', '-c', 'write -P 0x5b 1M 64k', '-c', 'write -z 64k 4k', '-c', 'flush']);
  const killed = await tap.stop('SIGKILL');
  t.equal(killed.signal, 'SIGKILL', 'the tap is killed after the flush');
  // the backing store lost the writes the kernel had not written back yet: simulate it
  const fd = openSync(disk, 'r+');
  writeSync(fd, Buffer.alloc(256 * 1024, 0xee), 0, 256 * 1024, 0);
  writeSync(fd, Buffer.alloc(64 * 1024, 0xee), 0, 64 * 1024, 1024 * 1024);
  closeSync(fd);

  const tap2 = await startTap(args, { stdoutFile: null, waitFor: sock });
  t.teardown(() => tap2.child.kill('SIGKILL'));
  t.match(tap2.stderr(), /did not stop cleanly; applying seq \d+\.\.\d+ of the journal/, 'the repair is reported');
  const out = sh('qemu-io', ['-f', 'raw', uri, '-c', 'read -P 0x5a 0 64k', '-c', 'read -P 0 64k 4k', '-c', 'read -P 0x5a 68k 188k', '-c', 'read -P 0 256k 44k', '-c', 'read -P 0x5b 1M 64k']);
  t.notMatch(out, /verification failed/i, 'every flushed write is back in the backing store');
  t.equal((await tap2.stop()).code, 0);
  const cat = await run('dr-journal', ['cat', J]);
  const rep = replayStreams([cat.stdout]);
  t.equal(rep.error, null, 'journal valid');
  t.ok(rep.images.get('d')!.equals(readFileSync(disk)), 'the journal rebuilds the repaired backing store byte for byte');
});
