// With an archive configured (DIR/archived.json, written by `dr-journal archive`), prune
// releases only segments the archive has confirmed: the window can outgrow the local disk,
// never lose history that exists nowhere else.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../helpers/run.js';
import { buildStore } from '../helpers/restore-store.js';

t.test('prune holds segments not yet confirmed archived', async (t) => {
  const { dir } = await buildStore(t, { seed: 21, records: 400, markEvery: 50 }, { segmentSize: '1M', parts: 2 });
  const ls = JSON.parse((await run('dr-journal', ['ls', dir, '--json'])).stdout.toString());
  const sealed = ls.segments.filter((s: { sealed: boolean }) => s.sealed);
  t.ok(sealed.length >= 3, `${sealed.length} sealed segments`);
  const through = sealed[1].lastSeq; // the archive holds the first two segments only
  fs.writeFileSync(path.join(dir, 'archived.json'), JSON.stringify({ url: 's3://bucket/host', sealedThrough: through, lastSeq: through, updated: Date.now() * 1000 }));

  const r = await run('dr-journal', ['prune', dir, '--keep-size', '1', '--json']);
  t.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout.toString());
  t.equal(result.foldedSegments, 2, 'only the archived segments were folded');
  t.equal(result.firstSeq, through + 1, 'the window starts right after what the archive holds');
  t.ok(result.heldForArchive >= 1, `${result.heldForArchive} segment(s) held for the archive`);

  const again = await run('dr-journal', ['prune', dir, '--keep-size', '1']);
  t.equal(again.code, 0);
  t.match(again.stderr, /segment\(s\) kept until they are confirmed archived/, 'says why it keeps them');

  fs.rmSync(path.join(dir, 'archived.json'));
  const free = JSON.parse((await run('dr-journal', ['prune', dir, '--keep-size', '1', '--json'])).stdout.toString());
  t.ok(free.foldedSegments >= 1, 'without an archive the same prune folds them');
  t.equal(free.heldForArchive, 0);
});
