// dr-tap scan as a user runs it: baseline, changes, zeroed blocks, the last-byte
// edge case, a failed pipe that must lose nothing, a loop device, and bad manifests.
import t from 'tap';
import { existsSync, readdirSync, readFileSync, writeFileSync, openSync, writeSync, closeSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, execFileSync } from 'node:child_process';
import { run, BIN } from '../helpers/run.js';
import { decodeStream, pattern, replay, tempDir } from '../helpers/verify-replay.js';
import type { StreamItem } from '../../src/format/codec.js';

const KiB = 1024;
const MiB = 1 << 20;

function patch(file: string, offset: number, data: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}
const kinds = (items: StreamItem[]) => items.filter((i) => i.type !== 'header' && i.type !== 'volume' && i.type !== 'end');

t.test('first run: the baseline of non-zero blocks; later runs: only what changed, one journal', async (t) => {
  const d = tempDir(t, 'drkit-scan-');
  const img = join(d, 'vol.img');
  const m = join(d, 'vol.manifest');
  truncateSync(openAndClose(img), 0);
  writeFileSync(img, Buffer.alloc(6 * MiB));
  patch(img, 0, pattern(8 * KiB, 1)); // blocks 0,1
  patch(img, 3 * MiB, pattern(4 * KiB, 2)); // block 768
  patch(img, 6 * MiB - 4 * KiB, pattern(4 * KiB, 3)); // the last block

  const threads = { env: { DRKIT_THREADS: '2' } }; // worker threads even for a small image
  const r1 = await run('dr-tap', ['scan', img, '--manifest', m], threads);
  t.equal(r1.code, 0, r1.stderr);
  t.match(r1.stderr, /baseline: 4 block\(s\) written \(16\.0 KiB\), 0 zeroed, of 1536 blocks of 4096 bytes; seq 1\.\.4/);
  const s1 = decodeStream(r1.stdout);
  const recs1 = kinds(s1);
  t.same(recs1.map((r) => r.type), ['write', 'write', 'write', 'flush'], 'adjacent blocks merged, zero blocks skipped, a FLUSH closes the scan');
  t.same(recs1.filter((r) => r.type === 'write').map((r) => r.type === 'write' && [r.offset, r.data.length]), [[0, 8192], [3 * MiB, 4096], [6 * MiB - 4096, 4096]]);
  const header1 = s1[0]!;
  t.ok(existsSync(m), 'manifest written');
  const copy = join(d, 'copy.img');
  replay(r1.stdout, copy);
  t.ok(readFileSync(copy).equals(readFileSync(img)), 'the baseline rebuilds the image');

  // change one block, zero another, extend a run
  patch(img, 4 * KiB, pattern(4 * KiB, 9)); // block 1 new data
  patch(img, 3 * MiB, Buffer.alloc(4 * KiB)); // block 768 becomes zero
  patch(img, 5 * MiB, pattern(12 * KiB, 4)); // blocks 1280..1282 new
  const r2 = await run('dr-tap', ['scan', img, '--manifest', m, '--mark', 'after-change'], threads);
  t.equal(r2.code, 0, r2.stderr);
  const s2 = decodeStream(r2.stdout);
  t.ok(s2[0]!.type === 'header' && header1.type === 'header' && s2[0].groupId.equals(header1.groupId), 'same group id as the first run');
  t.equal(s2[0]!.type === 'header' && s2[0].firstSeq, 5, 'seq continues after the first run');
  t.ok(s2[1]!.type === 'volume' && s1[1]!.type === 'volume' && s2[1].id.equals(s1[1].id), 'same volume id');
  const recs2 = kinds(s2);
  t.same(recs2.map((r) => [r.type, 'offset' in r ? r.offset : null]), [
    ['write', 4096], ['zero', 3 * MiB], ['write', 5 * MiB], ['flush', null], ['mark', null],
  ]);
  const z = recs2[1]!;
  t.equal(z.type === 'zero' && z.length, 4096);
  t.equal(recs2[4]!.type === 'mark' && recs2[4].name, 'after-change');
  replay(r2.stdout, copy);
  t.ok(readFileSync(copy).equals(readFileSync(img)), 'baseline + changes rebuild the image');

  // nothing changed: a valid stream without records, the seq does not move
  const r3 = await run('dr-tap', ['scan', img, '--manifest', m, '--json', '-o', join(d, 's3.drj')]);
  t.equal(r3.code, 0, r3.stderr);
  const sum = JSON.parse(r3.stdout.toString());
  t.equal(sum.records, 0);
  t.equal(sum.nextSeq, 10);
  const v = await run('dr-verify', ['stream', join(d, 's3.drj')]);
  t.equal(v.code, 0);
  t.same(readdirSync(d).filter((f) => f.includes('.tmp-')), [], 'no temp manifest left behind');

  // the scan manifest is a hash manifest: dr-verify compares the image with it
  const c = await run('dr-verify', ['compare', img, '--against-hashes', m]);
  t.equal(c.code, 0, c.stderr);
});

