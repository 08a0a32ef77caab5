// dr-restore --out FILE first reads the parts of the segments and base image that hold
// the volume's blocks front to back (page-cache prefetch, in windows of the chunk size),
// then writes the volume in order. With a small --buffer the windows are many and runs
// cross their edges, blocks written in pieces are put together by the reader, and a
// pruned store adds a base image: every mark must still equal its reference, zero
// blocks must stay holes, and the file equals the volume written to standard output.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../helpers/run.js';
import { StreamWriter } from '../../src/format/codec.js';
import { buildStore, tempDir } from '../helpers/restore-store.js';

/** Drop every file under `dir` from the page cache (posix_fadvise DONTNEED, by dd). */
function evict(dir: string): void {
  const r = spawnSync('sh', ['-c', 'sync; find "$1" -type f -exec dd of=/dev/null if={} iflag=nocache count=0 status=none \\;', 'evict', dir]);
  if (r.status !== 0) throw new Error(`evicting ${dir}: ${r.stderr}`);
}

type Built = Awaited<ReturnType<typeof buildStore>>;

/**
 * Every volume restored at each mark with the store out of the page cache first (so the
 * prefetch reads every file), then again after a prune that leaves a base image: each
 * must equal its reference.
 */
async function everyMarkBeforeAndAfterPrune(t: Test, { dir, work, w }: Built, buffer: string): Promise<void> {
  const check = async (label: string, marks: typeof w.marks): Promise<void> => {
    for (const m of marks) {
      for (const [v, vol] of w.volumes.entries()) {
        const out = path.join(work, `${label}-${m.name}-${vol.name}.img`);
        evict(dir);
        const r = await run('dr-restore', [dir, '--at', `mark:${m.name}`, '--volume', vol.name, '--out', out, '--buffer', buffer, '-v']);
        t.equal(r.code, 0, r.stderr);
        t.match(r.stderr, /prefetched [\d.]+ \w+ of the [\d.]+ \w+ of the journal it needs/, `${label}: the journal parts were read first`);
        t.ok(fs.readFileSync(out).equals(m.images[v]!), `${label}: mark ${m.name} ${vol.name} equals the reference`);
        fs.rmSync(out);
      }
    }
  };
  await check('segments', w.marks);
  const ls = JSON.parse((await run('dr-journal', ['ls', dir, '--json'])).stdout.toString());
  const p = await run('dr-journal', ['prune', dir, '--keep-size', String(Math.floor(ls.segmentBytes / 2)), '--json']);
  t.equal(p.code, 0, p.stderr);
  const firstSeq = JSON.parse(p.stdout.toString()).firstSeq as number;
  await check('base', w.marks.filter((m) => m.seq >= firstSeq));
}

t.test('--out after the prefetch equals the reference at every mark, with and without a base image', async (t) => {
  const built = await buildStore(t, { seed: 7311, records: 700, markEvery: 70, maxWrite: 256 * 1024 }, { segmentSize: '256K', parts: 2 });
  const { dir, work, w } = built;
  // 64K: prefetch windows of 64 KiB, so runs cross window edges
  await everyMarkBeforeAndAfterPrune(t, built, '64K');

  // the same bytes as the volume written in order to standard output
  const last = w.marks.at(-1)!;
  const out = path.join(work, 'last.img');
  t.equal((await run('dr-restore', [dir, '--at', `mark:${last.name}`, '--volume', 'db', '--out', out])).code, 0);
  const piped = await run('dr-restore', [dir, '--at', `mark:${last.name}`, '--volume', 'db', '--out', '-']);
  t.equal(piped.code, 0, piped.stderr);
  t.ok(fs.readFileSync(out).equals(piped.stdout), '--out FILE equals --out -');
});

t.test('zero blocks stay holes; data written after a ZERO is there', async (t) => {
  const work = tempDir(t);
  // two 4 KiB writes 4 MiB apart, a zeroed range over the second, a write into that range
  const sw = new StreamWriter({ groupId: Buffer.alloc(16, 7), firstSeq: 1 });
  const data = Buffer.alloc(4096, 0xab);
  const parts: Buffer[] = [sw.start(), ...sw.volume({ name: 'v', size: 8 << 20, blockSize: 4096, id: Buffer.alloc(16, 1) })];
  parts.push(...sw.record({ type: 'write', volume: 0, offset: 0, data }).parts);
  parts.push(...sw.record({ type: 'write', volume: 0, offset: 4 << 20, data }).parts);
  parts.push(...sw.record({ type: 'zero', volume: 0, offset: 4 << 20, length: 1 << 20 }).parts);
  parts.push(...sw.record({ type: 'write', volume: 0, offset: (4 << 20) + 8192, data }).parts);
  parts.push(...sw.end());
  const store = path.join(work, 'holes');
  const stream = path.join(work, 'holes.drj');
  fs.writeFileSync(stream, Buffer.concat(parts));
  t.equal((await run('dr-journal', ['append', store, stream])).code, 0);
  const out = path.join(work, 'holes.img');
  const r = await run('dr-restore', [store, '--at', 'latest', '--out', out]);
  t.equal(r.code, 0, r.stderr);
  const got = fs.readFileSync(out);
  const want = Buffer.alloc(8 << 20);
  data.copy(want, 0);
  data.copy(want, (4 << 20) + 8192);
  t.ok(got.equals(want), 'the bytes');
  t.ok(fs.statSync(out).blocks * 512 <= 64 * 1024, `${fs.statSync(out).blocks * 512} bytes allocated: the rest are holes`);
});

t.test('a volume of 32 MiB or more: the per-block reads run on a thread of their own', async (t) => {
  // with that thread, half of the files (segments, then the base image too) are prefetched there
  const built = await buildStore(t, { seed: 4242, records: 400, markEvery: 100, maxWrite: 256 * 1024, volumes: [{ name: 'big', size: 40 << 20, blockSize: 4096 }] }, { segmentSize: '1M' });
  await everyMarkBeforeAndAfterPrune(t, built, '1M');
});
