// dr-journal append from a regular file (`< file` and the FILE argument): the input is
// read into a few reused buffers and written out from them while the next chunk is
// checked, and segments are switched in the background. Records spanning read chunks,
// several segment switches per chunk, a resend and a corrupt record in mid-file must
// all come out exactly as from a pipe.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, childEnv, decode, genStream, journal, plain, snapshot, tmpdir } from '../helpers/store-streams.js';

function appendFromFile(store: string, file: string, extra: string[] = []): { status: number | null; out: string; err: string } {
  const fd = fs.openSync(file, 'r');
  try {
    const r = spawnSync(process.execPath, [BIN, 'append', store, ...extra], { stdio: [fd, 'pipe', 'pipe'], timeout: 60_000, env: childEnv() });
    return { status: r.status, out: r.stdout.toString(), err: r.stderr.toString() };
  } finally {
    fs.closeSync(fd);
  }
}

t.test('append < file: many read chunks and segment switches, resend, corrupt record', async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const g = genStream({ seed: 91, records: 1500, flushEvery: 50, maxBlocks: 4, volumes: [{ name: 'd', size: 8 << 20, blockSize: 4096 }] });
  t.ok(g.bytes.length > 4 << 20, `stream of ${g.bytes.length} bytes spans more read chunks than there are read buffers`);
  const file = path.join(dir, 's.drj');
  fs.writeFileSync(file, g.bytes);

  const store = path.join(dir, 'j');
  let r = appendFromFile(store, file, ['--segment-size', '256K', '--json']);
  t.equal(r.status, 0, r.err);
  t.same(JSON.parse(r.out), { appended: 1500, skipped: 0, firstSeq: 1, lastSeq: 1500, durableSeq: 1500 });
  const segments = fs.readdirSync(path.join(store, 'segments'));
  const data = segments.filter((n) => n.endsWith('.drj'));
  t.ok(data.length > 16, `${data.length} segments`);
  t.equal(segments.filter((n) => n.endsWith('.idx')).length, data.length - 1, 'every sealed segment has its index file');
  let c = journal(['cat', store]);
  t.equal(c.status, 0, c.err);
  t.same(decode(c.stdout).records.map(plain), g.records.map(plain), 'records equal the input');

  // the FILE argument form, as a resend: everything skipped, nothing changed
  const before = snapshot(store);
  const a = journal(['append', store, file, '--json']);
  t.equal(a.status, 0, a.err);
  t.match(JSON.parse(a.stdout.toString()), { appended: 0, skipped: 1500 });
  t.same(snapshot(store), before, 'resend changed nothing');

  // a bad payload byte in a WRITE record near the end: refused there, everything before it stored
  const victim = g.records.find((rec) => rec.seq >= 1200 && rec.type === 'write')!.seq;
  const bad = Buffer.from(g.bytes);
  const [start, end] = g.ranges.get(victim)!;
  bad[end - 10] = bad[end - 10]! ^ 0xff;
  const badFile = path.join(dir, 'bad.drj');
  fs.writeFileSync(badFile, bad);
  const store2 = path.join(dir, 'j2');
  r = appendFromFile(store2, badFile, ['--segment-size', '256K']);
  t.equal(r.status, 2, 'exit 2');
  t.equal(r.err, `dr-journal: error: record checksum mismatch (seq ${victim}) at byte ${start} (last good seq ${victim - 1}) (DR_BAD_CHECKSUM)\n`, 'one line naming the record and byte');
  c = journal(['cat', store2]);
  t.equal(c.status, 0, c.err);
  t.same(decode(c.stdout).records.map(plain), g.records.slice(0, victim - 1).map(plain), 'the valid prefix is stored');
});

t.test('append < a file larger than the head start: main thread first, then a reader thread', async (t) => {
  // CheckedFileReader reads the first chunks on the main thread while its reader thread
  // starts, then hands it the reading (and the CRC walk, mid-record): the records must come
  // out exactly, and a damaged record after the hand-over is reported as always
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const g = genStream({ seed: 92, records: 1600, flushEvery: 40, maxBlocks: 32, volumes: [{ name: 'd', size: 64 << 20, blockSize: 4096 }] });
  t.ok(g.bytes.length > 64 << 20, `stream of ${g.bytes.length} bytes`);
  const file = path.join(dir, 's.drj');
  fs.writeFileSync(file, g.bytes);

  const store = path.join(dir, 'j');
  let r = appendFromFile(store, file, ['-v']);
  t.equal(r.status, 0, r.err);
  const read = /standard input: ([\d.]+) (B|KiB|MiB) read on the main thread, the rest on a reader thread/.exec(r.err);
  t.ok(read, `a reader thread took over: ${r.err.trim().split('\n').at(-1)}`);
  const unit = { B: 1, KiB: 1 << 10, MiB: 1 << 20 }[read?.[2] as 'B' | 'KiB' | 'MiB'] ?? NaN;
  t.ok(Number(read?.[1]) * unit <= 64 << 20, 'after at most 64 MiB (the head start is bounded)');
  const c = journal(['cat', store]);
  t.equal(c.status, 0, c.err);
  t.same(decode(c.stdout).records.map(plain), g.records.map(plain), 'records equal the input');

  // a bad payload byte in the last MiB
  const victim = g.records.findLast((rec) => rec.type === 'write' && g.ranges.get(rec.seq)![1] < g.bytes.length - 100)!.seq;
  const [start, end] = g.ranges.get(victim)!;
  t.ok(start > g.bytes.length - (1 << 20), 'the damaged record is in the last read chunk');
  const bad = Buffer.from(g.bytes);
  bad[end - 10] = bad[end - 10]! ^ 0xff;
  const badFile = path.join(dir, 'bad.drj');
  fs.writeFileSync(badFile, bad);
  r = appendFromFile(path.join(dir, 'j2'), badFile);
  t.equal(r.status, 2, 'exit 2');
  t.equal(r.err, `dr-journal: error: record checksum mismatch (seq ${victim}) at byte ${start} (last good seq ${victim - 1}) (DR_BAD_CHECKSUM)\n`, 'one line naming the record and byte');
  t.equal(journal(['last', path.join(dir, 'j2')]).stdout.toString(), `${victim - 1}\n`, 'everything before it is stored');
});
