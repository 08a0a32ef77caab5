// dr-restore --out against references: a seeded workload (overlapping, unaligned,
// zero and discard ranges, two volumes) appended to a store in several pieces with
// small segments; every volume restored at every mark, at seq and time points, with
// --consistent, and to standard output, equals the reference byte for byte.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../helpers/run.js';
import { buildStore, consistentSeq, seqAtTime, sha256, untar } from '../helpers/restore-store.js';

t.test('every volume at every mark equals the reference', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 5101, records: 700, markEvery: 70 }, { segmentSize: '256K', parts: 3 });
  t.ok(w.marks.length >= 9, `${w.marks.length} marks`);
  // the whole group at every mark, one tar each
  for (const m of w.marks) {
    const r = await run('dr-restore', [dir, '--at', `mark:${m.name}`, '--tar']);
    t.equal(r.code, 0, `mark ${m.name}: exit 0 ${r.stderr}`);
    const entries = await untar(r.stdout);
    w.volumes.forEach((vol, v) => {
      t.ok(entries.get(vol.name)?.equals(m.images[v]!), `mark ${m.name} volume ${vol.name} equals the reference`);
    });
    const manifest = JSON.parse(entries.get('manifest.json')!.toString());
    t.equal(manifest.seq, m.seq, `manifest seq of mark ${m.name}`);
    t.same(manifest.volumes.map((x: { sha256: string }) => x.sha256), m.images.map(sha256), 'manifest sha256 per volume');
  }
  // each volume on its own as a (sparse) file
  for (const m of [w.marks[1]!, w.marks[w.marks.length - 1]!]) {
    for (let v = 0; v < w.volumes.length; v++) {
      const vol = w.volumes[v]!;
      const out = path.join(work, `${m.name}-${vol.name}.img`);
      const r = await run('dr-restore', [dir, '--at', `mark:${m.name}`, '--volume', vol.name, '--out', out]);
      t.equal(r.code, 0, `mark ${m.name} ${vol.name}: exit 0 ${r.stderr}`);
      const got = fs.readFileSync(out);
      t.equal(got.length, vol.size, 'size');
      t.ok(got.equals(m.images[v]!), `--out at mark ${m.name} volume ${vol.name} equals the reference`);
      fs.rmSync(out);
    }
  }
});

t.test('seq, time and latest points, --consistent, and standard output', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 5102, records: 400, markEvery: 90 }, { segmentSize: '128K', parts: 2 });
  const pick = [w.firstSeq, w.firstSeq + 150, w.lastSeq - 1];
  for (const seq of pick) {
    const ref = w.imagesAt(seq);
    const r = await run('dr-restore', [dir, '--at', `seq:${seq}`, '--volume', 'logs', '--out', '-']);
    t.equal(r.code, 0, r.stderr);
    t.ok(r.stdout.equals(ref[1]!), `seq:${seq} logs on stdout equals the reference`);
  }
  // a time point: the last record at or before it (times repeat in the workload)
  const rec = w.records[200]!;
  const timeIso = new Date(rec.time / 1000).toISOString().replace('Z', `${String(rec.time % 1000).padStart(3, '0')}Z`);
  const atTime = seqAtTime(w, rec.time);
  const tr = await run('dr-restore', [dir, '--at', timeIso, '--volume', 'db', '--out', path.join(work, 'time.img'), '--json']);
  t.equal(tr.code, 0, tr.stderr);
  const tj = JSON.parse(tr.stdout.toString());
  t.equal(tj.seq, atTime, `time ${timeIso} resolves to seq ${atTime}`);
  t.ok(fs.readFileSync(path.join(work, 'time.img')).equals(w.imagesAt(atTime)[0]!), 'time point equals the reference');

  // latest
  const lr = await run('dr-restore', [dir, '--at', 'latest', '--volume', 'db', '--out', path.join(work, 'latest.img')]);
  t.equal(lr.code, 0, lr.stderr);
  t.ok(fs.readFileSync(path.join(work, 'latest.img')).equals(w.final[0]!), 'latest equals the final reference');

  // --consistent moves back to the last FLUSH or MARK at or before the point
  let probe = w.firstSeq + 120;
  while (w.records[probe - w.firstSeq]!.type === 'flush' || w.records[probe - w.firstSeq]!.type === 'mark') probe++;
  const cseq = consistentSeq(w, probe)!;
  t.ok(cseq < probe, `seq ${probe} moves back to ${cseq}`);
  const cr = await run('dr-restore', [dir, '--at', `seq:${probe}`, '--consistent', '--volume', 'db', '--out', path.join(work, 'c.img'), '--json']);
  t.equal(cr.code, 0, cr.stderr);
  const cj = JSON.parse(cr.stdout.toString());
  t.equal(cj.seq, cseq);
  t.equal(cj.movedFrom, probe);
  t.match(cr.stderr, new RegExp(`moved back to the (FLUSH|MARK "[^"]+") at seq ${cseq}`));
  t.ok(fs.readFileSync(path.join(work, 'c.img')).equals(w.imagesAt(cseq)[0]!), '--consistent equals the reference at the flush/mark');
});

t.test('sparse output: holes are not written, size is exact', async (t) => {
  // one 64 MiB volume of which the workload touches little
  const { dir, work, w } = await buildStore(t, {
    seed: 5103, records: 60, markEvery: 1000, volumes: [{ name: 'big', size: 64 << 20, blockSize: 4096 }], largeZeroes: false,
  });
  const out = path.join(work, 'big.img');
  const r = await run('dr-restore', [dir, '--at', 'latest', '--out', out, '--json']);
  t.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout.toString());
  const st = fs.statSync(out);
  t.equal(st.size, 64 << 20, 'size set exactly');
  t.ok(st.blocks * 512 < 16 << 20, `allocated ${st.blocks * 512} bytes of 64 MiB`);
  t.ok(j.sparse > 40 << 20, `${j.sparse} bytes left as holes`);
  t.ok(fs.readFileSync(out).equals(w.final[0]!), 'equals the reference (reads on worker threads)');
  t.same(fs.readdirSync(work).filter((n) => n.includes('.tmp')), [], 'no temporary file left');
  const piped = await run('dr-restore', [dir, '--at', 'latest', '--out', '-', '--jobs', '3']);
  t.equal(piped.code, 0, piped.stderr);
  t.ok(piped.stdout.equals(w.final[0]!), '--out - with three reader threads equals the reference');
});
