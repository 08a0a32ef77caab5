// dr-verify compare / hashes / sign as a user runs them: real files, real pipes,
// exit statuses, ranges and one-line errors.
import t from 'tap';
import { writeFileSync, readFileSync, truncateSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { run, BIN } from '../helpers/run.js';
import { decodeStream, pattern, tempDir } from '../helpers/verify-replay.js';

const MiB = 1 << 20;

t.test('compare: equal images exit 0', async (t) => {
  const d = tempDir(t);
  const data = pattern(3 * MiB + 123, 7);
  writeFileSync(join(d, 'a'), data);
  writeFileSync(join(d, 'b'), data);
  const r = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'b')]);
  t.equal(r.code, 0);
  t.match(r.stdout.toString(), /are identical \(3\.00 MiB compared/);
  t.equal(r.stderr, '');
});

t.test('compare: differing ranges, merged, human and exact (--json)', async (t) => {
  const d = tempDir(t);
  const a = pattern(4 * MiB, 3);
  const b = Buffer.from(a);
  b[5000] ^= 1; // chunk 1
  b[9000] ^= 1; // chunk 2, adjacent: merged with the one above
  b[2 * MiB] ^= 0xff; // alone
  b[4 * MiB - 1] ^= 1; // the very last byte
  writeFileSync(join(d, 'a'), a);
  writeFileSync(join(d, 'b'), b);
  const threads = { env: { DRKIT_THREADS: '2' } }; // worker threads even for a small image
  const r = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'b')], threads);
  t.equal(r.code, 1, 'different: exit 1');
  const text = r.stdout.toString();
  t.match(text, /differ: 3 ranges/);
  t.match(text, /at 4\.88 KiB: 3\.91 KiB/);
  t.match(text, /at 2\.00 MiB: 1 B/);
  const j = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'b'), '--json'], threads);
  t.equal(j.code, 1);
  const inline = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'b'), '--json'], { env: { DRKIT_THREADS: '0' } });
  t.same(JSON.parse(inline.stdout.toString()).ranges, JSON.parse(j.stdout.toString()).ranges, 'same ranges without threads');
  const rep = JSON.parse(j.stdout.toString());
  t.same(rep.ranges, [
    { offset: 5000, length: 4001 },
    { offset: 2 * MiB, length: 1 },
    { offset: 4 * MiB - 1, length: 1 },
  ], 'exact offsets');
  t.equal(rep.equal, false);
  // a coarser chunk merges more
  const c = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'b'), '--json', '--chunk', '4M']);
  t.same(JSON.parse(c.stdout.toString()).ranges, [{ offset: 5000, length: 4 * MiB - 5000 }]);
});

t.test('compare: different sizes are reported, common part compared, exit 1', async (t) => {
  const d = tempDir(t);
  const a = pattern(2 * MiB, 5);
  writeFileSync(join(d, 'a'), a);
  writeFileSync(join(d, 'short'), a.subarray(0, MiB + 10));
  const r = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'short')]);
  t.equal(r.code, 1);
  t.match(r.stdout.toString(), /sizes differ: .*a is 2\.00 MiB \(2097152 bytes\), .*short is 1\.00 MiB \(1048586 bytes\); compared the first/);
  t.match(r.stdout.toString(), /common 1\.00 MiB are identical/);
  const b = Buffer.from(a.subarray(0, MiB + 10));
  b[100] ^= 1;
  writeFileSync(join(d, 'short'), b);
  const j = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'short'), '--json']);
  const rep = JSON.parse(j.stdout.toString());
  t.equal(rep.sizesDiffer, true);
  t.equal(rep.compared, MiB + 10);
  t.same(rep.ranges, [{ offset: 100, length: 1 }]);
});

