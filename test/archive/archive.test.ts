/**
 * The archive tier against a real Ceph RADOS Gateway: archive a store, wipe it, restore
 * every mark from the bucket alone; the archive outlives local prunes; interrupted uploads
 * resume and never leave a complete-looking partial object; corruption is detected on read.
 * One cluster for the whole file.
 */
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, PutObjectCommand,
} from '@aws-sdk/client-s3';
import { cephForTest, type Ceph } from '../helpers/ceph.js';
import { journal, spawnJournal, s3Client, s3Opts } from '../helpers/archive-run.js';
import { buildStore, peer, requirePeers, seqAtTime, serve, tempDir, untar } from '../helpers/restore-store.js';
import { run } from '../helpers/run.js';
import { openArchivedStore, listArchivedGroups, readManifest } from '../../src/archive/restore.js';
import { makeWorkload } from '../helpers/workload.js';
import { ObjectStore } from '../../src/archive/objects.js';
import type { JournalStore } from '../../src/store/index.js';

let ceph: Ceph;

t.before(async () => {
  ceph = await cephForTest(t);
  t.comment(`ceph startup ms: ${JSON.stringify(ceph.timings)}`);
});

async function volumeBytes(store: JournalStore, seq: number): Promise<Buffer[]> {
  const r = await store.pointInTime(seq);
  try {
    const out: Buffer[] = [];
    for (let v = 0; v < r.volumes.length; v++) out.push(await r.read(v, 0, r.volumes[v]!.size));
    return out;
  } finally {
    await r.release();
  }
}

function sameImages(t: Test, got: Buffer[], want: Buffer[], what: string): void {
  t.equal(got.length, want.length, `${what}: volume count`);
  for (let i = 0; i < want.length; i++) t.ok(got[i]!.equals(want[i]!), `${what}: volume ${i} bytes`);
}

t.test('archive, wipe the store, restore every mark from the bucket alone', async (t) => {
  const { dir, w } = await buildStore(t, { seed: 11, records: 500, markEvery: 50 }, { segmentSize: '1M', parts: 2 });
  const url = 's3://drkit-t1/site-a/db';
  let r = await journal(ceph, ['archive', dir, '--to', url, '--json']);
  t.equal(r.code, 0, `archive exits 0: ${r.stderr}`);
  const ev = JSON.parse(r.stdout.toString().trim().split('\n').pop()!) as { uploadedObjects: number; lastSeq: number; manifestWritten: boolean };
  t.ok(ev.uploadedObjects > 4, 'several objects uploaded');
  t.equal(ev.lastSeq, w.lastSeq, 'the archive reaches the last record (tail included)');
  t.ok(ev.manifestWritten);

  // idempotent: a second pass uploads nothing
  r = await journal(ceph, ['archive', dir, '--to', url, '--json']);
  t.equal(r.code, 0, r.stderr);
  const ev2 = JSON.parse(r.stdout.toString().trim()) as { uploadedObjects: number; manifestWritten: boolean };
  t.equal(ev2.uploadedObjects, 0, 'nothing uploaded again');
  t.equal(ev2.manifestWritten, false, 'manifest unchanged');

  fs.rmSync(dir, { recursive: true, force: true });
  const s3 = s3Opts(ceph);
  for (const m of w.marks) {
    const store = await openArchivedStore(url, { point: `mark:${m.name}`, s3 });
    try {
      const p = store.resolvePoint(`mark:${m.name}`);
      t.equal(p.seq, m.seq, `mark ${m.name} resolves to seq ${m.seq}`);
      sameImages(t, await volumeBytes(store, p.seq), m.images, `mark ${m.name}`);
    } finally {
      await store.close();
    }
  }
  const latest = await openArchivedStore(url, { s3 });
  try {
    const p = latest.resolvePoint('latest');
    t.equal(p.seq, w.lastSeq);
    sameImages(t, await volumeBytes(latest, p.seq), w.final, 'latest');
    t.equal(latest.marks().length, w.marks.length, 'every mark listed');
  } finally {
    await latest.close();
  }
  // a point early in the window fetches only the segments it needs
  const early = await openArchivedStore(url, { point: `seq:${w.marks[0]!.seq}`, s3 });
  try {
    t.ok(early.lastSeq < w.lastSeq, `only the first segments fetched (up to seq ${early.lastSeq})`);
    sameImages(t, await volumeBytes(early, w.marks[0]!.seq), w.marks[0]!.images, 'early point');
  } finally {
    await early.close();
  }

  // the real dr-restore, from the bucket alone (a few marks: each run is a process with the SDK)
  const out = tempDir(t, 'drkit-archive-out-');
  for (const m of [w.marks[0]!, w.marks[Math.floor(w.marks.length / 2)]!, w.marks[w.marks.length - 1]!]) {
    for (const [i, v] of w.volumes.entries()) {
      const file = path.join(out, `${m.name}.${v.name}.img`);
      const rr = await run('dr-restore', [url, '--at', `mark:${m.name}`, '--volume', v.name, '--out', file, '-v'], { env: ceph.env });
      t.equal(rr.code, 0, `dr-restore ${url} --at mark:${m.name} --volume ${v.name}: ${rr.stderr}`);
      t.match(rr.stderr, /fetched \d+ bytes in \d+ requests; the objects the point needs hold \d+/, '-v says how much was fetched');
      t.ok(fs.readFileSync(file).equals(m.images[i]!), `dr-restore from the bucket: mark ${m.name} volume ${v.name} bytes`);
    }
  }
  const rbad = await run('dr-restore', [url, '--at', 'mark:nope', '--out', path.join(out, 'x.img'), '--volume', 'db'], { env: ceph.env });
  t.equal(rbad.code, 2);
  t.equal(rbad.stderr, `dr-restore: error: no mark named "nope" in ${url} (DR_BAD_POINT)\n`);

  const bad = await openArchivedStore(url, { point: 'mark:nope', s3 }).then(() => null, (e: Error & { code?: string }) => e);
  t.equal(bad?.code, 'DR_BAD_POINT', 'an unknown mark is a bad point');
  const none = await openArchivedStore('s3://drkit-t1/nothing-here', { s3 }).then(() => null, (e: Error & { code?: string }) => e);
  t.equal(none?.code, 'DR_NO_STORE', 'no archive at a prefix: DR_NO_STORE');
  t.match(none?.message ?? '', /s3:\/\/drkit-t1\/nothing-here/);
});

