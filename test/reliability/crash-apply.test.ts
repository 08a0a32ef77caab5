// Crash loop of dr-apply reading a journal store (--journal): a real `kill -9` at
// seeded random instants of its run (calibrated on a clean run), restart, and in
// between new records land in the store. The replica must end byte for byte equal
// to the reference, its state at the last seq; a replica stopped at a mark
// (--until mark:NAME) equals that mark's reference.
// Replay: DRKIT_RELIABILITY_SEED=<seed in the failure message>.
import t from 'tap';
import { join } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { makeWorkload } from '../helpers/workload.js';
import { compareFile, figures, killLeftovers, rand, replay, rounds, runBin, seedFor, sleep, start, tempDir } from '../helpers/reliability-common.js';

t.teardown(killLeftovers);
t.setTimeout(900_000); // the suite's machine may be busy: the per-step limits catch hangs
const f = figures(t, 'crash-apply');

t.test('kill -9 of dr-apply --journal at random instants while the store grows', async (t) => {
  const seed = seedFor('apply');
  const r = rand(seed);
  const w = makeWorkload({
    seed,
    volumes: [{ name: 'a', size: 6 << 20, blockSize: 4096 }, { name: 'b', size: 2 << 20, blockSize: 512 }],
    records: 900,
    markEvery: 150,
    maxWrite: 64 * 1024,
    signatures: true,
  });
  const work = tempDir(t);
  const store = join(work, 'J');
  // the store starts with the first third of the records, the rest arrives between kills
  const third = w.firstSeq + Math.floor(w.records.length / 3);
  const a0 = await runBin('dr-journal', ['append', store, '--segment-size', '256K'], { input: w.streamRange(w.firstSeq, third - 1, { end: false }) });
  t.ok(a0.code === 0 || a0.code === 3, `store built ${a0.stderr.trim()}`);
  const targets = (dir: string) => w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
  // calibrate: a clean apply of the whole workload into a scratch replica
  const scratch = join(work, 'scratch');
  await runBin('mkdir', ['-p', scratch]);
  const t0 = Date.now();
  const c = await runBin('dr-apply', ['--journal', store, ...targets(scratch)]);
  const span = Math.max(200, Date.now() - t0);
  t.equal(c.code, 0, `a clean apply works ${c.stderr.trim()}`);
  rmSync(scratch, { recursive: true, force: true });

  const rep = join(work, 'replica');
  await runBin('mkdir', ['-p', rep]);
  const kills = rounds(22, 150);
  const chunks = Math.max(1, Math.floor(kills / 2));
  let appended = third - 1;
  let killed = 0;
  const history: string[] = [];
  for (let k = 0; k < kills; k++) {
    // new records arrive in the store every other round
    if (k % 2 === 1 && appended < w.lastSeq) {
      const to = Math.min(w.lastSeq, appended + Math.ceil((w.lastSeq - third) / chunks));
      const a = await runBin('dr-journal', ['append', store], { input: w.streamRange(appended + 1, to, { end: to === w.lastSeq }) });
      t.ok(a.code === 0 || a.code === 3, `records ${appended + 1}..${to} appended ${a.stderr.trim()}`);
      appended = to;
    }
    const zero = r() < 0.3 ? ['--zero', 'write'] : [];
    const p = start('dr-apply', ['--journal', store, ...targets(rep), ...zero], { stdin: 'ignore' });
    // within the time a whole apply took: later applies have less to do (the replica keeps
    // up), so a wider draw lets many finish before the kill lands
    const at = Math.floor(r() * span * 0.8);
    await sleep(at);
    const res = await p.kill9();
    let state = 'none';
    try {
      state = String(JSON.parse(readFileSync(join(rep, 'a.img.drstate'), 'utf8')).appliedSeq);
    } catch {
      /* killed before the first state file */
    }
    history.push(`${at}ms:${res.signal ?? res.code}@${state}`);
    if (res.signal === 'SIGKILL') {
      killed++;
      f.kills++;
    } else t.equal(res.code, 0, `apply finished by itself ${res.stderr.trim()} ${replay('apply', history.join(' '))}`);
  }
  if (appended < w.lastSeq) {
    const a = await runBin('dr-journal', ['append', store], { input: w.streamFrom(appended + 1) });
    t.equal(a.code, 0, `the rest appended ${a.stderr.trim()}`);
  }
  const why = replay('apply', history.join(' '));
  t.ok(killed >= Math.floor(kills / 3), `dr-apply was really killed mid-run ${killed} of ${kills} times ${why}`);
  const fin = await runBin('dr-apply', ['--journal', store, ...targets(rep)]);
  t.equal(fin.code, 0, `the restarted apply completes ${fin.stderr.trim()} ${why}`);
  w.volumes.forEach((v, i) => {
    const at = compareFile(f, join(rep, v.name + '.img'), w.final[i]!);
    if (at !== -1) f.lost++;
    t.equal(at, -1, `replica ${v.name} equals the reference (first difference at ${at}) ${why}`);
  });
  t.equal(JSON.parse(readFileSync(join(rep, 'a.img.drstate'), 'utf8')).appliedSeq, w.lastSeq, `state at the last seq ${why}`);

  // a replica stopped at a mark, killed on the way there too
  const m = w.marks[Math.floor(r() * (w.marks.length - 1))]!;
  const rm = join(work, 'at-mark');
  await runBin('mkdir', ['-p', rm]);
  const p = start('dr-apply', ['--journal', store, ...targets(rm), '--until', `mark:${m.name}`], { stdin: 'ignore' });
  await sleep(Math.floor(r() * span * 0.5));
  if ((await p.kill9()).signal === 'SIGKILL') f.kills++;
  const um = await runBin('dr-apply', ['--journal', store, ...targets(rm), '--until', `mark:${m.name}`]);
  t.equal(um.code, 0, `apply --until mark:${m.name} completes after a kill ${um.stderr.trim()} ${why}`);
  w.volumes.forEach((v, i) => {
    const at = compareFile(f, join(rm, v.name + '.img'), m.images[i]!);
    if (at !== -1) f.lost++;
    t.equal(at, -1, `replica ${v.name} at mark ${m.name} equals its reference (first difference at ${at}) ${why}`);
  });
});