t.test('compare: unreadable inputs and bad usage', async (t) => {
  const d = tempDir(t);
  writeFileSync(join(d, 'a'), pattern(4096));
  const missing = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'nope')]);
  t.equal(missing.code, 3);
  t.match(missing.stderr, /^dr-verify: error: cannot open .*nope: no such file or directory \(DR_IO\)\n$/);
  mkdirSync(join(d, 'dir'));
  const dir = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'dir')]);
  t.equal(dir.code, 3);
  t.match(dir.stderr, /dir is not a regular file or a block device \(DR_IO\)/);
  const one = await run('dr-verify', ['compare', join(d, 'a')]);
  t.equal(one.code, 2);
  t.match(one.stderr, /compare needs two images.*\(DR_USAGE\)/);
  const chunk = await run('dr-verify', ['compare', join(d, 'a'), join(d, 'a'), '--chunk', '1000']);
  t.equal(chunk.code, 2);
  t.match(chunk.stderr, /chunk size 1000 must be a power of two/);
});

t.test('hashes: round trip over a pipe, like ssh drsite dr-verify hashes | dr-verify compare --against-hashes -', async (t) => {
  const d = tempDir(t);
  const a = pattern(5 * MiB + 4096, 11);
  writeFileSync(join(d, 'prod'), a);
  writeFileSync(join(d, 'replica'), a);
  const sh = (cmd: string) => spawnSync('sh', ['-c', cmd], { cwd: d, env: { ...process.env, PATH: `${BIN}:${process.env.PATH}`, NO_COLOR: '1' } });
  const same = sh('DRKIT_THREADS=2 dr-verify hashes replica --chunk 64K | DRKIT_THREADS=2 dr-verify compare prod --against-hashes -');
  t.equal(same.status, 0, same.stderr.toString());
  t.match(same.stdout.toString(), /prod and standard input are identical/);

  const b = Buffer.from(a);
  b[3 * MiB + 17] ^= 1;
  writeFileSync(join(d, 'replica'), b);
  const diff = sh('dr-verify hashes replica | dr-verify compare prod --against-hashes - --json');
  t.equal(diff.status, 1);
  const rep = JSON.parse(diff.stdout.toString());
  t.same(rep.ranges, [{ offset: 3 * MiB, length: 65536 }], 'the differing 64 KiB chunk');

  // the manifest format: header, 32 bytes per chunk, trailer = sha256 of all before it
  const m = (await run('dr-verify', ['hashes', join(d, 'prod'), '--chunk', '1M'])).stdout;
  t.equal(m.length, 192 + 6 * 32 + 32);
  t.equal(m.subarray(0, 8).toString('latin1'), '\x89DRH\r\n\x1a\n');
  t.equal(m.readUInt32LE(16), MiB, 'chunk size in the header');
  t.equal(Number(m.readBigUInt64LE(24)), a.length, 'volume size in the header');
  t.equal(m.toString('utf8', 90, 90 + m.readUInt16LE(88)), 'prod', 'volume name in the header');
  const d0 = createHash('sha256').update(a.subarray(0, MiB)).digest();
  t.ok(m.subarray(192, 224).equals(d0), 'first digest is sha256 of the first chunk');
  const last = createHash('sha256').update(a.subarray(5 * MiB)).digest();
  t.ok(m.subarray(192 + 5 * 32, 192 + 6 * 32).equals(last), 'last digest covers the partial last chunk');
  t.ok(m.subarray(m.length - 32).equals(createHash('sha256').update(m.subarray(0, m.length - 32)).digest()), 'self-checksum');
});