t.test('a restore fetches only the ranges its point needs', async (t) => {
  // a small volume written over and over: a late mark needs few of the chunks of the segments before it
  const { dir, w } = await buildStore(t, { seed: 18, records: 400, markEvery: 100, maxWrite: 64 * 1024, volumes: [{ name: 'hot', size: 512 * 1024 }] }, { segmentSize: '1M' });
  const url = 's3://drkit-t7/hot';
  const r = await journal(ceph, ['archive', dir, '--to', url]);
  t.equal(r.code, 0, r.stderr);
  fs.rmSync(dir, { recursive: true, force: true });
  const s3 = s3Opts(ceph);
  const fetched: Array<{ bytes: number; objectBytes: number }> = [];
  for (const m of w.marks) {
    let counted = 0;
    const store = await openArchivedStore(url, { point: `mark:${m.name}`, s3, onBytes: (n) => (counted += n), onFetched: (f) => fetched.push(f) });
    try {
      sameImages(t, await volumeBytes(store, store.resolvePoint(`mark:${m.name}`).seq), m.images, `mark ${m.name}`);
    } finally {
      await store.close();
    }
    t.equal(counted, fetched[fetched.length - 1]?.bytes, `mark ${m.name}: onBytes adds up to what was fetched (reported on close)`);
  }
  const last = fetched[fetched.length - 1]!;
  t.ok(last.bytes < last.objectBytes * 0.6, `the last mark fetched ${last.bytes} of the ${last.objectBytes} bytes its objects hold`);
  // a reader at another point of the same store fetches what it reads that the point did not need
  const other = await openArchivedStore(url, { point: 'latest', s3 });
  try {
    sameImages(t, await volumeBytes(other, w.lastSeq), w.final, 'latest');
    sameImages(t, await volumeBytes(other, w.marks[0]!.seq), w.marks[0]!.images, `mark ${w.marks[0]!.name} read from a store opened for latest`);
  } finally {
    await other.close();
  }
  // a time point: the records around it are fetched to resolve it
  const rec = w.records[Math.floor(w.records.length * 0.7)]!;
  const timeIso = new Date(rec.time / 1000).toISOString().replace('Z', `${String(rec.time % 1000).padStart(3, '0')}Z`);
  const atTime = await openArchivedStore(url, { point: timeIso, s3 });
  try {
    const p = atTime.resolvePoint(timeIso);
    t.equal(p.seq, seqAtTime(w, rec.time), `${timeIso} resolves to seq ${p.seq}`);
    sameImages(t, await volumeBytes(atTime, p.seq), w.imagesAt(p.seq), `time ${timeIso}`);
  } finally {
    await atTime.close();
  }
  // --tar (with --consistent) and --serve from the bucket: their reads wait for the ranges they need
  const m = w.marks[1]!;
  const rt = await run('dr-restore', [url, '--at', `seq:${m.seq + 3}`, '--consistent', '--tar', '-'], { env: ceph.env });
  t.equal(rt.code, 0, rt.stderr);
  const entries = await untar(rt.stdout);
  t.ok(entries.get('hot')!.equals(m.images[0]!), `--tar --consistent moves back to mark ${m.name}: bytes equal`);
  if (!requirePeers(t, ['qemu-img'])) return;
  const saved = { ...process.env };
  Object.assign(process.env, ceph.env);
  t.teardown(() => {
    for (const k of Object.keys(ceph.env)) if (saved[k] === undefined) delete process.env[k];
    Object.assign(process.env, saved);
  });
  const sv = await serve(t, [url, '--port', '0', '--at', 'latest'], 1);
  const img = path.join(tempDir(t, 'drkit-archive-serve-'), 'served.img');
  await peer('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', sv.exports[0]!.uri, img]);
  t.ok(fs.readFileSync(img).equals(w.final[0]!), '--serve from the bucket: qemu-img reads the latest image');
  t.equal((await sv.stop()).code, 0, `clean stop: ${sv.stderr()}`);
});

