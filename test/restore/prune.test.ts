// A store pruned while a restore point is being served: the server's read lease
// keeps what it reads, so the export still equals its reference; afterwards the
// folded mark is refused with the window, and every point left (the base point
// included) still restores exactly.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../helpers/run.js';
import { buildStore, peer, requirePeers, serve, untar } from '../helpers/restore-store.js';

t.test('prune during --serve, then restores from base images plus segments', async (t) => {
  if (!requirePeers(t, ['nbdcopy'])) return;
  const { dir, work, w } = await buildStore(t, { seed: 5501, records: 500, markEvery: 50 }, { segmentSize: '256K', parts: 2 });
  const early = w.marks[0]!;
  const sock = path.join(work, 'p.sock');
  const s = await serve(t, [dir, '--socket', sock, '--at', `mark:${early.name}`, '--volume', 'db'], 1);

  // keep about the newer half of the history
  const ls = JSON.parse((await run('dr-journal', ['ls', dir, '--json'])).stdout.toString());
  const p = await run('dr-journal', ['prune', dir, '--keep-size', String(Math.floor(ls.segmentBytes / 2)), '--json']);
  t.equal(p.code, 0, p.stderr);
  const pr = JSON.parse(p.stdout.toString());
  t.ok(pr.foldedSegments > 0, `${pr.foldedSegments} segments folded`);
  t.ok(pr.firstSeq > early.seq, `window now starts at seq ${pr.firstSeq}, after mark ${early.name} (seq ${early.seq})`);
  t.ok(pr.keptForReaders.length > 0, 'files the server reads are kept');

  const got = path.join(work, 'early.img');
  await peer('nbdcopy', [s.exports[0]!.uri, got]);
  t.ok(fs.readFileSync(got).equals(early.images[0]!), 'the served point still equals its reference after the prune');
  t.equal((await s.stop()).code, 0);

  const gone = await run('dr-restore', [dir, '--at', `mark:${early.name}`, '--volume', 'db', '--out', path.join(work, 'gone.img')]);
  t.equal(gone.code, 2);
  t.match(gone.stderr, new RegExp(`mark "${early.name}" \\(seq ${early.seq}\\) was folded into the base images by prune: the window is seq ${pr.firstSeq}\\.\\.${w.lastSeq}.*\\(DR_OUTSIDE_WINDOW\\)`));

  // the base point and every mark left in the window
  const base = pr.firstSeq - 1;
  const b = await run('dr-restore', [dir, '--at', `seq:${base}`, '--tar']);
  t.equal(b.code, 0, b.stderr);
  const be = await untar(b.stdout);
  w.volumes.forEach((v, i) => t.ok(be.get(v.name)!.equals(w.imagesAt(base)[i]!), `base point seq:${base} ${v.name} equals the reference`));
  const left = w.marks.filter((m) => m.seq >= pr.firstSeq);
  t.ok(left.length >= 2, `${left.length} marks left in the window`);
  for (const m of [left[0]!, left[left.length - 1]!]) {
    const r = await run('dr-restore', [dir, '--at', `mark:${m.name}`, '--tar']);
    t.equal(r.code, 0, r.stderr);
    const e = await untar(r.stdout);
    w.volumes.forEach((v, i) => t.ok(e.get(v.name)!.equals(m.images[i]!), `mark ${m.name} ${v.name} (base + segments) equals the reference`));
  }
  const l = await run('dr-restore', [dir, '--list', '--json']);
  t.equal(JSON.parse(l.stdout.toString()).window.baseSeq, base, '--list names the base point');
});
