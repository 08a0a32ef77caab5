// Real kill -9 of dr-journal append and prune at random (seeded) instants, then
// reopen: nothing durable is lost, a torn tail is trimmed with a warning, every
// point of the window still restores exactly, and the store is still appendable.
// Rerun a failure with DRKIT_CRASH_SEED=<the seed printed>.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { JournalStore } from '../../src/store/index.js';
import { createLogger } from '../../src/cli/log.js';
import { BIN, childEnv, genStream, journal, reference, restream, rng, tmpdir, type GenStream } from '../helpers/store-streams.js';

const seed = Number(process.env.DRKIT_CRASH_SEED ?? (Date.now() % 1_000_000));
t.comment(`crash test seed ${seed} (rerun with DRKIT_CRASH_SEED=${seed})`);

function quietLog(lines: string[]) {
  const log = createLogger('test', -1);
  log.warn = (m: string) => void lines.push(m);
  return log;
}

async function catBytes(store: JournalStore): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of store.catStream()) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The stored records, byte for byte, must be the first `last` records of the input stream. */
function samePrefix(g: GenStream, out: Buffer, last: number): boolean {
  const start = g.ranges.get(1)![0];
  const headLen = start; // header and VOLUME records are the same length in both
  const end = last === 0 ? start : g.ranges.get(last)![1];
  return out.subarray(headLen, out.length - 80).equals(g.bytes.subarray(start, end));
}

