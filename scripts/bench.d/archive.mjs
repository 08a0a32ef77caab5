// Archive tier: a journal store of BENCH_SIZE_MIB (default 1024) MiB of 1 MiB writes (64 MiB
// segments) against a real single-node Ceph RADOS Gateway on loopback (started here with
// test/helpers/ceph.ts; or an existing endpoint from AWS_ENDPOINT_URL + keys + BENCH_S3_BUCKET).
//   1. archive: `dr-journal archive DIR --to s3://...` (checksums, sums objects, manifest, under
//      /usr/bin/time for peak memory) vs the SDK's own multipart Upload (@aws-sdk/lib-storage,
//      same part size 16 MiB and 4 parts in flight) of the same segment files
//   2. restore: `dr-restore s3://... --at latest --out FILE` from the bucket alone (index objects,
//      then ranged GETs of the checksum chunks the point needs, each chunk checked, restored
//      alongside the download into a durable image), vs the SDK's GetObject of the same objects
//      streamed to files and fsynced (no checking, no image). The note gives both byte counts
//      and both CPU times (here every byte of the volume is needed: no write is overwritten).
// Best of BENCH_ROUNDS (default 2), drkit and peer alternating. Prints one NDJSON line per figure.
// Peers and drkit talk to the same endpoint in the same run.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, createReadStream, createWriteStream, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes, randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { S3Client, GetObjectCommand, CreateBucketCommand, ListObjectsV2Command, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { StreamWriter } from '../../dist/format/codec.js';
import { faster, must, timed } from '../lib/bench.mjs';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const MiB = 1 << 20;
const size = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'drkit-bench-archive-'));
const PART = 16 * MiB;
const QUEUE = 4;
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
// object names of this run: an existing endpoint may hold an earlier run's
const prefix = `run-${randomBytes(4).toString('hex')}/`;



