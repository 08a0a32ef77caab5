// The Linux kernel as an NBD client of dr-tap: nbdfuse exposes the export as a
// file, losetup makes it a block device, then mkfs.ext4, mount, files, sync and
// umount all go through the tap. The journal alone rebuilds the volume exactly.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replayFiles } from '../helpers/tap-replay.js';
import { requirePeer, sh, startTap } from '../helpers/tap-run.js';

for (const p of ['nbdfuse', 'losetup', 'mkfs.ext4', 'mount', 'umount', 'fusermount3']) requirePeer(p);

t.test('mkfs.ext4, mount, write files, sync, umount through nbdfuse + loop device', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapk-'));
  const disk = path.join(dir, 'disk.img');
  const sock = path.join(dir, 'nbd.sock');
  const fuse = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(fuse);
  mkdirSync(mnt);
  sh('truncate', ['-s', '48M', disk]);
  const stream = path.join(dir, 'journal.drj');
  const tap = await startTap(['nbd', '--export', `vol=${disk}`, '--socket', sock], { stdoutFile: stream, waitFor: sock });

  let loop = '';
  let mounted = false;
  let fuseUp = false;
  // undo everything, in order, also when an assertion or a peer failed
  const undo = () => {
    if (mounted) sh('umount', [mnt]);
    mounted = false;
    if (loop) sh('losetup', ['-d', loop]);
    loop = '';
    if (fuseUp) sh('fusermount3', ['-u', fuse]);
    fuseUp = false;
  };
  t.teardown(() => {
    try {
      undo();
    } finally {
      tap.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const nbdfuse = spawn('nbdfuse', [fuse, `nbd+unix:///vol?socket=${sock}`], { stdio: 'ignore' });
  fuseUp = true;
  const t0 = Date.now();
  while (!existsSync(path.join(fuse, 'nbd'))) {
    if (Date.now() - t0 > 10000) throw new Error('nbdfuse did not expose the export');
    await new Promise((r) => setTimeout(r, 50));
  }
  loop = sh('losetup', ['-f', '--show', path.join(fuse, 'nbd')]).trim();
  t.match(loop, /^\/dev\/loop\d+$/, `loop device ${loop}`);
  sh('mkfs.ext4', ['-q', '-F', loop]);
  sh('mount', [loop, mnt]);
  mounted = true;
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 6; i++) files.set(`f${i}`, randomBytes(1000 + i * 300_000));
  for (const [name, data] of files) writeFileSync(path.join(mnt, name), data);
  mkdirSync(path.join(mnt, 'sub'));
  writeFileSync(path.join(mnt, 'sub', 'small'), 'drkit\n');
  sh('sync', []);
  rmSync(path.join(mnt, 'f1')); // freed blocks: the kernel may discard them later
  sh('sync', []);
  undo();
  await new Promise<void>((r) => (nbdfuse.exitCode !== null ? r() : nbdfuse.once('exit', () => r())));

  const r = await tap.stop('SIGTERM');
  t.equal(r.code, 0, 'dr-tap stops cleanly');
  const rep = replayFiles([stream]);
  t.equal(rep.error, null, 'journal stream valid and complete');
  const image = rep.images.get('vol')!;
  t.ok(image.equals(readFileSync(disk)), 'the journal alone rebuilds the volume byte for byte');
  t.ok((rep.counts.flush ?? 0) > 0, `the kernel's flushes are FLUSH records (${rep.counts.flush})`);

  // the rebuilt image is a filesystem with the files in it
  const rebuilt = path.join(dir, 'rebuilt.img');
  writeFileSync(rebuilt, image);
  sh('e2fsck', ['-fn', rebuilt]);
  const listing = sh('debugfs', ['-R', 'ls -l /', rebuilt]);
  for (const name of ['f0', 'f2', 'f5', 'sub']) t.match(listing, new RegExp(`\\b${name}\\b`), `rebuilt filesystem lists ${name}`);
  const dumped = path.join(dir, 'f5.out');
  sh('debugfs', ['-R', `dump /f5 ${dumped}`, rebuilt]);
  t.ok(readFileSync(dumped).equals(files.get('f5')!), 'file f5 read from the rebuilt filesystem has the bytes written');
});
