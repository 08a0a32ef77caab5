// Writes longer than one write(2) of dr-apply (512 KiB): records of up to 2 MiB,
// unaligned and overlapping, gathered with neighbours into runs, written in pieces
// and several at once; the replica equals the reference at the end.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeWorkload } from '../helpers/workload.js';
import { firstDifference, runApply, tempDir } from '../helpers/apply-run.js';

t.test('records longer than one write', async (t) => {
  const w = makeWorkload({ seed: 4711, records: 120, markEvery: 40, maxWrite: 2 * 1024 * 1024, volumes: [{ name: 'big', size: 6 << 20, blockSize: 4096 }] });
  t.ok(w.records.some((r) => r.type === 'write' && r.data.length > 512 * 1024), 'some writes are longer than 512 KiB');
  const dir = tempDir(t);
  const img = join(dir, 'big.img');
  const r = await runApply(['--target', img], w.stream, dir);
  t.equal(r.code, 0, r.stderr);
  t.equal(firstDifference(readFileSync(img), w.final[0]!), -1, 'the replica equals the reference');
});
