// A real `kill -9` of dr-apply at seeded random instants (mid-write, mid-fdatasync,
// mid-state-file, ...), once or several times in a row, then a rerun with the whole
// stream: the replica must be byte for byte the reference. The workload has
// SIGNATURE records, so a rerun also proves that their checks see the right bytes.
// Reproduce a failure with DRKIT_KILL_SEED=<seed printed in the failure message>.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeWorkload, rng } from '../helpers/workload.js';
import { collect, firstDifference, readState, runApply, startApply, tempDir } from '../helpers/apply-run.js';

const baseSeed = Number(process.env.DRKIT_KILL_SEED ?? 20261121);
const ROUNDS = 6;

t.test('kill -9 at random instants, rerun: identical replica', async (t) => {
  const w = makeWorkload({
    seed: baseSeed,
    volumes: [{ name: 'a', size: 4 << 20, blockSize: 4096 }, { name: 'b', size: 2 << 20, blockSize: 512 }],
    records: 1000,
    markEvery: 200,
    maxWrite: 32 * 1024,
    signatures: true,
  });
  let killedMidway = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const seed = baseSeed + round;
    const r = rng(seed);
    const dir = tempDir(t);
    const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
    const kills = 1 + (r() % 3);
    const history: string[] = [];
    for (let k = 0; k < kills; k++) {
      const child = startApply(args);
      child.stdin!.on('error', () => {}); // EPIPE once it is dead
      const done = collect(child);
      let exited = false;
      void done.then(() => (exited = true));
      const killAt = r() % w.stream.length;
      const extraMs = r() % 15;
      let off = 0;
      while (off < killAt && !exited) {
        const n = 4096 + (r() % 65536);
        const ok = child.stdin!.write(w.stream.subarray(off, Math.min(off + n, killAt)));
        off = Math.min(off + n, killAt);
        if (!ok) await Promise.race([new Promise((res) => child.stdin!.once('drain', res)), done]);
      }
      await sleep(extraMs);
      child.kill('SIGKILL');
      const res = await done;
      let at = 'no state yet';
      try {
        at = `state at seq ${readState(join(dir, 'a.img.drstate')).appliedSeq}`;
      } catch {
        /* killed before the first state file */
      }
      history.push(`kill ${k + 1} after ${killAt} bytes + ${extraMs}ms: ${res.signal ?? `exit ${res.code} ${res.stderr.trim()}`}, ${at}`);
      if (res.signal !== 'SIGKILL') t.fail(`dr-apply exited on its own before the kill: ${history.join('; ')}`);
      if (res.signal === 'SIGKILL') killedMidway++;
    }
    const fin = await runApply(args, w.stream, dir);
    const why = `seed ${seed} (DRKIT_KILL_SEED=${baseSeed}, round ${round}): ${history.join('; ')}`;
    t.equal(fin.code, 0, `rerun completes: ${why} ${fin.stderr.trim()}`);
    w.volumes.forEach((v, i) => {
      const got = readFileSync(join(dir, v.name + '.img'));
      const at = firstDifference(got, w.final[i]!);
      t.equal(at, -1, `volume ${v.name} identical to the reference (${why})`);
    });
    t.equal(readState(join(dir, 'a.img.drstate')).appliedSeq, w.lastSeq, 'state at the last seq');
  }
  t.ok(killedMidway >= ROUNDS, `dr-apply was really killed (${killedMidway} kills)`);
});