t.test('the archive keeps what local prunes release, and lists groups', async (t) => {
  const work = tempDir(t, 'drkit-archive-test-');
  const { dir, w } = await buildStore(t, { seed: 12, records: 600, markEvery: 40 }, { segmentSize: '1M', parts: 3 });
  const url = 's3://drkit-t2/hosts/one';
  const segBytes = (): number => fs.readdirSync(path.join(dir, 'segments')).filter((f) => f.endsWith('.drj'))
    .reduce((n, f) => n + fs.statSync(path.join(dir, 'segments', f)).size, 0);
  const total = segBytes();
  // prune first: the archive starts from a base image
  let r = await run('dr-journal', ['prune', dir, '--keep-size', String(Math.floor(total * 0.6))]);
  t.equal(r.code, 0, r.stderr);
  r = await journal(ceph, ['archive', dir, '--to', url]);
  t.equal(r.code, 0, r.stderr);
  const storeNow = await import('../../src/store/index.js').then((m) => m.JournalStore.open(dir, { readOnly: true }));
  const firstLocal = storeNow.firstSeq;
  await storeNow.close();
  t.ok(firstLocal > 1, `local window starts at seq ${firstLocal}`);
  // prune much more locally; archive again: the archive still holds everything since its base
  r = await run('dr-journal', ['prune', dir, '--keep-size', String(Math.floor(total * 0.2))]);
  t.equal(r.code, 0, r.stderr);
  r = await journal(ceph, ['archive', dir, '--to', url]);
  t.equal(r.code, 0, r.stderr);
  const s3 = s3Opts(ceph);
  t.ok(segBytes() < total * 0.3, 'most of the history is gone locally');
  const restorable = w.marks.filter((m) => m.seq >= firstLocal - 1);
  t.ok(restorable.length >= 3, `${restorable.length} marks after the first archived base`);
  fs.rmSync(dir, { recursive: true, force: true });
  for (const m of restorable) {
    const store = await openArchivedStore(url, { point: `mark:${m.name}`, s3, workDir: work });
    try {
      sameImages(t, await volumeBytes(store, store.resolvePoint(`mark:${m.name}`).seq), m.images, `mark ${m.name}`);
    } finally {
      await store.close();
    }
  }
  t.same(fs.readdirSync(work), [], 'temp stores removed on close');

  // a second group under another prefix of the same bucket
  const other = await buildStore(t, { seed: 13, records: 100 }, { segmentSize: '1M' });
  r = await journal(ceph, ['archive', other.dir, '--to', 's3://drkit-t2/hosts/two']);
  t.equal(r.code, 0, r.stderr);
  const groups = await listArchivedGroups('s3://drkit-t2/', { s3 });
  t.same(groups.map((g) => g.url).sort(), ['s3://drkit-t2/hosts/one', 's3://drkit-t2/hosts/two']);
  t.same(groups.map((g) => g.groupId).sort(), [w.groupId.toString('hex'), other.w.groupId.toString('hex')].sort());
  const ls = await journal(ceph, ['ls', 's3://drkit-t2/', '--json']);
  t.equal(ls.code, 0, ls.stderr);
  t.same(ls.stdout.toString().trim().split('\n').map((l) => JSON.parse(l).url).sort(), ['s3://drkit-t2/hosts/one', 's3://drkit-t2/hosts/two'], 'dr-journal ls s3://BUCKET/ lists the groups');

  // a store of another group cannot be archived over this one
  r = await journal(ceph, ['archive', other.dir, '--to', url]);
  t.equal(r.code, 2);
  t.match(r.stderr, /^dr-journal: error: .*archives group .* holds group .*\(DR_GROUP_MISMATCH\)\n$/);
});

