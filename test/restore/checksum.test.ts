// dr-restore checks the record checksum of every record whose data it uses: a byte
// flipped in a segment makes every way of restoring (a file, standard output, a tar,
// worker threads, an NBD export) fail with one clear line naming the segment and the
// record, and leaves no output file; a point that does not use the damaged record
// still restores exactly.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StreamWriter } from '../../src/format/codec.js';
import { newId } from '../../src/format/layout.js';
import { run } from '../helpers/run.js';
import { buildStore, requirePeers, serve, sha256, tempDir } from '../helpers/restore-store.js';

type Asserts = { match(found: string, wanted: RegExp): void; equal(found: unknown, wanted: unknown, msg?: string): void };
const oneLine = (t: Asserts, stderr: string, re: RegExp): void => {
  t.match(stderr, re);
  t.equal(stderr.trim().split('\n').length, 1, `one line on stderr: ${stderr}`);
};

/** Flip one byte at `at` of `file`. */
function flip(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ 0x10;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

/** [segment file, position] of the first occurrence of `needle` in the store's segments. */
function find(dir: string, needle: Buffer): [string, number] {
  const segs = path.join(dir, 'segments');
  for (const name of fs.readdirSync(segs).filter((n) => n.endsWith('.drj')).sort()) {
    const at = fs.readFileSync(path.join(segs, name)).indexOf(needle);
    if (at >= 0) return [path.join(segs, name), at];
  }
  throw new Error('bytes not found in any segment');
}

t.test('a small group: --out, --out -, --tar, an earlier point, dr-journal cat', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 7301, records: 300, markEvery: 60 }, { segmentSize: '256K' });
  // the last WRITE of 64 bytes or more whose byte 17 no later record covers: it is in the latest image
  const covers = (r: (typeof w.records)[number], volume: number, byte: number): boolean =>
    (r.type === 'write' && r.volume === volume && r.offset <= byte && byte < r.offset + r.data.length)
    || (r.type === 'zero' && r.volume === volume && r.offset <= byte && byte < r.offset + r.length);
  const i = w.records.findLastIndex((r, k) => r.type === 'write' && r.data.length >= 64 && !w.records.slice(k + 1).some((l) => covers(l, r.volume, r.offset + 17)));
  const rec = w.records[i]!;
  if (rec.type !== 'write') throw new Error('unreachable');
  const [seg, at] = find(dir, rec.data.subarray(0, 64));
  flip(seg, at + 17);
  const segName = path.basename(seg);
  const recordAt = at - 48;
  const damaged = new RegExp(`^dr-restore: error: segment \\S*${segName} is corrupt at byte ${recordAt}: record checksum mismatch \\(seq ${rec.seq}\\) \\(DR_STORE_CORRUPT\\)\\n$`);
  const vol = w.volumes[rec.volume]!.name;

  const out = path.join(work, 'latest.img');
  const r = await run('dr-restore', [dir, '--at', 'latest', '--volume', vol, '--out', out]);
  t.equal(r.code, 2, '--out: exit 2');
  oneLine(t, r.stderr, damaged);
  t.notOk(fs.existsSync(out), 'no output file');
  t.same(fs.readdirSync(work).filter((n) => n.includes('.tmp')), [], 'no temporary file left');

  const s = await run('dr-restore', [dir, '--at', 'latest', '--volume', vol, '--out', '-']);
  t.equal(s.code, 2, '--out -: exit 2');
  oneLine(t, s.stderr, damaged);
  t.ok(s.stdout.length < w.volumes[rec.volume]!.size, 'the stream stops before the damaged bytes');

  const tarFile = path.join(work, 'group.tar');
  const g = await run('dr-restore', [dir, '--at', 'latest', '--tar', tarFile]);
  t.equal(g.code, 2, '--tar FILE: exit 2');
  oneLine(t, g.stderr, damaged);
  t.notOk(fs.existsSync(tarFile), 'no tar file');
  const gs = await run('dr-restore', [dir, '--at', 'latest', '--tar']);
  t.equal(gs.code, 2, '--tar to standard output: exit 2, no crash');
  oneLine(t, gs.stderr, damaged);

  // a point before the damaged record does not read it: restored exactly
  const before = path.join(work, 'before.img');
  const b = await run('dr-restore', [dir, '--at', `seq:${rec.seq - 1}`, '--volume', vol, '--out', before]);
  t.equal(b.code, 0, b.stderr);
  t.equal(sha256(fs.readFileSync(before)), sha256(w.imagesAt(rec.seq - 1)[rec.volume]!), 'the point before the damage is exact');

  // the other volume of the group does not use it either
  const other = w.volumes.find((v) => v.name !== vol)!;
  const o = await run('dr-restore', [dir, '--at', 'latest', '--volume', other.name, '--out', path.join(work, 'other.img')]);
  t.equal(o.code, 0, o.stderr);
  t.ok(fs.readFileSync(path.join(work, 'other.img')).equals(w.final[w.volumes.indexOf(other)]!), 'the other volume is exact');

  const c = await run('dr-journal', ['cat', dir]);
  t.equal(c.code, 2, 'dr-journal cat refuses the damaged segment too');
  t.match(c.stderr, new RegExp(`${segName} is corrupt at byte ${recordAt}: record checksum mismatch \\(seq ${rec.seq}\\)`));
});