t.test('hashes: wrong chunk size, wrong volume, damaged or truncated manifest: clear errors', async (t) => {
  const d = tempDir(t);
  writeFileSync(join(d, 'img'), pattern(MiB, 2));
  const m = (await run('dr-verify', ['hashes', join(d, 'img'), '--chunk', '4K', '--volume', 'db'])).stdout;
  writeFileSync(join(d, 'm'), m);
  const chunk = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', join(d, 'm'), '--chunk', '64K']);
  t.equal(chunk.code, 2);
  t.match(chunk.stderr, /^dr-verify: error: manifest .*m \(volume "db" of 1\.00 MiB, chunk 4\.00 KiB\) was made with chunks of 4096 bytes, --chunk says 65536 \(DR_BAD_MANIFEST\)\n$/);
  const vol = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', join(d, 'm'), '--volume', 'logs']);
  t.equal(vol.code, 2);
  t.match(vol.stderr, /is for volume "db", not "logs" \(DR_VOLUME_MISMATCH\)/);
  const ok = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', join(d, 'm'), '--volume', 'db']);
  t.equal(ok.code, 0);

  const flipped = Buffer.from(m);
  flipped[192 + 40] ^= 1; // a digest altered in transit
  const bad = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', '-'], { input: flipped });
  t.equal(bad.code, 2, 'an altered manifest is refused, not reported as a difference');
  t.match(bad.stderr, /standard input: manifest checksum mismatch \(altered or corrupted\) \(DR_BAD_MANIFEST\)/);
  const cut = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', '-'], { input: m.subarray(0, 1000) });
  t.equal(cut.code, 2);
  t.match(cut.stderr, /standard input is truncated: digests end after chunk 25 of 256 \(DR_BAD_MANIFEST\)/);
  const notm = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', join(d, 'img')]);
  t.equal(notm.code, 2);
  t.match(notm.stderr, /img is not a valid hash manifest: bad magic \(DR_BAD_MANIFEST\)/);
  // a manifest of a bigger volume: sizes differ, common part compared
  writeFileSync(join(d, 'big'), Buffer.concat([pattern(MiB, 2), pattern(4096, 9)]));
  const bm = (await run('dr-verify', ['hashes', join(d, 'big'), '--chunk', '4K'])).stdout;
  const big = await run('dr-verify', ['compare', join(d, 'img'), '--against-hashes', '-', '--json'], { input: bm });
  t.equal(big.code, 1);
  const rep = JSON.parse(big.stdout.toString());
  t.equal(rep.sizesDiffer, true);
  t.same(rep.ranges, []);
});

t.test('sign: a valid stream of SIGNATURE records that dr-verify stream accepts', async (t) => {
  const d = tempDir(t);
  const img = pattern(2 * MiB + 512, 4);
  writeFileSync(join(d, 'disk.img'), img);
  const r = await run('dr-verify', ['sign', join(d, 'disk.img'), '--chunk', '1M', '--group', '0123456789abcdef0123456789abcdef', '--first-seq', '41']);
  t.equal(r.code, 0, r.stderr);
  writeFileSync(join(d, 's.drj'), r.stdout);
  const v = await run('dr-verify', ['stream', join(d, 's.drj'), '--json']);
  t.equal(v.code, 0, v.stderr);
  const s = JSON.parse(v.stdout.toString());
  t.equal(s.groupId, '01234567-89ab-cdef-0123-456789abcdef');
  t.same(s.records, { volume: 1, signature: 3, end: 1 });
  t.equal(s.firstSeq, 41);
  t.equal(s.lastSeq, 43);
  t.equal(s.volumes[0].name, 'disk.img');
  t.equal(s.volumes[0].size, img.length);
  const items = decodeStream(r.stdout).filter((i) => i.type === 'signature');
  const want = [[0, MiB], [MiB, MiB], [2 * MiB, 512]];
  items.forEach((it, i) => {
    if (it.type !== 'signature') return;
    t.same([it.offset, it.length], want[i]);
    t.ok(it.digest.equals(createHash('sha256').update(img.subarray(it.offset, it.offset + it.length)).digest()), `signature ${i} is sha256 of its chunk`);
  });
  truncateSync(join(d, 'disk.img'), 0);
  const tty = await run('dr-verify', ['sign', join(d, 'disk.img'), '--first-seq', '0']);
  t.equal(tty.code, 2);
  t.match(tty.stderr, /--first-seq 0 must be a whole number from 1 \(DR_USAGE\)/);
  void readFileSync;
});
