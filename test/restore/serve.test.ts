// dr-restore --serve: restore points as NBD exports read by real clients
// (qemu-img convert, nbdcopy, nbdinfo, qemu-io), several points at once, over a
// unix socket and TCP, read-only by default; --writable keeps client writes in a
// copy-on-write overlay and the store is never modified.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../helpers/run.js';
import { buildStore, peer, requirePeers, serve, tempDir, treeDigest } from '../helpers/restore-store.js';

t.test('several points of a two-volume group at once: qemu-img and nbdcopy read the references', async (t) => {
  if (!requirePeers(t, ['qemu-img', 'nbdcopy', 'nbdinfo'])) return;
  const { dir, work, w } = await buildStore(t, { seed: 5201, records: 500, markEvery: 100 }, { segmentSize: '256K', parts: 2 });
  const sock = path.join(work, 'nbd.sock');
  const marks = w.marks.slice(0, 4);
  const s = await serve(t, [dir, '--socket', sock, ...marks.flatMap((m) => ['--at', `mark:${m.name}`]), '--at', 'latest'], (marks.length + 1) * 2);
  t.same(s.exports.map((e) => e.name), [...marks.map((m) => `mark:${m.name}`), 'latest'].flatMap((p) => w.volumes.map((v) => `${p}/${v.name}`)),
    'one export per point and volume, named POINT/VOLUME');
  t.ok(s.exports.every((e) => !e.writable), 'read-only');
  const list = (await peer('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${sock}`])).toString();
  t.equal(JSON.parse(list).exports.length, s.exports.length, 'nbdinfo --list sees every export');
  let i = 0;
  for (const e of s.exports) {
    const m = marks.find((x) => `mark:${x.name}` === e.point);
    const v = w.volumes.findIndex((x) => x.name === e.volume);
    const ref = m ? m.images[v]! : w.final[v]!;
    const out = path.join(work, `got-${i}.img`);
    if (i++ % 2 === 0) await peer('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', e.uri, out]);
    else await peer('nbdcopy', [e.uri, out]);
    t.ok(fs.readFileSync(out).equals(ref), `${e.name} equals the reference (${i % 2 === 1 ? 'qemu-img convert' : 'nbdcopy'})`);
    fs.rmSync(out);
  }
  const denied = await run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', s.exports[0]!.uri]);
  t.not(denied.code, 0, 'a write to a read-only export fails');
  const stopped = await s.stop('SIGINT');
  t.equal(stopped.code, 0, `clean stop on SIGINT: ${s.stderr()}`);
  t.notOk(fs.existsSync(sock), 'socket removed');
  t.match(stopped.stdout, /"event":"stopped"/);
});

t.test('TCP on a free port, one volume, nbdinfo and qemu-img', async (t) => {
  if (!requirePeers(t, ['qemu-img', 'nbdinfo'])) return;
  const { dir, work, w } = await buildStore(t, { seed: 5202, records: 200, markEvery: 50 });
  const s = await serve(t, [dir, '--port', '0', '--at', 'latest', '--volume', 'logs'], 1);
  const e = s.exports[0]!;
  t.equal(e.name, 'latest', 'a single volume: the export is named after the point');
  t.match(e.uri, /^nbd:\/\/127\.0\.0\.1:\d+\/latest$/);
  const info = JSON.parse((await peer('nbdinfo', ['--json', e.uri])).toString());
  t.equal(info.exports[0]['export-size'], w.volumes[1]!.size, 'size');
  t.equal(info.exports[0]['is_read_only'], true, 'read-only');
  const out = path.join(work, 'tcp.img');
  await peer('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', e.uri, out]);
  t.ok(fs.readFileSync(out).equals(w.final[1]!), 'equals the reference');
  t.equal((await s.stop()).code, 0, 'clean stop on SIGTERM');
});

t.test('--writable: writes land in the overlay, reads see them, the store is untouched', async (t) => {
  if (!requirePeers(t, ['qemu-io', 'qemu-img'])) return;
  const { dir, work, w } = await buildStore(t, { seed: 5203, records: 300, markEvery: 100 });
  const before = treeDigest(dir, (n) => n.endsWith('.lock') || n.startsWith('leases'));
  const sock = path.join(work, 'w.sock');
  const overlay = path.join(tempDir(t), 'overlays');
  const m = w.marks[1]!;
  const args = [dir, '--socket', sock, '--at', `mark:${m.name}`, '--volume', 'db', '--writable', '--overlay', overlay];
  let s = await serve(t, args, 1);
  const uri = s.exports[0]!.uri;
  t.equal(s.exports[0]!.writable, true);
  // unaligned writes (copy-up of partial blocks), a zeroed range, and read-backs
  await peer('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 1000 5000', '-c', 'write -P 0xcd 8192 4096', '-c', 'write -z 65536 70000',
    '-c', 'discard 204800 8192', '-c', 'flush', '-c', 'read -P 0xab 1000 5000', '-c', 'read -P 0 204800 8192', uri]);
  const expected = Buffer.from(m.images[0]!);
  expected.fill(0xab, 1000, 6000);
  expected.fill(0xcd, 8192, 12288);
  expected.fill(0, 65536, 135536);
  expected.fill(0, 204800, 212992);
  const out = path.join(work, 'w.img');
  await peer('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out]);
  t.ok(fs.readFileSync(out).equals(expected), 'a second client sees the writes over the point\'s bytes');
  t.equal((await s.stop()).code, 0, 'clean stop');
  t.same(treeDigest(dir, (n) => n.endsWith('.lock') || n.startsWith('leases')), before, 'no store file changed');
  const restored = await run('dr-restore', [dir, '--at', `mark:${m.name}`, '--volume', 'db', '--out', '-']);
  t.ok(restored.stdout.equals(m.images[0]!), 'the point restores as before');

  // the overlay persists: serving again continues it
  s = await serve(t, args, 1);
  fs.rmSync(out);
  await peer('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.exports[0]!.uri, out]);
  t.ok(fs.readFileSync(out).equals(expected), 'the overlay is continued after a restart');
  t.match(s.stderr(), /continuing overlay/);
  t.equal((await s.stop()).code, 0);

  // without --overlay the overlay lives in a temporary directory removed at exit
  s = await serve(t, [dir, '--socket', sock, '--at', 'latest', '--volume', 'logs', '--writable'], 1);
  const tmpOverlay = s.exports[0]!.overlay!;
  t.ok(fs.existsSync(tmpOverlay), 'temporary overlay exists while serving');
  await peer('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4096', '-c', 'read -P 0x11 0 4096', s.exports[0]!.uri]);
  t.equal((await s.stop()).code, 0);
  t.notOk(fs.existsSync(path.dirname(tmpOverlay)), 'temporary overlay directory removed');
  t.same(treeDigest(dir, (n) => n.endsWith('.lock') || n.startsWith('leases')), before, 'still no store file changed');

  // an overlay kept for "latest" does not follow "latest" to a newer seq: refused
  const latestArgs = [dir, '--socket', sock, '--at', 'latest', '--volume', 'logs', '--writable', '--overlay', overlay];
  s = await serve(t, latestArgs, 1);
  await peer('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 512', s.exports[0]!.uri]);
  t.equal((await s.stop()).code, 0);
  const mk = await run('dr-journal', ['mark', dir, 'later']);
  t.equal(mk.code, 0, mk.stderr);
  const refused = await run('dr-restore', [...latestArgs, '--serve']);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /overlay .*latest\.overlay belongs to another image \(.*seq \d+.*\): remove it or use another overlay directory \(DR_EXISTS\)/);
  t.notOk(fs.existsSync(sock), 'no socket left behind');
});
