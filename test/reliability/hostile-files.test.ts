// Hostile and broken side files: hash manifests (dr-verify compare --against-hashes,
// dr-tap scan --manifest), ship schedule files (dr-ship send --schedule), and a
// store whose store.json was edited to give a volume a name that escapes a directory
// (dr-restore --tar / --out, dr-apply --journal). Each is refused with its code and
// exit status (a damaged manifest is an error, never a reported difference), within a
// time limit, and nothing is written outside the target: a refused scan keeps its old
// manifest, a refused schedule ships nothing, no tar entry or file escapes.
import t from 'tap';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { badRefusal, figures, killLeftovers, rand, replay, runBin, seedFor, tempDir } from '../helpers/reliability-common.js';
import { makeWorkload } from '../helpers/workload.js';
import { treeDigest } from '../helpers/restore-store.js';
import { BIN } from '../helpers/run.js';

t.teardown(killLeftovers);
t.setTimeout(900_000);
const f = figures(t, 'hostile-files');
const LIMIT = 30_000;

/** Recompute the header CRC and the trailer of a manifest after tampering. */
function resealManifest(b: Buffer): Buffer {
  const out = Buffer.from(b);
  out.writeUInt32LE(crc32(out.subarray(0, 188)) >>> 0, 188);
  createHash('sha256').update(out.subarray(0, out.length - 32)).digest().copy(out, out.length - 32);
  return out;
}

t.test('malformed hash manifests: DR_BAD_MANIFEST, never a difference; a refused scan keeps its manifest', async (t) => {
  const seed = seedFor('manifests');
  const r = rand(seed);
  const dir = tempDir(t, 'drkit-rel-man-');
  const img = join(dir, 'vol.img');
  const data = Buffer.alloc(1 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(Math.floor(r() * 2 ** 32), i);
  writeFileSync(img, data);
  const good = join(dir, 'good.man');
  const s0 = await runBin('dr-tap', ['scan', img, '--manifest', good, '-o', join(dir, 's0.drj')]);
  t.equal(s0.code, 0, `first scan writes a manifest ${s0.stderr.trim()}`);
  const g = readFileSync(good);
  const chunks = (g.length - 192 - 32) / 32;
  const variants: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['not a manifest', Buffer.from('sha256sum output, not a manifest\n')],
    ['a journal stream instead', readFileSync(join(dir, 's0.drj')).subarray(0, 4096)],
    ['header only', g.subarray(0, 192)],
    ['cut in the digests', g.subarray(0, 192 + 32 * Math.floor(chunks / 2) + 7)],
    ['cut in the trailer', g.subarray(0, g.length - 5)],
    ['data after the trailer', Buffer.concat([g, Buffer.from('more')])],
    ['a digest altered (trailer mismatch)', (() => { const b = Buffer.from(g); b[192 + 40]! ^= 1; return b; })()],
    ['header CRC wrong', (() => { const b = Buffer.from(g); b[30]! ^= 1; return b; })()],
    ['version 2 (resealed)', (() => { const b = Buffer.from(g); b.writeUInt16LE(2, 8); return resealManifest(b); })()],
    ['header size 4096 (resealed)', (() => { const b = Buffer.from(g); b.writeUInt16LE(4096, 10); return resealManifest(b); })()],
    ['algorithm 7 (resealed)', (() => { const b = Buffer.from(g); b[12] = 7; return resealManifest(b); })()],
    ['digest length 200 (resealed)', (() => { const b = Buffer.from(g); b[13] = 200; return resealManifest(b); })()],
    ['chunk size 3000 (resealed)', (() => { const b = Buffer.from(g); b.writeUInt32LE(3000, 16); return resealManifest(b); })()],
    ['chunk size 0 (resealed)', (() => { const b = Buffer.from(g); b.writeUInt32LE(0, 16); return resealManifest(b); })()],
    ['chunk count 2^40 (resealed)', (() => { const b = Buffer.from(g); b.writeBigUInt64LE(2n ** 40n, 32); return resealManifest(b); })()],
    ['volume size 2^62, count to match (resealed)', (() => { const b = Buffer.from(g); b.writeBigUInt64LE(2n ** 62n, 24); b.writeBigUInt64LE(2n ** 62n / 4096n, 32); return resealManifest(b); })()],
    ['unknown flag bits (resealed)', (() => { const b = Buffer.from(g); b.writeUInt16LE(0xfff0, 14); return resealManifest(b); })()],
    ['volume name length 300 (resealed)', (() => { const b = Buffer.from(g); b.writeUInt16LE(300, 88); return resealManifest(b); })()],
    ['random bytes with a valid magic', (() => { const b = Buffer.alloc(192 + 32 * chunks + 32); for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256); g.copy(b, 0, 0, 8); return b; })()],
  ];
  for (const [name, bytes] of variants) {
    const why = replay('manifests', name);
    const m = join(dir, 'bad.man');
    writeFileSync(m, bytes);
    const c = await runBin('dr-verify', ['compare', img, '--against-hashes', m], { timeoutMs: LIMIT });
    f.malformed++;
    t.equal(badRefusal('dr-verify', c, 'DR_BAD_MANIFEST'), null, `dr-verify compare --against-hashes: ${name} (${c.stderr.trim().slice(0, 200)}) ${why}`);
    const p = await runBin('dr-verify', ['compare', img, '--against-hashes', '-'], { input: bytes, timeoutMs: LIMIT });
    f.malformed++;
    t.equal(badRefusal('dr-verify', p, 'DR_BAD_MANIFEST'), null, `dr-verify compare --against-hashes - (a pipe): ${name} (${p.stderr.trim().slice(0, 200)}) ${why}`);
    const out = join(dir, 'scan.drj');
    const s = await runBin('dr-tap', ['scan', img, '--manifest', m, '-o', out], { timeoutMs: LIMIT });
    f.malformed++;
    t.equal(badRefusal('dr-tap', s, 'DR_BAD_MANIFEST'), null, `dr-tap scan --manifest: ${name} (${s.stderr.trim().slice(0, 200)}) ${why}`);
    t.ok(readFileSync(m).equals(bytes), `the refused manifest is left as it was (not replaced) ${why}`);
  }
  // the good manifest still works, both ways
  const ok = await runBin('dr-verify', ['compare', img, '--against-hashes', good]);
  t.equal(ok.code, 0, `the good manifest compares equal ${ok.stderr.trim()}`);
  f.bytesCompared += data.length;
});