t.test('an archiver killed mid-upload resumes; no partial object ever looks complete', async (t) => {
  const { dir, w } = await buildStore(
    t,
    { seed: 14, records: 700, markEvery: 350, maxWrite: 160 * 1024, volumes: [{ name: 'big', size: 24 << 20, blockSize: 4096 }], largeZeroes: false },
    { segmentSize: '48M' },
  );
  const url = 's3://drkit-t3/slow';
  const bucket = 'drkit-t3';
  const s3 = s3Client(ceph);
  t.teardown(() => s3.destroy());
  const segSize = fs.statSync(path.join(dir, 'segments', '00000000000000000001.drj')).size;
  t.ok(segSize > 20 << 20, `the first segment is large (${segSize} bytes)`);
  const child = spawnJournal(ceph, ['archive', dir, '--to', url, '--part-size', '5M', '--concurrency', '1']);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // wait until at least two parts of a multipart upload are in the bucket, then SIGKILL
  let parts = 0;
  let key = '';
  for (let i = 0; i < 600 && parts < 2; i++) {
    const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket })).catch(() => null);
    const u = ups?.Uploads?.[0];
    if (u?.UploadId && u.Key) {
      key = u.Key;
      const p = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
      parts = p.Parts?.length ?? 0;
    }
    if (child.exitCode !== null) break;
    if (parts < 2) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(parts >= 2, `killed with ${parts} parts uploaded of ${key}`);
  child.kill('SIGKILL');
  await exited;
  t.not(key, '', 'a multipart upload was in progress');
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(() => 'present', () => 'absent');
  t.equal(head, 'absent', 'the interrupted object does not exist (only its unfinished upload does)');
  const manifest = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'slow/manifest.json' })).then(() => 'present', () => 'absent');
  t.equal(manifest, 'absent', 'no manifest names anything yet');
  const early = await openArchivedStore(url, { s3: s3Opts(ceph) }).then(() => null, (e: Error & { code?: string }) => e);
  t.equal(early?.code, 'DR_NO_STORE', 'a reader sees no archive yet');

  const total = fs.readdirSync(path.join(dir, 'segments')).reduce((n, f) => n + fs.statSync(path.join(dir, 'segments', f)).size, 0);
  const r = await journal(ceph, ['archive', dir, '--to', url, '--part-size', '5M', '--json']);
  t.equal(r.code, 0, `resumed archive exits 0: ${r.stderr}`);
  const ev = JSON.parse(r.stdout.toString().trim()) as { uploadedBytes: number };
  t.ok(ev.uploadedBytes <= total - 2 * (5 << 20), `resume sent ${ev.uploadedBytes} of ${total} bytes (kept the parts already there)`);
  const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  t.equal(ups.Uploads?.length ?? 0, 0, 'no unfinished upload left');
  fs.rmSync(dir, { recursive: true, force: true });
  const store = await openArchivedStore(url, { s3: s3Opts(ceph) });
  try {
    sameImages(t, await volumeBytes(store, w.lastSeq), w.final, 'latest after resume');
    for (const m of w.marks) sameImages(t, await volumeBytes(store, m.seq), m.images, `mark ${m.name}`);
  } finally {
    await store.close();
  }
  void stderr;
});