function openAndClose(p: string): string {
  closeSync(openSync(p, 'w'));
  return p;
}

t.test('a block all zero except its last byte is not a zero block', async (t) => {
  const d = tempDir(t, 'drkit-scan-');
  const img = join(d, 'edge.img');
  const m = join(d, 'm');
  writeFileSync(img, Buffer.alloc(64 * KiB));
  patch(img, 8 * KiB - 1, Buffer.from([1])); // last byte of block 1
  const r1 = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.equal(r1.code, 0, r1.stderr);
  const w = kinds(decodeStream(r1.stdout)).filter((r) => r.type === 'write');
  t.equal(w.length, 1);
  t.equal(w[0]!.type === 'write' && w[0].offset, 4096, 'block 1 is sent');
  t.equal(w[0]!.type === 'write' && w[0].data[4095], 1);
  // the image's very last byte (a volume that is not a multiple of the block size)
  const odd = join(d, 'odd.img');
  writeFileSync(odd, Buffer.alloc(10_000));
  patch(odd, 9_999, Buffer.from([7]));
  const r2 = await run('dr-tap', ['scan', odd, '--manifest', join(d, 'm2')]);
  const w2 = kinds(decodeStream(r2.stdout)).filter((r) => r.type === 'write');
  t.same(w2.map((r) => r.type === 'write' && [r.offset, r.data.length]), [[8192, 1808]], 'the partial last block is sent');
  // and when that byte goes back to zero, the block is zeroed
  patch(img, 8 * KiB - 1, Buffer.from([0]));
  const r3 = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.same(kinds(decodeStream(r3.stdout)).map((r) => [r.type, 'offset' in r ? r.offset : null]), [['zero', 4096], ['flush', null]]);
});

t.test('a failed pipe keeps the old manifest: the next run sends the blocks again', async (t) => {
  const d = tempDir(t, 'drkit-scan-');
  const img = join(d, 'p.img');
  const m = join(d, 'p.manifest');
  writeFileSync(img, pattern(2 * MiB, 5));
  const r1 = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.equal(r1.code, 0);
  const before = readFileSync(m);
  patch(img, 0, pattern(MiB, 6));
  // the reader goes away after 100 bytes
  const env = { ...process.env, PATH: `${BIN}:${process.env.PATH}`, NO_COLOR: '1' };
  const p = spawnSync('bash', ['-c', `set -o pipefail; dr-tap scan p.img --manifest p.manifest | head -c 100 > /dev/null`], { cwd: d, env });
  t.not(p.status, 0, 'the scan fails');
  t.ok(readFileSync(m).equals(before), 'manifest untouched');
  t.same(readdirSync(d).filter((f) => f.includes('.tmp-')), [], 'no temp manifest left behind');
  // writing to a full or unwritable output fails the same way
  const full = await run('sh', ['-c', `exec ${BIN}dr-tap scan p.img --manifest p.manifest > /dev/full`], { cwd: d });
  t.equal(full.code, 3);
  t.match(full.stderr, /no space left on device \(DR_NO_SPACE\)|DR_IO/);
  t.ok(readFileSync(m).equals(before), 'manifest still untouched');
  const r2 = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.equal(r2.code, 0, r2.stderr);
  const w = kinds(decodeStream(r2.stdout)).filter((r) => r.type === 'write');
  t.equal(w.reduce((n, r) => n + (r.type === 'write' ? r.data.length : 0), 0), MiB, 'the changed MiB is sent again');
  t.equal(decodeStream(r2.stdout)[0]!.type === 'header' && (decodeStream(r2.stdout)[0] as { firstSeq: number }).firstSeq, 3, 'and it takes the seq the failed run would have had');
  t.notOk(readFileSync(m).equals(before), 'now the manifest moved on');
});