t.test('malformed schedule files: DR_BAD_SCHEDULE before anything is shipped, nothing run by a shell', async (t) => {
  const seed = seedFor('schedules');
  const dir = tempDir(t, 'drkit-rel-sched-');
  const w = makeWorkload({ seed, volumes: [{ name: 'v', size: 1 << 20, blockSize: 4096 }], records: 20, markEvery: 10 });
  const src = join(dir, 'src');
  const a = await runBin('dr-journal', ['append', src], { input: w.stream });
  t.equal(a.code, 0, 'source store');
  const canary = join(dir, 'pwned');
  const variants: Array<[string, string | Buffer]> = [
    ['hour 25', 'mon-fri 25:00-18:00 10M 5m\n'],
    ['minute 61', 'mon 08:61-09:00 10M 5m\n'],
    ['unknown day', 'xyz * 10M 5m\n'],
    ['day range backwards', 'fri-mon-tue * 10M 5m\n'],
    ['negative rate', 'mon-fri 08:00-18:00 -5M 5m\n'],
    ['rate unit Q', 'mon 08:00-18:00 10Q 5m\n'],
    ['rate of 40 digits', `mon * ${'9'.repeat(40)}T 5m\n`],
    ['bad RPO', 'mon * 10M five-minutes\n'],
    ['missing fields', 'mon 08:00\n'],
    ['too many fields', 'mon * 10M 5m extra\n'],
    ['hours without a dash', 'mon 0800 10M 5m\n'],
    ['binary garbage', Buffer.from([0x89, 0x00, 0xff, 0xfe, 0x0a, 0x00, 0x41])],
    ['a NUL in a line', 'mon\0 * 10M 5m\n'],
    ['a 16 KiB line', `mon * 10M ${'5'.repeat(16 << 10)}m\n`],
    // regression (seed 20261121): an RPO too large for a number was taken as Infinity and accepted
    ['an RPO of 400 digits', `mon * 10M ${'9'.repeat(400)}m\n`],
    ['a bare RPO of 400 digits', `mon * 10M ${'9'.repeat(400)}\n`],
    ['shell injection in a field', `$(touch ${canary}) * unlimited 30s\n`],
    ['backticks in a field', `\`touch ${canary}\` * unlimited 30s\n`],
  ];
  for (const [name, text] of variants) {
    const why = replay('schedules', name);
    const file = join(dir, 'schedule');
    writeFileSync(file, text);
    const dst = join(dir, `dst-${variants.findIndex((v) => v[0] === name)}`);
    const res = await runBin('dr-ship', ['send', src, '--once', '--schedule', file, '--', `${BIN}dr-ship`, 'receive', dst], { timeoutMs: LIMIT });
    f.malformed++;
    t.equal(badRefusal('dr-ship', res, 'DR_BAD_SCHEDULE'), null, `dr-ship send --schedule: ${name} (${res.stderr.trim().slice(0, 200)}) ${why}`);
    t.notOk(existsSync(join(dst, 'store.json')), `nothing was shipped ${why}`);
  }
  t.notOk(existsSync(canary), 'no schedule field reached a shell');
  const missing = await runBin('dr-ship', ['send', src, '--once', '--schedule', join(dir, 'nope'), '--', 'true']);
  f.malformed++;
  t.equal(badRefusal('dr-ship', missing, ['DR_IO', 'DR_BAD_SCHEDULE']), null, `a missing schedule file: one clean line (${missing.stderr.trim()})`);
});