t.test('a 48 MiB volume: the read thread, --jobs 2 and an NBD export check what they read', async (t) => {
  if (!requirePeers(t, ['qemu-io'])) return;
  const work = tempDir(t);
  const dir = path.join(work, 'store');
  const size = 48 << 20;
  const sw = new StreamWriter({ groupId: newId(), firstSeq: 1 });
  const parts: Buffer[] = [sw.start(), ...sw.volume({ name: 'big', size, blockSize: 4096, id: newId() })];
  const image = Buffer.alloc(size);
  const write = (offset: number, data: Buffer): void => {
    parts.push(...sw.record({ type: 'write', volume: 0, offset, data }).parts);
    data.copy(image, offset);
  };
  for (let o = 0; o < size; o += 1 << 20) write(o, randomBytes(1 << 20)); // 1 MiB records
  for (let k = 0; k < 512; k++) write(((k * 7919) % (size / 4096)) * 4096, randomBytes(4096)); // 4 KiB ones over them
  parts.push(...sw.end());
  const stream = path.join(work, 's.drj');
  fs.writeFileSync(stream, Buffer.concat(parts));
  const a = await run('dr-journal', ['append', dir, stream, '--segment-size', '16M']);
  t.equal(a.code, 0, a.stderr);
  fs.rmSync(stream);

  const clean = path.join(work, 'clean.img');
  const ok = await run('dr-restore', [dir, '--at', 'latest', '--out', clean]);
  t.equal(ok.code, 0, ok.stderr);
  t.ok(fs.readFileSync(clean).equals(image), 'undamaged: exact');
  fs.rmSync(clean);

  // damage a 1 MiB record at 30 MiB, in a part no later 4 KiB write covers
  const victim = 30 << 20;
  let spot = victim + 512 * 1024;
  const overwritten = new Set<number>();
  for (let k = 0; k < 512; k++) overwritten.add(((k * 7919) % (size / 4096)) * 4096);
  while (overwritten.has(spot - (spot % 4096))) spot += 4096;
  const [seg, at] = find(dir, image.subarray(spot, spot + 64));
  flip(seg, at);
  const damaged = new RegExp(`^dr-restore: error: segment \\S*${path.basename(seg)} is corrupt at byte ${at - (spot - victim) - 48}: record checksum mismatch \\(seq \\d+\\) \\(DR_STORE_CORRUPT\\)\\n$`);

  for (const extra of [[], ['--jobs', '2']]) {
    const out = path.join(work, 'r.img');
    const r = await run('dr-restore', [dir, '--at', 'latest', '--out', out, ...extra]);
    t.equal(r.code, 2, `--out ${extra.join(' ')}: exit 2`);
    oneLine(t, r.stderr, damaged);
    t.notOk(fs.existsSync(out), 'no output file');
  }

  const sock = path.join(work, 'nbd.sock');
  const s = await serve(t, [dir, '--socket', sock, '--at', 'latest'], 1);
  const uri = s.exports[0]!.uri;
  const bad = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read ${spot - (spot % 4096)} 4096`, uri]);
  t.match(bad.stdout + bad.stderr, /read failed: Input\/output error/, 'a read of the damaged record fails with EIO');
  const good = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read ${10 << 20} 65536`, uri]);
  t.equal(good.code, 0, good.stderr);
  t.match(good.stdout, /read 65536\/65536 bytes/, 'other reads still work');
  t.match(s.stderr(), /is corrupt at byte \d+: record checksum mismatch/, 'the server says why on stderr');
  const stopped = await s.stop('SIGTERM');
  t.equal(stopped.code, 0, 'the server stops cleanly');
});
