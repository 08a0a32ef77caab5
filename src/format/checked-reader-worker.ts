/**
 * Worker thread of CheckedFileReader: reads the file into the shared buffers in turn
 * (waiting while all of them are held by the reader's user), walks each chunk's record
 * CRCs (RecordCrcWalker) and tells the main thread how much it read and how far the
 * stream is verified.
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { RecordCrcWalker } from './crc-walker.js';

const { fd, buffers, control } = workerData as { fd: number; buffers: SharedArrayBuffer[]; control: SharedArrayBuffer };
/** [0]: chunks the main thread has released so far; [1]: 1 = stop; [2]: 1 = this thread is waiting (wake it) */
const ctrl = new Int32Array(control);
const bufs = buffers.map((b) => Buffer.from(b));
const walker = new RecordCrcWalker();

for (let k = 0; ; k++) {
  for (;;) {
    const released = Atomics.load(ctrl, 0);
    if (Atomics.load(ctrl, 1) !== 0) process.exit(0);
    if (k - released < bufs.length) break;
    Atomics.store(ctrl, 2, 1);
    if (Atomics.load(ctrl, 0) === released && Atomics.load(ctrl, 1) === 0) Atomics.wait(ctrl, 0, released);
    Atomics.store(ctrl, 2, 0);
  }
  const buf = bufs[k % bufs.length]!;
  let n: number;
  try {
    n = readSync(fd, buf, 0, buf.length, null);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ k, error: { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall } });
    break;
  }
  const verifiedEnd = n > 0 ? walker.push(buf.subarray(0, n)) : walker.verifiedEnd;
  parentPort!.postMessage({ k, n, verifiedEnd });
  if (n === 0) break;
}