t.test('volume names that escape a directory in an edited store.json: refused, nothing written outside', async (t) => {
  const seed = seedFor('store-names');
  const dir = tempDir(t, 'drkit-rel-names-');
  const w = makeWorkload({ seed, volumes: [{ name: 'vol', size: 1 << 20, blockSize: 4096 }], records: 30, markEvery: 10 });
  const base = join(dir, 'base');
  const a = await runBin('dr-journal', ['append', base], { input: w.stream });
  t.equal(a.code, 0, 'store built');
  const hostile = ['../escaped', '../../escaped-too', '/tmp/abs-escape', 'a/b', '..', '.', 'nul\u0000name', '-rf', 'x'.repeat(300)];
  const before = readdirSync(tmpdir()).filter((n) => /escape/.test(n));
  for (const name of hostile) {
    const why = replay('store-names', JSON.stringify(name));
    const sb = join(dir, `sb-${hostile.indexOf(name)}`);
    const store = join(sb, 'store');
    const out = join(sb, 'out');
    mkdirSync(out, { recursive: true });
    await runBin('cp', ['-a', base, store]);
    const metaFile = join(store, 'store.json');
    const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
    meta.volumes[0].name = name;
    writeFileSync(metaFile, JSON.stringify(meta, null, 1));
    const digest = treeDigest(store);
    const runs: Array<[string, string[]]> = [
      ['dr-restore', [store, '--at', 'latest', '--tar', join(out, 'all.tar')]],
      ['dr-restore', [store, '--at', 'latest', '--out', join(out, 'one.img')]],
      ['dr-restore', [store, '--list']],
      // one volume: --target IMAGE, the store names the volume
      ['dr-apply', ['--journal', store, '--target', join(out, 'replica.img')]],
      ['dr-verify', ['journal', store]],
    ];
    for (const [cmd, args] of runs) {
      const res = await runBin(cmd, args, { timeoutMs: LIMIT, cwd: out });
      f.malformed++;
      if (res.code === 0) {
        // accepted: then the name must not have reached the file system or the tar
        if (args.includes('--tar')) {
          const list = await runBin('tar', ['tf', join(out, 'all.tar')]);
          const entries = list.stdout.toString().split('\n').filter(Boolean);
          t.ok(entries.every((e) => !e.startsWith('/') && !e.split('/').includes('..')), `tar entries stay inside: ${entries.join(', ')} ${why}`);
        }
      } else {
        t.equal(badRefusal(cmd, res), null, `${cmd} ${args.includes('--tar') ? '--tar' : args.includes('--out') ? '--out' : args[0]}: one clean error line (${res.stderr.trim().slice(0, 200)}) ${why}`);
      }
    }
    const stray = readdirSync(sb).filter((n) => n !== 'store' && n !== 'out');
    t.same(stray, [], `nothing written beside the target directory ${why}`);
    t.same(treeDigest(store), digest, `the store was not modified ${why}`);
  }
  const after = readdirSync(tmpdir()).filter((n) => /escape/.test(n));
  t.same(after, before, 'nothing escaped into the temp directory');
  t.notOk(existsSync('/tmp/abs-escape'), 'nothing written at an absolute path');
});
