// dr-verify journal / restore / sign --journal on a real journal store built from
// dr-tap scan streams, with damaged segments and wrong points.
import t from 'tap';
import { openSync, readdirSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../helpers/run.js';
import { pattern, tempDir } from '../helpers/verify-replay.js';
import { appendStreams } from '../helpers/verify-store.js';

const KiB = 1024;
const MiB = 1 << 20;

function patch(file: string, offset: number, data: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}

async function scanned(t: { teardown(fn: () => void): void }, segmentSize?: number) {
  const d = tempDir(t, 'drkit-vjournal-');
  const img = join(d, 'data.img');
  const m = join(d, 'm');
  writeFileSync(img, Buffer.alloc(2 * MiB));
  patch(img, 0, pattern(256 * KiB, 1));
  const s1 = await run('dr-tap', ['scan', img, '--manifest', m]);
  const v1 = readFileSync(img);
  patch(img, 64 * KiB, pattern(8 * KiB, 2));
  patch(img, MiB, pattern(300 * KiB, 3));
  const s2 = await run('dr-tap', ['scan', img, '--manifest', m, '--mark', 'v2']);
  const dir = join(d, 'journal');
  await appendStreams(dir, [s1.stdout, s2.stdout], { segmentSize });
  writeFileSync(join(d, 'v1.img'), v1);
  return { d, img, dir, v1: join(d, 'v1.img') };
}

t.test('journal: a healthy store verifies; restore matches the right points', async (t) => {
  const { d, img, dir, v1 } = await scanned(t, 256 * KiB);
  const j = await run('dr-verify', ['journal', dir, '--json']);
  t.equal(j.code, 0, j.stderr + j.stdout.toString());
  const rep = JSON.parse(j.stdout.toString());
  t.equal(rep.ok, true);
  t.ok(rep.segments > 1, 'several segments (sealed ones checked against their index)');
  t.equal(rep.firstSeq, 1);
  t.equal(rep.marks, 1);

  const latest = await run('dr-verify', ['restore', dir, '--at', 'mark:v2', '--against', img]);
  t.equal(latest.code, 0, latest.stderr);
  t.match(latest.stdout.toString(), /result:\s+identical/);
  const old = await run('dr-verify', ['restore', dir, '--at', 'latest', '--against', v1, '--json']);
  t.equal(old.code, 1, 'the latest point is not the first version');
  const r = JSON.parse(old.stdout.toString());
  t.same(r.ranges, [{ offset: 64 * KiB, length: 8 * KiB }, { offset: MiB, length: 300 * KiB }]);
  // seq 2 is the FLUSH that closes the first scan (one WRITE of 256 KiB, then FLUSH)
  const first = await run('dr-verify', ['restore', dir, '--at', 'seq:2', '--against', v1]);
  t.equal(first.code, 0, first.stderr + first.stdout.toString());
  // against a manifest from the other site, over a pipe
  const h = await run('dr-verify', ['hashes', img, '--chunk', '64K']);
  const viaHashes = await run('dr-verify', ['restore', dir, '--at', 'latest', '--against-hashes', '-'], { input: h.stdout });
  t.equal(viaHashes.code, 0, viaHashes.stderr);
  const wrongChunk = await run('dr-verify', ['restore', dir, '--at', 'latest', '--against-hashes', '-', '--chunk', '4K'], { input: h.stdout });
  t.equal(wrongChunk.code, 2);
  t.match(wrongChunk.stderr, /was made with chunks of 65536 bytes, --chunk says 4096 \(DR_BAD_MANIFEST\)/);
  const bad = await run('dr-verify', ['restore', dir, '--at', 'mark:nope', '--against', img]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /\(DR_BAD_POINT\)\n$/);
  const both = await run('dr-verify', ['restore', dir, '--at', 'latest']);
  t.equal(both.code, 2);
  t.match(both.stderr, /exactly one of --against IMAGE or --against-hashes FILE \(see dr-verify --help\) \(DR_USAGE\)/);
  void d;
});

t.test('sign --journal: continues the store group and seq, and appends cleanly', async (t) => {
  const { img, dir } = await scanned(t);
  const before = JSON.parse((await run('dr-verify', ['journal', dir, '--json'])).stdout.toString());
  const s = await run('dr-verify', ['sign', img, '--journal', dir, '--chunk', '512K']);
  t.equal(s.code, 0, s.stderr);
  const v = JSON.parse((await run('dr-verify', ['stream', '-', '--json'], { input: s.stdout })).stdout.toString());
  t.equal(v.firstSeq, before.lastSeq + 1, 'the next seq of the store');
  t.equal(v.groupId, before.groupId, 'the store group');
  t.same(v.records, { volume: 1, signature: 4, end: 1 });
  await appendStreams(dir, [s.stdout]);
  const after = JSON.parse((await run('dr-verify', ['journal', dir, '--json'])).stdout.toString());
  t.equal(after.ok, true);
  t.equal(after.byType.signature, 4);
  const other = await run('dr-verify', ['sign', img, '--journal', dir, '--volume', 'other']);
  t.equal(other.code, 2);
  t.match(other.stderr, /has no volume "other" \(it has data\.img\) \(DR_VOLUME_MISMATCH\)/);
  const none = await run('dr-verify', ['sign', img, '--journal', join(dir, 'nope')]);
  t.equal(none.code, 2);
  t.match(none.stderr, /\(DR_NO_STORE\)\n$/);
});

t.test('journal: a damaged segment is found', async (t) => {
  const { dir } = await scanned(t, 256 * KiB);
  const segs = readdirSync(join(dir, 'segments')).filter((f) => f.endsWith('.drj')).sort();
  const victim = join(dir, 'segments', segs[0]!);
  const bytes = readFileSync(victim);
  bytes[bytes.length - 200] ^= 0x40; // inside the data of the first (sealed) segment
  writeFileSync(victim, bytes);
  const j = await run('dr-verify', ['journal', dir]);
  t.not(j.code, 0, 'not ok');
  t.match(j.stdout.toString() + j.stderr, /checksum|corrupt|DR_STORE_CORRUPT|DR_BAD_CHECKSUM|DR_TRAILER_MISMATCH/i);
});
