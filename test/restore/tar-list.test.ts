// dr-restore --tar (read back with the system tar) and --list (text and --json).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../helpers/run.js';
import { buildStore, peer, sha256, untar } from '../helpers/restore-store.js';

t.test('--tar FILE: GNU tar extracts every volume and the manifest; --force replaces it', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 5301, records: 300, markEvery: 100 });
  const m = w.marks[1]!;
  const file = path.join(work, 'group.tar');
  const r = await run('dr-restore', [dir, '--at', `mark:${m.name}`, '--tar', file, '--json']);
  t.equal(r.code, 0, r.stderr);
  const listing = (await peer('tar', ['-tf', file])).toString().trim().split('\n');
  t.same(listing, [...w.volumes.map((v) => v.name), 'manifest.json'], 'entries: the volume names, then manifest.json');
  const x = path.join(work, 'x');
  fs.mkdirSync(x);
  await peer('tar', ['-xf', file, '-C', x]);
  w.volumes.forEach((v, i) => t.ok(fs.readFileSync(path.join(x, v.name)).equals(m.images[i]!), `${v.name} extracted by tar equals the reference`));
  const manifest = JSON.parse(fs.readFileSync(path.join(x, 'manifest.json'), 'utf8'));
  t.match(manifest, {
    format: 'drkit-restore-manifest', version: 1, point: `mark:${m.name}`, seq: m.seq, time: m.time, consistent: null,
    volumes: w.volumes.map((v, i) => ({ name: v.name, size: v.size, blockSize: v.blockSize, sha256: sha256(m.images[i]!) })),
  });
  t.same(JSON.parse(r.stdout.toString()).manifest, manifest, '--json reports the same manifest');

  const again = await run('dr-restore', [dir, '--at', 'latest', '--tar', file]);
  t.equal(again.code, 2);
  t.match(again.stderr, /group\.tar already exists: use --force to replace it \(DR_EXISTS\)/);
  const forced = await run('dr-restore', [dir, '--at', 'latest', '--tar', file, '--force', '--volume', 'logs']);
  t.equal(forced.code, 0, forced.stderr);
  const entries = await untar(fs.readFileSync(file));
  t.same([...entries.keys()], ['logs', 'manifest.json'], '--volume limits the tar to one volume');
  t.ok(entries.get('logs')!.equals(w.final[1]!), 'latest logs equals the reference');
  t.same(fs.readdirSync(work).filter((n) => n.includes('.tmp')), [], 'no temporary file left');
});

t.test('--tar --consistent records where it moved in the manifest', async (t) => {
  const { dir, w } = await buildStore(t, { seed: 5302, records: 200, markEvery: 1000 });
  const r = await run('dr-restore', [dir, '--at', 'latest', '--consistent', '--tar', '-']);
  t.equal(r.code, 0, r.stderr);
  const entries = await untar(r.stdout);
  const manifest = JSON.parse(entries.get('manifest.json')!.toString());
  // the workload's last record is the MARK "final": latest is already consistent
  t.equal(manifest.seq, w.lastSeq);
  t.match(manifest.consistent, { movedFrom: w.lastSeq, kind: 'mark', mark: 'final' });
});

t.test('--list: window, marks with kind and consistency, flush points', async (t) => {
  const { dir, w } = await buildStore(t, { seed: 5303, records: 300, markEvery: 60 });
  const j = await run('dr-restore', [dir, '--list', '--json', '--limit', '0']);
  t.equal(j.code, 0, j.stderr);
  const l = JSON.parse(j.stdout.toString());
  const flushes = w.records.filter((r) => r.type === 'flush');
  t.match(l.window, { firstSeq: w.firstSeq, lastSeq: w.lastSeq, firstTime: w.records[0]!.time, lastTime: w.records[w.records.length - 1]!.time, records: w.records.length });
  t.same(l.marks.map((m: { name: string; kind: string; seq: number; consistency: string; point: string }) => [m.name, m.kind, m.seq, m.consistency, m.point]),
    w.marks.map((m) => [m.name, m.kind, m.seq, m.kind === 'app' ? 'app' : 'crash', `mark:${m.name}`]));
  t.equal(l.flushPoints.count, flushes.length);
  t.same(l.flushPoints.shown.map((f: { seq: number }) => f.seq), flushes.map((f) => f.seq));
  t.same(l.volumes.map((v: { name: string }) => v.name), w.volumes.map((v) => v.name));

  const text = await run('dr-restore', [dir, '--list', '--limit', '3']);
  t.equal(text.code, 0);
  const s = text.stdout.toString();
  t.match(s, new RegExp(`window:\\s+seq ${w.firstSeq}\\.\\.${w.lastSeq} \\(${w.records.length} records\\)`));
  for (const m of w.marks) t.match(s, new RegExp(`seq\\s+${m.seq}\\s+\\S+\\s+${m.kind}\\s+${m.kind === 'app' ? 'app' : 'crash'}-consistent\\s+mark:${m.name}\\n`));
  t.match(s, new RegExp(`flushes:\\s+${flushes.length} \\(the last 3 shown; --limit 0 for all\\)`));
  t.equal(s.split('\n').filter((x) => / flush crash-consistent /.test(x)).length, 3);
});