t.test('a corrupted object is detected on read', async (t) => {
  const { dir, w } = await buildStore(t, { seed: 15, records: 300 }, { segmentSize: '1M' });
  const url = 's3://drkit-t4/c';
  const r = await journal(ceph, ['archive', dir, '--to', url]);
  t.equal(r.code, 0, r.stderr);
  const s3 = s3Client(ceph);
  t.teardown(() => s3.destroy());
  // flip one byte of the first segment, keeping its metadata (as bit rot or a bad copy would)
  const key = 'c/segments/00000000000000000001.drj';
  const obj = await s3.send(new GetObjectCommand({ Bucket: 'drkit-t4', Key: key }));
  const body = Buffer.from(await obj.Body!.transformToByteArray());
  body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0x40;
  await s3.send(new PutObjectCommand({ Bucket: 'drkit-t4', Key: key, Body: body, Metadata: obj.Metadata }));
  const err = await openArchivedStore(url, { s3: s3Opts(ceph) }).then(() => null, (e: Error & { code?: string }) => e);
  t.equal(err?.code, 'DR_BAD_CHECKSUM', 'restore refuses the corrupt segment');
  t.match(err?.message ?? '', /s3:\/\/drkit-t4\/c\/segments\/00000000000000000001\.drj is corrupt: its SHA-256 is [0-9a-f]{64}, the archive recorded [0-9a-f]{64}/);
  // restoring a point fetches ranges: every chunk it fetches is checked (the first record's chunk always is)
  const rerr = await openArchivedStore(url, { point: 'latest', s3: s3Opts(ceph) }).then(() => null, (e: Error & { code?: string }) => e);
  t.equal(rerr?.code, 'DR_BAD_CHECKSUM', 'a ranged restore refuses the corrupt chunk');
  t.equal(rerr?.message, `s3://drkit-t4/${key} is corrupt: chunk 0 (bytes 0..${Math.min(body.length, 1 << 20) - 1}) does not match its checksum`);
  const rr = await run('dr-restore', [url, '--at', 'latest', '--out', path.join(tempDir(t, 'drkit-archive-out-'), 'x.img'), '--volume', 'db'], { env: ceph.env });
  t.equal(rr.code, 2, 'dr-restore exits 2 on a corrupt object');
  t.equal(rr.stderr, `dr-restore: error: s3://drkit-t4/${key} is corrupt: chunk 0 (bytes 0..${Math.min(body.length, 1 << 20) - 1}) does not match its checksum (DR_BAD_CHECKSUM)\n`);
  // ranged reads check every chunk they touch
  const objects = new ObjectStore('drkit-t4', s3Opts(ceph));
  t.teardown(() => objects.destroy());
  const ranged = await objects.readRange(key, body.length >> 1, 10).then(() => null, (e: Error & { code?: string }) => e);
  t.equal(ranged?.code, 'DR_BAD_CHECKSUM', 'a ranged read over the damage fails');
  t.match(ranged?.message ?? '', /chunk 0 .* does not match its checksum/);
  // a range of an intact object reads back exactly
  const idxKey = 'c/segments/00000000000000000001.idx';
  const whole = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: 'drkit-t4', Key: idxKey }))).Body!.transformToByteArray());
  t.ok((await objects.readRange(idxKey, 3, 40)).equals(whole.subarray(3, 43)), 'ranged read of an intact object');
  // archive --verify sees the damaged object does not match the local segment and uploads it again
  const again = await journal(ceph, ['archive', dir, '--to', url, '--verify', '--json']);
  t.equal(again.code, 0, again.stderr);
  t.equal((JSON.parse(again.stdout.toString().trim()) as { uploadedObjects: number }).uploadedObjects, 1, 'exactly the damaged object is sent again');
  fs.rmSync(dir, { recursive: true, force: true });
  const store = await openArchivedStore(url, { s3: s3Opts(ceph) });
  try {
    sameImages(t, await volumeBytes(store, w.lastSeq), w.final, 'latest after repair');
  } finally {
    await store.close();
  }
});

