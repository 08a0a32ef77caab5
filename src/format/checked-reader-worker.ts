/**
 * Worker thread of CheckedFileReader. The main thread reads the first chunks itself while
 * this thread starts; once it is up it says so (CTRL.ready), and the main thread hands it the reading:
 * how many chunks were read and where the CRC walk stands. From there it reads the file
 * into the shared buffers in turn (waiting while all of them are held by the reader's
 * user), walks each chunk's record CRCs (RecordCrcWalker) and tells the main thread how
 * much it read and how far the stream is verified.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { RecordCrcWalker, type WalkerState } from './crc-walker.js';
import { CTRL, readChunk } from './checked-reader-shared.js';

const { fd, buffers, control } = workerData as { fd: number; buffers: SharedArrayBuffer[]; control: SharedArrayBuffer };
const ctrl = new Int32Array(control);
const bufs = buffers.map((b) => Buffer.from(b));

Atomics.store(ctrl, CTRL.ready, 1);
while (Atomics.load(ctrl, CTRL.handedOver) === 0) Atomics.wait(ctrl, CTRL.handedOver, 0);
const handOver = receiveMessageOnPort(parentPort!)?.message as { k: number; walker: WalkerState } | undefined;
if (Atomics.load(ctrl, CTRL.stop) !== 0 || handOver === undefined) process.exit(0);
const walker = RecordCrcWalker.resume(handOver.walker);

for (let k = handOver.k; ; k++) {
  for (;;) {
    const released = Atomics.load(ctrl, CTRL.released);
    if (Atomics.load(ctrl, CTRL.stop) !== 0) process.exit(0);
    if (k - released < bufs.length) break;
    Atomics.store(ctrl, CTRL.waiting, 1);
    if (Atomics.load(ctrl, CTRL.released) === released && Atomics.load(ctrl, CTRL.stop) === 0) Atomics.wait(ctrl, CTRL.released, released);
    Atomics.store(ctrl, CTRL.waiting, 0);
  }
  let read: { n: number; verifiedEnd: number };
  try {
    read = readChunk(fd, bufs[k % bufs.length]!, walker);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ k, error: { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall } });
    break;
  }
  parentPort!.postMessage({ k, ...read });
  if (read.n === 0) break;
}
