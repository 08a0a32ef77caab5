// The least work an append of a stream file can do in Node, for the journal benchmark's
// diagnostic row: `node append-floor.mjs OUT < stream` reads standard input (a file) on a
// worker thread in 1 MiB chunks into 4 shared buffers and computes the CRC-32 of every
// byte there (in 4 KiB pieces, as record checks would); the main thread writes each chunk
// to OUT on the thread pool and requests an fdatasync for every 4 MiB written (group
// commit: one at a time, the next one covering all written meanwhile), then syncs at the
// end. Nothing is decoded, checked against anything, indexed or split into segments: the
// gap between this and `dr-journal append` is what those cost, the gap between this and
// `cat > file && sync file` what reading into user memory, CRC-32 and the syncs cost.
import { openSync, readSync, fdatasync, write } from 'node:fs';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { GroupCommit } from '../../dist/store/group-commit.js';

const CHUNK = 1 << 20;
const BUFFERS = 4;
const PIECE = 4096;
const SYNC_EVERY = 4 << 20;

if (!isMainThread) {
  // reader: fill buffer k % BUFFERS once the main thread has freed it (state 0), then post k
  const { shared, control } = workerData;
  const state = new Int32Array(control);
  const bufs = shared.map((s) => Buffer.from(s));
  let crc = 0;
  for (let k = 0; ; k++) {
    const i = k % BUFFERS;
    for (let v; (v = Atomics.load(state, i)) !== 0; ) Atomics.wait(state, i, v);
    const n = readSync(0, bufs[i], 0, CHUNK, null);
    for (let at = 0; at < n; at += PIECE) crc = crc32(bufs[i].subarray(at, Math.min(n, at + PIECE)), crc);
    Atomics.store(state, i, n === 0 ? -1 : n);
    parentPort.postMessage(k);
    if (n === 0) break;
  }
} else {
  const writeAt = promisify(write);
  const sync = promisify(fdatasync);
  const out = openSync(process.argv[2], 'w');
  const shared = Array.from({ length: BUFFERS }, () => new SharedArrayBuffer(CHUNK));
  const bufs = shared.map((s) => Buffer.from(s));
  const control = new SharedArrayBuffer(4 * BUFFERS);
  const state = new Int32Array(control);
  const reader = new Worker(new URL(import.meta.url), { workerData: { shared, control } });
  // the store's own group commit (src/store/group-commit.ts)
  let syncFailure = null;
  const commits = new GroupCommit(() => sync(out), { failed: (err) => (syncFailure = err) });
  let pos = 0;
  let unsynced = 0;
  let chain = Promise.resolve();
  await new Promise((resolve, reject) => {
    reader.on('error', reject);
    reader.on('message', (k) => {
      const i = k % BUFFERS;
      chain = chain.then(async () => {
        const n = Atomics.load(state, i);
        if (n > 0) {
          await writeAt(out, bufs[i], 0, n, pos);
          pos += n;
          unsynced += n;
          if (unsynced >= SYNC_EVERY) {
            unsynced = 0;
            commits.request();
          }
        }
        Atomics.store(state, i, 0);
        Atomics.notify(state, i);
        if (n <= 0) resolve();
      }, reject);
    });
  });
  await commits.settle();
  if (syncFailure) throw syncFailure;
  await sync(out);
  process.exit(0);
}
