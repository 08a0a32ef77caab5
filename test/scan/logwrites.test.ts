// dr-tap logwrites against a real producer (qemu's blklogwrites driver writes the
// dm-log-writes format): replaying the stream must give exactly the image qemu wrote.
// Marks and 4 KiB sectors, which qemu does not produce, come from a log built here
// to the kernel's layout.
import t from 'tap';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { run } from '../helpers/run.js';
import { decodeStream, havePeer, pattern, replay, tempDir } from '../helpers/verify-replay.js';

const MiB = 1 << 20;

function qemuIo(d: string, sectorSize: number, cmds: string[]): void {
  const opts = [
    'driver=blklogwrites', 'file.driver=file', `file.filename=${join(d, 'base.img')}`,
    'log.driver=file', `log.filename=${join(d, 'log.bin')}`, `log-sector-size=${sectorSize}`, 'log-append=off',
  ].join(',');
  execFileSync('qemu-io', ['--image-opts', opts, ...cmds.flatMap((c) => ['-c', c])], { stdio: ['ignore', 'ignore', 'pipe'] });
}

for (const sectorSize of [512, 4096]) {
  t.test(`qemu blklogwrites log (sector ${sectorSize}) -> stream -> the image qemu wrote`, async (t) => {
    if (!havePeer('qemu-io')) {
      t.fail('qemu-io (qemu-utils) is needed for this test');
      return;
    }
    const d = tempDir(t, 'drkit-logw-');
    writeFileSync(join(d, 'base.img'), Buffer.alloc(4 * MiB));
    closeSync(openSync(join(d, 'log.bin'), 'w'));
    qemuIo(d, sectorSize, [
      'write -P 0x55 0 64k',
      'flush',
      'write -P 0xaa 1M 8k',
      'write -P 0x11 12k 4k',
      'discard 0 4k',
      'write -z 2M 64k',
      'write -f -P 0x22 3M 4k',
      'writev -P 0x33 40k 4k 8k',
      'write -P 0x44 4088k 8k',
      'flush',
      'write -P 0x66 16k 4k',
    ]);
    const r = await run('dr-tap', ['logwrites', join(d, 'log.bin'), '--size', '4M', '--volume', 'qdisk']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, new RegExp(`entries \\(sector ${sectorSize}\\)`));
    const v = await run('dr-verify', ['stream', '-', '--json'], { input: r.stdout });
    t.equal(v.code, 0, 'a valid stream');
    const sum = JSON.parse(v.stdout.toString());
    t.equal(sum.volumes[0].name, 'qdisk');
    t.equal(sum.volumes[0].size, 4 * MiB);
    t.equal(sum.volumes[0].blockSize, sectorSize, 'the log sector size is the volume block size');
    t.ok(sum.records.flush >= 3, 'flushes (and the FUA write) became FLUSH records');
    t.equal(sum.records.zero, 1, 'the discard became a ZERO record');
    const items = decodeStream(r.stdout);
    // (qemu 7.2 emulates FUA on a file with a flush and logs the write without the FUA flag:
    // FUA entries are checked with the kernel-layout log below)
    const z = items.find((i) => i.type === 'zero');
    t.ok(z && z.type === 'zero' && z.discard && z.offset === 0 && z.length === 4096, 'discard 0 4k');
    const out = join(d, 'replayed.img');
    replay(r.stdout, out);
    t.ok(readFileSync(out).equals(readFileSync(join(d, 'base.img'))), 'replaying the stream gives exactly the image qemu wrote');
    const c = await run('dr-verify', ['compare', out, join(d, 'base.img')]);
    t.equal(c.code, 0);
    // without --size: the volume ends at the furthest byte written
    const r2 = await run('dr-tap', ['logwrites', join(d, 'log.bin'), '--json', '-o', join(d, 's.drj')]);
    t.equal(r2.code, 0, r2.stderr);
    t.equal(JSON.parse(r2.stdout.toString()).size, 4 * MiB);
  });
}

/** A dm-log-writes log laid out as the kernel writes it. */
function kernelLog(S: number, entries: Array<{ sector: number; nr: number; flags: number; data?: Buffer; mark?: string }>, nrEntries = entries.length): Buffer {
  const parts: Buffer[] = [];
  const sup = Buffer.alloc(S);
  sup.writeBigUInt64LE(0x6a736677736872n, 0);
  sup.writeBigUInt64LE(1n, 8);
  sup.writeBigUInt64LE(BigInt(nrEntries), 16);
  sup.writeUInt32LE(S, 24);
  parts.push(sup);
  for (const e of entries) {
    const h = Buffer.alloc(S);
    h.writeBigUInt64LE(BigInt(e.sector), 0);
    h.writeBigUInt64LE(BigInt(e.nr), 8);
    h.writeBigUInt64LE(BigInt(e.flags), 16);
    const mark = e.mark ? Buffer.from(e.mark) : Buffer.alloc(0);
    h.writeBigUInt64LE(BigInt(mark.length), 24);
    mark.copy(h, 32);
    parts.push(h);
    if (e.data) parts.push(e.data);
  }
  return Buffer.concat(parts);
}