function readDurableSeq(dir: string): number {
  try {
    const b = fs.readFileSync(path.join(dir, 'durable'));
    return b.length === 24 ? Number(b.readBigUInt64LE(0)) : 0;
  } catch {
    return 0;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test(`kill -9 during append (seed ${seed})`, async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const r = rng(seed);
  const g = genStream({ seed, records: 1000, flushEvery: 25, maxBlocks: 4, volumes: [{ name: 'd', size: 4 << 20 }] });
  const file = path.join(dir, 'in.drj');
  fs.writeFileSync(file, g.bytes);
  let killedMidway = 0;
  let stored = 0;
  for (let i = 0; i < 5; i++) {
    // a sender resumes after what is stored; feed the stream in pieces, and kill at a
    // random instant after a random share of it was sent
    const bytes = stored === 0 ? g.bytes : restream(g, stored + 1);
    const child = spawn(process.execPath, [BIN, 'append', store, '--segment-size', '256K'], { stdio: ['pipe', 'ignore', 'pipe'], env: childEnv() });
    child.stdin.on('error', () => undefined);
    const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    let running = true;
    void exited.then(() => (running = false));
    const share = 0.05 + r() * 0.95;
    const cutAt = Math.floor(bytes.length * share);
    for (let at = 0; at < cutAt && running; at += 128 * 1024) {
      if (!child.stdin.write(bytes.subarray(at, Math.min(at + 128 * 1024, cutAt)))) await new Promise((res) => child.stdin.once('drain', res));
      await sleep(2);
    }
    const delay = Math.floor(r() * 40);
    await sleep(delay);
    const durable = readDurableSeq(store);
    if (running) {
      child.kill('SIGKILL');
      killedMidway++;
    }
    await exited;
    const warnings: string[] = [];
    const s = await JournalStore.open(store, { create: true, log: quietLog(warnings) });
    if (s.lastSeq < durable) t.fail(`seed ${seed} round ${i}: durable seq ${durable} lost (store has ${s.lastSeq})`);
    if (s.lastSeq > 0 && !samePrefix(g, await catBytes(s), s.lastSeq)) t.fail(`seed ${seed} round ${i}: stored records differ from the input`);
    stored = s.lastSeq;
    t.ok(s.lastSeq >= durable, `round ${i}: killed ${delay}ms after sending ${Math.round(share * 100)}%, store has seq ${s.lastSeq} >= durable ${durable}${warnings.length ? ` (${warnings.join('; ')})` : ''}`);
  }
  t.ok(killedMidway > 0, `${killedMidway} appends were killed while running`);

  let res = journal(['append', store], restream(g, stored + 1));
  t.equal(res.status, 0, res.err);
  let s = await JournalStore.open(store);
  t.equal(s.lastSeq, 1000, 'complete after a last resend');
  t.ok(samePrefix(g, await catBytes(s), 1000), `seed ${seed}: every record stored exactly once, in order`);

  // a write torn by a crash (half a record at the end of the open segment) is trimmed on open, with a warning
  const open = s.segments[s.segments.length - 1]!;
  t.notOk(open.summary.sealed, 'the last segment is open');
  const sizeBefore = fs.statSync(open.data).size;
  const [a, b] = g.ranges.get(1000)!;
  fs.appendFileSync(open.data, g.bytes.subarray(a, a + Math.floor((b - a) / 2)));
  res = journal(['last', store]);
  t.equal(res.stdout.toString(), '1000\n', 'torn record not counted');
  t.match(res.err, /^dr-journal: warning: trimmed a torn tail of \d+ bytes from \S+ \(.*\); last complete record is seq 1000\n$/, 'says so on stderr');
  t.equal(fs.statSync(open.data).size, sizeBefore, 'segment cut back to its last complete record');
  res = journal(['append', store], restream(g, 990));
  t.equal(res.status, 0, `still appendable: ${res.err}`);
});

t.test(`kill -9 during prune (seed ${seed})`, async (t) => {
  const dir = tmpdir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = path.join(dir, 'j');
  const r = rng(seed + 1);
  const vols = [{ name: 'a', size: 1 << 20, blockSize: 4096 }, { name: 'b', size: 256 * 1024, blockSize: 512 }];
  const marks = Array.from({ length: 10 }, (_, i) => ({ at: 50 + i * 110, name: `k${i}` }));
  const g = genStream({ seed: seed + 2, records: 1200, volumes: vols, flushEvery: 20, marks, unaligned: true, maxBlocks: 5 });
  let res = journal(['append', store, '--segment-size', '64K'], g.bytes);
  t.equal(res.status, 0, res.err);
  const check = async (what: string): Promise<void> => {
    const s = await JournalStore.open(store);
    const points = [s.firstSeq - 1, ...s.marks().map((m) => m.seq), s.lastSeq, s.firstSeq + Math.floor(r() * (s.lastSeq - s.firstSeq))];
    let bad = 0;
    for (const seq of points) {
      const pit = await s.pointInTime(seq);
      const ref = reference(g.volumes, g.records, seq);
      for (const v of g.volumes) if (!(await pit.read(v.index, 0, v.size)).equals(ref[v.index]!)) bad++;
      await pit.release();
    }
    t.equal(bad, 0, `seed ${seed} ${what}: ${points.length} points of window ${s.firstSeq}..${s.lastSeq} restore exactly as the reference`);
  };
  let killed = 0;
  const sizes = ['900K', '700K', '500K', '300K'];
  for (const [i, keep] of sizes.entries()) {
    // kill after a random number of the steps prune reports with -v (base written, window moved, each removal)
    const child = spawn(process.execPath, [BIN, 'prune', store, '--keep-size', keep, '-v'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...childEnv(), DRKIT_TEST_PRUNE_PAUSE_MS: '3' } });
    const exited = new Promise<number | null>((res2) => child.on('exit', (c) => res2(c)));
    const killAfter = Math.floor(r() * 8);
    let steps = 0;
    let done = false;
    void exited.then(() => (done = true));
    const killedAt = new Promise<string>((res2) => {
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        for (const line of text.split('\n')) {
          if (!/prune: /.test(line)) continue;
          if (steps++ === killAfter && !done) {
            child.kill('SIGKILL');
            res2(line.replace(/^.*prune: /, ''));
          }
        }
      });
      void exited.then(() => res2(''));
    });
    const what = await killedAt;
    await exited;
    if (what) killed++;
    await check(`round ${i} (--keep-size ${keep}, ${what ? `killed after: ${what}` : 'finished'})`);
  }
  t.ok(killed > 0, `${killed} prunes were killed while running`);
  res = journal(['prune', store, '--keep-size', '100K']);
  t.equal(res.status, 0, res.err);
  await check('after a prune that finished');
  const base = fs.readdirSync(path.join(store, 'base'));
  t.same(base.filter((n) => n.includes('.tmp')), [], 'no temporary base files left');
  t.equal(base.filter((n) => n.endsWith('.img')).length, 2, 'one base generation left');
  const more = genStream({ seed: seed + 2, records: 1300, volumes: vols, flushEvery: 20, marks, unaligned: true, maxBlocks: 5 });
  res = journal(['append', store], more.bytes);
  t.equal(res.status, 0, `still appendable: ${res.err}`);
  const s = await JournalStore.open(store);
  t.equal(s.lastSeq, 1300);
});