/** The cluster: an existing endpoint, or test/helpers/ceph.ts in a child (TypeScript through tap's loader). */
async function cluster() {
  if (process.env.AWS_ENDPOINT_URL && process.env.AWS_ACCESS_KEY_ID) {
    return { env: {}, stop: async () => undefined, timings: null };
  }
  const child = spawn(process.execPath, [
    `--import=${join(root, 'node_modules/@tapjs/typescript/dist/esm/import.mjs')}`, join(root, 'test/helpers/ceph-serve.ts'),
  ], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  for await (const chunk of child.stdout) {
    out += chunk;
    if (out.includes('\n')) break;
  }
  const info = JSON.parse(out.split('\n')[0]);
  return {
    env: info.env,
    timings: info.timings,
    stop: async () => {
      child.stdin.end();
      await once(child, 'exit');
    },
  };
}

/** A store of `size` bytes of 1 MiB writes, appended with bin/dr-journal (64 MiB segments). */
function buildStore(storeDir) {
  const file = join(dir, 'stream.drj');
  const w = new StreamWriter({ groupId: randomBytes(16), firstSeq: 1 });
  const fd = openSync(file, 'w');
  writeSync(fd, w.start());
  for (const p of w.volume({ name: 'disk0', size, blockSize: 4096, id: randomBytes(16) })) writeSync(fd, p);
  const data = Buffer.allocUnsafe(MiB);
  for (let off = 0; off < size; off += MiB) {
    randomFillSync(data);
    for (const p of w.record({ type: 'write', volume: 0, offset: off, data }).parts) writeSync(fd, p);
    if (off % (64 * MiB) === 0) for (const p of w.record({ type: 'flush' }).parts) writeSync(fd, p);
  }
  for (const p of w.record({ type: 'mark', kind: 'app', name: 'end', id: randomBytes(16) }).parts) writeSync(fd, p);
  for (const p of w.end()) writeSync(fd, p);
  closeSync(fd);
  must(join(root, 'bin/dr-journal'), ['append', storeDir, file, '--segment-size', '64M']);
  rmSync(file);
}

/** `dr-journal archive` argv */
function archiveArgv(args) {
  return [join(root, 'bin/dr-journal'), args];
}

const c = await cluster();
try {
  Object.assign(process.env, c.env);
  const bucket = process.env.BENCH_S3_BUCKET ?? 'drkit-bench';
  const s3 = new S3Client({ forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  await s3.send(new CreateBucketCommand({ Bucket: bucket })).catch(() => undefined);
  const storeDir = join(dir, 'store');
  buildStore(storeDir);
  const segDir = join(storeDir, 'segments');
  const files = readdirSync(segDir).filter((f) => /\.(drj|idx)$/.test(f));
  const bytes = files.reduce((n, f) => n + statSync(join(segDir, f)).size, 0);
  for (const f of files) await pipeline(createReadStream(join(segDir, f)), createWriteStream('/dev/null')); // page cache

  // 1. archive vs lib-storage Upload, alternating, best of BENCH_ROUNDS (the machine may be shared)
  let peerUp = Infinity;
  let a = null;
  for (let round = 0; round < rounds; round++) {
    const t0 = process.hrtime.bigint();
    for (const f of files) {
      const up = new Upload({ client: s3, params: { Bucket: bucket, Key: `${prefix}sdk${round}/${f}`, Body: createReadStream(join(segDir, f)) }, partSize: PART, queueSize: QUEUE });
      await up.done();
    }
    peerUp = Math.min(peerUp, Number(process.hrtime.bigint() - t0) / 1e9);
    const [cmd, argv] = archiveArgv(['archive', storeDir, '--to', `s3://${bucket}/${prefix}drkit${round}`, '--part-size', '16M', '--concurrency', String(QUEUE)]);
    const x = timed(cmd, argv, { env: c.env });
    a = faster(a, x);
  }
  console.log(JSON.stringify({
    area: 'archive', name: 'archive-upload', drkit_s: +a.s.toFixed(3), peer: 'aws-sdk lib-storage Upload', peer_s: +peerUp.toFixed(3),
    ratio: +(peerUp / a.s).toFixed(3), higher_is_better: true, drkit_peak_mib: a.peak, bytes,
    note: `${files.length} objects; drkit also hashes (sha256 + 1 MiB chunk sums), writes sums objects and the manifest; part 16 MiB, 4 in flight; ceph startup ${c.timings ? c.timings.total + ' ms' : 'n/a'}`,
  }));

  // 2. restore from the bucket alone (dr-restore, durable output) vs GetObject of the same objects
  const out = join(dir, 'restored.img');
  const work = join(dir, 'work');
  must('mkdir', ['-p', work]);
  let dl = null;
  let peerDown = Infinity;
  let peerCpu = 0;
  for (let round = 0; round < rounds; round++) {
    const x = timed(join(root, 'bin/dr-restore'), [`s3://${bucket}/${prefix}drkit${round}`, '--at', 'latest', '--out', out, '-v'], { env: { ...c.env, TMPDIR: work } });
    dl = faster(dl, x);
    rmSync(out, { force: true });
    const t1 = process.hrtime.bigint();
    const c1 = process.cpuUsage();
    let i = 0;
    const worker = async () => {
      while (i < files.length) {
        const f = files[i++];
        const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}sdk${round}/${f}` }));
        const file = join(work, f);
        await pipeline(r.Body, createWriteStream(file));
        const fd = openSync(file, 'r+'); // durable, as the restored image is
        fsyncSync(fd);
        closeSync(fd);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const s = Number(process.hrtime.bigint() - t1) / 1e9;
    if (s < peerDown) {
      peerDown = s;
      const u = process.cpuUsage(c1);
      peerCpu = (u.user + u.system) / 1e6;
    }
    for (const f of files) rmSync(join(work, f), { force: true });
  }
  const fetched = /fetched (\d+) bytes in (\d+) requests/.exec(dl.stderr);
  console.log(JSON.stringify({
    area: 'archive', name: 'restore-from-bucket', drkit_s: +dl.s.toFixed(3), peer: 'aws-sdk GetObject (4 in flight) + fsync', peer_s: +peerDown.toFixed(3),
    ratio: +(peerDown / dl.s).toFixed(3), higher_is_better: true, drkit_peak_mib: dl.peak, bytes,
    note: `drkit: dr-restore s3://... --at latest --out FILE (process start and SDK load included): manifest, index objects, then ranged GETs of the 1 MiB checksum chunks the point needs (${fetched ? `${fetched[1]} bytes in ${fetched[2]} requests` : '?'}), each chunk CRC-checked against its SHA-256-checked sums object, restored alongside the download, fsynced image; cpu ${dl.cpu} s; peer: the same objects (${bytes} bytes) downloaded to files and fsynced, in-process (no checking, no image), cpu ${peerCpu.toFixed(2)} s`,
  }));
  // this run's objects go (an existing endpoint would fill up over runs)
  for (let token; ;) {
    const l = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of l.Contents ?? []) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
    if (!l.IsTruncated) break;
    token = l.NextContinuationToken;
  }
  s3.destroy();
} finally {
  await c.stop();
  rmSync(dir, { recursive: true, force: true });
}