t.test('kernel log: marks, discards, pre-flush writes; only committed entries count', async (t) => {
  const d = tempDir(t, 'drkit-logw-');
  const S = 4096;
  const a = pattern(2 * S, 1);
  const b = pattern(S, 2);
  const log = kernelLog(S, [
    { sector: 10, nr: 2, flags: 0, data: a },
    { sector: 0, nr: 0, flags: 1 }, // FLUSH
    { sector: 0, nr: 0, flags: 8, mark: 'fsync-done' }, // MARK
    { sector: 10, nr: 1, flags: 4 }, // DISCARD: no data follows
    { sector: 20, nr: 1, flags: 1 | 16, data: b }, // pre-flush write (METADATA annotation ignored)
    { sector: 40, nr: 1, flags: 2, data: b }, // FUA write
    { sector: 0, nr: 0, flags: 8, mark: `long\t${'é'.repeat(200)}` }, // a kernel mark may be longer than a MARK name
    { sector: 30, nr: 1, flags: 0, data: b }, // not committed: after nr_entries
  ], 7);
  writeFileSync(join(d, 'k.log'), log);
  const r = await run('dr-tap', ['logwrites', join(d, 'k.log'), '--size', '1M', '--group', 'ffeeddccbbaa99887766554433221100', '--first-seq', '100']);
  t.equal(r.code, 0, r.stderr);
  const items = decodeStream(r.stdout);
  const recs = items.filter((i) => i.type !== 'header' && i.type !== 'volume' && i.type !== 'end');
  t.same(recs.map((i) => [i.type, i.seq]), [['write', 100], ['flush', 101], ['mark', 102], ['zero', 103], ['flush', 104], ['write', 105], ['write', 106], ['flush', 107], ['mark', 108]]);
  const long = recs[8]!;
  t.ok(long.type === 'mark' && long.name.startsWith('long?éé') && Buffer.byteLength(long.name) <= 255, 'a long mark is cut to 255 bytes, control characters replaced');
  const fua = recs[6]!;
  t.ok(fua.type === 'write' && fua.fua && fua.offset === 40 * S, 'a FUA write keeps its FUA flag and is followed by a FLUSH');
  t.notOk(recs[5]!.type === 'write' && recs[5].fua, 'a plain write has no FUA flag');
  const m = recs[2]!;
  t.ok(m.type === 'mark' && m.name === 'fsync-done' && m.kind === 'user', 'the mark name');
  const w = recs[0]!;
  t.ok(w.type === 'write' && w.offset === 10 * S && w.data.equals(a), 'sector numbers are in log sectors');
  const h = items[0]!;
  t.ok(h.type === 'header' && h.groupId.toString('hex') === 'ffeeddccbbaa99887766554433221100', 'the group given');
  t.equal(items.filter((i) => i.type === 'write' && i.offset === 30 * S).length, 0, 'the uncommitted entry is not imported');
});

t.test('bad logs: clear errors', async (t) => {
  const d = tempDir(t, 'drkit-logw-');
  writeFileSync(join(d, 'not.log'), pattern(8192, 3));
  const notlog = await run('dr-tap', ['logwrites', join(d, 'not.log')]);
  t.equal(notlog.code, 2);
  t.match(notlog.stderr, /^dr-tap: error: .*not\.log is not a dm-log-writes log \(bad magic\) \(DR_BAD_MAGIC\)\n$/);
  const full = kernelLog(512, [{ sector: 8, nr: 4, flags: 0, data: pattern(2048, 4) }]);
  writeFileSync(join(d, 'cut.log'), full.subarray(0, full.length - 100));
  const cut = await run('dr-tap', ['logwrites', join(d, 'cut.log')]);
  t.equal(cut.code, 3);
  t.match(cut.stderr, /log ends inside the data of entry 0 .*\(DR_TRUNCATED\)/);
  writeFileSync(join(d, 'ok.log'), full);
  const small = await run('dr-tap', ['logwrites', join(d, 'ok.log'), '--size', '4096']);
  t.equal(small.code, 2);
  t.match(small.stderr, /writes up to byte 6144, past the end of a volume of 4096 bytes \(--size\) \(DR_OUT_OF_RANGE\)/);
  const badflags = kernelLog(512, [{ sector: 0, nr: 0, flags: 64 }]);
  writeFileSync(join(d, 'flags.log'), badflags);
  const bf = await run('dr-tap', ['logwrites', join(d, 'flags.log'), '--size', '1M']);
  t.equal(bf.code, 2);
  t.match(bf.stderr, /entry 0 has unknown flags 0x40 at byte 512 \(DR_BAD_RECORD\)/);
  const missing = await run('dr-tap', ['logwrites', join(d, 'none.log')]);
  t.equal(missing.code, 3);
  t.match(missing.stderr, /cannot open log .*none\.log: no such file or directory \(DR_IO\)/);
});