t.test('block device: scan a loop device', async (t) => {
  const d = tempDir(t, 'drkit-scan-');
  const img = join(d, 'loop.img');
  writeFileSync(img, Buffer.alloc(4 * MiB));
  patch(img, MiB, pattern(64 * KiB, 8));
  patch(img, 4 * MiB - 1, Buffer.from([0xee]));
  let dev: string;
  try {
    dev = execFileSync('losetup', ['-f', '--show', img]).toString().trim();
  } catch (err) {
    t.fail(`losetup failed (root and loop devices are needed): ${(err as Error).message}`);
    return;
  }
  t.teardown(() => {
    execFileSync('losetup', ['-d', dev]);
  });
  const m = join(d, 'loop.manifest');
  const r = await run('dr-tap', ['scan', dev, '--manifest', m, '--volume', 'lv0', '--json'], { env: { DRKIT_THREADS: '2' } });
  t.equal(r.code, 0, r.stderr);
  const s = decodeStream(r.stdout);
  const vol = s[1]!;
  t.equal(vol.type === 'volume' && vol.size, 4 * MiB, 'device size learned (sysfs)');
  t.equal(vol.type === 'volume' && vol.name, 'lv0');
  const copy = join(d, 'copy');
  replay(r.stdout, copy);
  t.ok(readFileSync(copy).equals(readFileSync(img)), 'the stream rebuilds the device');
  const c = await run('dr-verify', ['compare', dev, copy]);
  t.equal(c.code, 0, 'dr-verify compare reads the device too');
});

t.test('bad input: other volume, resized image, damaged manifest, hashes manifest, unreadable image', async (t) => {
  const d = tempDir(t, 'drkit-scan-');
  const img = join(d, 'b.img');
  const m = join(d, 'b.manifest');
  writeFileSync(img, pattern(256 * KiB, 3));
  t.equal((await run('dr-tap', ['scan', img, '--manifest', m, '--volume', 'db'])).code, 0);
  const other = await run('dr-tap', ['scan', img, '--manifest', m, '--volume', 'logs']);
  t.equal(other.code, 2);
  t.match(other.stderr, /^dr-tap: error: manifest .*b\.manifest \(volume "db" of 256 KiB, chunk 4\.00 KiB\) is for volume "db", not "logs" \(DR_VOLUME_MISMATCH\)\n$/);
  const bs = await run('dr-tap', ['scan', img, '--manifest', m, '--block-size', '512']);
  t.equal(bs.code, 2);
  t.match(bs.stderr, /uses blocks of 4096 bytes, --block-size says 512 \(DR_BAD_MANIFEST\)/);
  writeFileSync(img, pattern(300 * KiB, 3));
  const resized = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.equal(resized.code, 2);
  t.match(resized.stderr, /is 307200 bytes but manifest .* recorded 262144: a resized volume needs a new manifest.*\(DR_VOLUME_MISMATCH\)/);
  const good = readFileSync(m);
  const bad = Buffer.from(good);
  bad[300] ^= 1;
  writeFileSync(m, bad);
  writeFileSync(img, pattern(256 * KiB, 3));
  const damaged = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.equal(damaged.code, 2);
  t.match(damaged.stderr, /manifest checksum mismatch \(altered or corrupted\) \(DR_BAD_MANIFEST\)/);
  t.equal(damaged.stdout.length, 0, 'nothing streamed from a damaged manifest');
  writeFileSync(m, (await run('dr-verify', ['hashes', img, '--chunk', '4K'])).stdout);
  const hashes = await run('dr-tap', ['scan', img, '--manifest', m]);
  t.equal(hashes.code, 2);
  t.match(hashes.stderr, /was made by dr-verify hashes, not dr-tap scan: it has no journal group \(DR_BAD_MANIFEST\)/);
  const missing = await run('dr-tap', ['scan', join(d, 'nope.img'), '--manifest', join(d, 'x')]);
  t.equal(missing.code, 3);
  t.match(missing.stderr, /^dr-tap: error: cannot open .*nope\.img: no such file or directory \(DR_IO\)\n$/);
});
