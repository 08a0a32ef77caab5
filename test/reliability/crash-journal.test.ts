// Crash loops of the journal store: a real `kill -9` of `dr-journal append` (fed a
// stream in random chunks) and of `dr-journal prune` at seeded random instants.
// After each kill: the store is valid (dr-verify journal), the durable seq never
// goes back (a `dr-journal last` taken while the append ran is still there), and a
// restart resumes after it. At the end: the same records as the reference, every
// mark restores to its reference image, latest equals the final image.
// Replay: DRKIT_RELIABILITY_SEED=<seed in the failure message>.
import t from 'tap';
import { join } from 'node:path';
import { makeWorkload } from '../helpers/workload.js';
import { figures, feed, rand, replay, rounds, runBin, seedFor, sleep, start, tempDir, killLeftovers } from '../helpers/reliability-common.js';
import { checkMarks, lastSeq, recordsMatch, verifyJournal } from '../helpers/reliability-store.js';

t.teardown(killLeftovers);
t.setTimeout(900_000); // the suite's machine may be busy: the per-step limits catch hangs
const f = figures(t, 'crash-journal');

t.test('kill -9 of dr-journal append at random instants, then resume', async (t) => {
  const seed = seedFor('journal-append');
  const r = rand(seed);
  const w = makeWorkload({
    seed,
    volumes: [{ name: 'db', size: 4 << 20, blockSize: 4096 }, { name: 'logs', size: 2 << 20, blockSize: 512 }],
    records: 700,
    markEvery: 140,
    maxWrite: 48 * 1024,
  });
  const work = tempDir(t);
  const store = join(work, 'J');
  const kills = rounds(14, 120);
  const history: string[] = [];
  let killed = 0;
  // rounds run: an append that hands every chunk to the kernel at once can store the whole stream in fewer rounds
  let ran = 0;
  for (let k = 0; k < kills; k++) {
    const before = await lastSeq(store);
    if (before === w.lastSeq) break;
    ran++;
    const stream = before === 0 ? w.stream : w.streamFrom(before + 1);
    // mostly mid-stream; sometimes right at the start or after the whole stream was written
    const roll = r();
    const killAt = roll < 0.1 ? Math.floor(r() * 200) : roll < 0.15 ? stream.length : Math.floor(r() * stream.length);
    const p = start('dr-journal', ['append', store, '--segment-size', '128K']);
    const fed = await feed(p, stream, killAt, () => 1 + Math.floor(r() * 96 * 1024));
    // a durable seq seen from outside while the append runs: it must survive the kill
    const seen = p.exited ? before : await lastSeq(store).catch(() => before);
    await sleep(Math.floor(r() * 25));
    const res = await p.kill9();
    const why = replay('journal-append', `kill ${k + 1} after ${fed} of ${stream.length} bytes from seq ${before + 1}`);
    if (res.signal === 'SIGKILL') {
      killed++;
      f.kills++;
    } else {
      t.ok(res.code === 0 || res.code === 3, `append exited by itself with 0 or 3 (truncated input): ${res.code} ${res.stderr.trim()} ${why}`);
    }
    const after = await lastSeq(store);
    history.push(`${fed}B->${after}`);
    t.ok(after >= Math.max(before, seen), `durable seq did not go back: ${before}/${seen} -> ${after} ${why}`);
    if (after < Math.max(before, seen)) f.lost++;
    t.equal(await verifyJournal(store), null, `store valid after the kill ${why}`);
    f.checks += 2;
  }
  t.ok(killed >= Math.floor(ran * 0.7) && killed > 0, `dr-journal append was really killed mid-run ${killed} times in ${ran} rounds ${replay('journal-append')}`);
  // finish: append what is missing
  const last = await lastSeq(store);
  if (last < w.lastSeq) {
    const fin = await runBin('dr-journal', ['append', store], { input: last === 0 ? w.stream : w.streamFrom(last + 1) });
    t.equal(fin.code, 0, `the final append completes ${fin.stderr.trim()} ${replay('journal-append')}`);
  }
  const why = replay('journal-append', history.join(' '));
  t.equal(await recordsMatch(store, w), null, `the store holds exactly the reference records ${why}`);
  t.equal(await verifyJournal(store), null, `store valid at the end ${why}`);
  await checkMarks(t, f, store, w, work, why);
});

t.test('kill -9 of dr-journal prune at random instants: window slides, nothing in it changes', async (t) => {
  const seed = seedFor('journal-prune');
  const r = rand(seed);
  const w = makeWorkload({ seed, volumes: [{ name: 'vol', size: 4 << 20, blockSize: 4096 }], records: 600, markEvery: 100, maxWrite: 64 * 1024 });
  const work = tempDir(t);
  const store = join(work, 'J');
  const app = await runBin('dr-journal', ['append', store, '--segment-size', '64K'], { input: w.stream });
  t.equal(app.code, 0, `store built ${app.stderr.trim()}`);
  const size = (await runBin('dr-journal', ['ls', store, '--json'])).stdout.toString();
  const total = Number(JSON.parse(size).segmentBytes);
  // calibrate: how long a prune runs here, so the kills land inside it
  const calib = join(work, 'calib');
  await runBin('cp', ['-a', store, calib]);
  const t0 = Date.now();
  const c = await runBin('dr-journal', ['prune', calib, '--keep-size', String(Math.floor(total / 2))]);
  const span = Math.max(150, Date.now() - t0);
  t.equal(c.code, 0, `a clean prune works ${c.stderr.trim()}`);
  const kills = rounds(8, 80);
  let killed = 0;
  let keep = total;
  for (let k = 0; k < kills; k++) {
    keep = Math.max(64 * 1024, Math.floor(keep * (0.75 + r() * 0.2)));
    const before = await lastSeq(store);
    const p = start('dr-journal', ['prune', store, '--keep-size', String(keep)], { stdin: 'ignore' });
    const at = Math.floor(r() * span * 1.1);
    await sleep(at);
    const res = await p.kill9();
    const why = replay('journal-prune', `kill ${k + 1} at ${at} ms of ~${span} ms, --keep-size ${keep}`);
    if (res.signal === 'SIGKILL') {
      killed++;
      f.kills++;
    } else t.equal(res.code, 0, `prune finished cleanly before the kill ${res.stderr.trim()} ${why}`);
    t.equal(await verifyJournal(store), null, `store valid after the kill ${why}`);
    t.equal(await lastSeq(store), before, `the last seq is unchanged by prune ${why}`);
    f.checks += 2;
  }
  t.ok(killed >= Math.floor(kills / 2), `dr-journal prune was really killed mid-run ${killed} times ${replay('journal-prune')}`);
  const fin = await runBin('dr-journal', ['prune', store, '--keep-size', String(keep)]);
  t.equal(fin.code, 0, `a last prune completes ${fin.stderr.trim()}`);
  const ls = JSON.parse((await runBin('dr-journal', ['ls', store, '--json'])).stdout.toString());
  t.ok(Number(ls.firstSeq) > w.firstSeq, `the window did slide (first seq ${ls.firstSeq}) ${replay('journal-prune')}`);
  await checkMarks(t, f, store, w, work, replay('journal-prune'), { firstSeq: Number(ls.firstSeq) });
  // the store is still appendable after the pruning and the kills
  const more = await runBin('dr-journal', ['mark', store, 'after-prune']);
  t.equal(more.code, 0, `a mark can still be appended ${more.stderr.trim()}`);
});