t.test('--follow archives new records as they come and stops cleanly on SIGTERM', async (t) => {
  const work = tempDir(t, 'drkit-archive-follow-');
  const w = makeWorkload({ seed: 16, records: 300, markEvery: 100 });
  const dir = path.join(work, 'store');
  const half = w.records[149]!.seq;
  fs.writeFileSync(path.join(work, 'a.drj'), w.truncated(w.recordStart[150]!));
  fs.writeFileSync(path.join(work, 'b.drj'), w.streamFrom(half + 1));
  let r = await run('dr-journal', ['append', dir, path.join(work, 'a.drj'), '--segment-size', '256K']);
  t.equal(r.code, 3, 'the first half is a stream without END (stored up to its last record)');
  const url = 's3://drkit-t5/follow';
  const objects = new ObjectStore('drkit-t5', s3Opts(ceph));
  t.teardown(() => objects.destroy());
  const archivedSeq = async (): Promise<number> => {
    const m = await readManifest(objects, { bucket: 'drkit-t5', prefix: 'follow' }).catch(() => null);
    return m ? m.lastSeq : 0;
  };
  const waitFor = async (seq: number): Promise<boolean> => {
    for (let i = 0; i < 300; i++) {
      if ((await archivedSeq()) === seq) return true;
      await new Promise((res) => setTimeout(res, 100));
    }
    return false;
  };
  const child = spawnJournal(ceph, ['archive', dir, '--to', url, '--follow', '--interval', '200ms']);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  t.ok(await waitFor(half), `the first half is archived (seq ${half})`);
  r = await run('dr-journal', ['append', dir, path.join(work, 'b.drj')]);
  t.equal(r.code, 0, r.stderr);
  t.ok(await waitFor(w.lastSeq), `the records appended later are archived too (seq ${w.lastSeq})`);
  child.kill('SIGTERM');
  t.equal(await exited, 0, `SIGTERM stops --follow with status 0: ${stderr}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const store = await openArchivedStore(url, { s3: s3Opts(ceph) });
  try {
    sameImages(t, await volumeBytes(store, w.lastSeq), w.final, 'latest');
    for (const m of w.marks) sameImages(t, await volumeBytes(store, m.seq), m.images, `mark ${m.name}`);
  } finally {
    await store.close();
  }
});

t.test('bad locations, missing stores and unreachable endpoints are one-line errors', async (t) => {
  const { dir } = await buildStore(t, { seed: 17, records: 50 }, { segmentSize: '1M' });
  let r = await journal(ceph, ['archive', dir, '--to', 'http://bucket/x']);
  t.equal(r.code, 2);
  t.equal(r.stderr, 'dr-journal: error: bad archive location "http://bucket/x": use s3://BUCKET/PREFIX (DR_USAGE)\n');
  r = await journal(ceph, ['archive', path.join(dir, 'nope'), '--to', 's3://drkit-t6/x']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^dr-journal: error: no journal store at .*nope .*\(DR_NO_STORE\)\n$/);
  r = await journal(ceph, ['archive', dir, '--to', 's3://drkit-t6/x', '--endpoint', 'http://127.0.0.1:9']);
  t.equal(r.code, 3);
  t.match(r.stderr, /^dr-journal: error: checking bucket s3:\/\/drkit-t6 failed: ECONNREFUSED \(http:\/\/127\.0\.0\.1:9\) \(DR_PEER\)\n$/);
  r = await journal(ceph, ['archive', dir, '--to', 's3://drkit-t6/x', '--part-size', '1M']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^dr-journal: error: part size 1048576 must be between 5 MiB and 5 GiB .*\(DR_USAGE\)\n$/);
});
