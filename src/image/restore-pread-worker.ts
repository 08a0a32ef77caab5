/**
 * Worker thread of restore-preads.ts: performs the positional reads of a chunk
 * (PointInTimeReader.whole.readOps rows) into the main thread's shared chunk buffer
 * and answers {id} when done, or {id, error}.
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { preadSync } from '../store/files.js';
import { READ_OP_FIELDS, readCheckedWrite } from '../store/record-read.js';

interface Job { id: number; ops: Float64Array; buf: SharedArrayBuffer; offset: number; length: number }
const files = (workerData as { files: Array<{ fd: number; path: string; name: string; zeroesPastEnd: boolean }> }).files;
const port = parentPort!;
/**
 * Zeroes are copied from here: fill() on a buffer over shared memory stores byte by
 * byte (5x slower here), and a chunk of a volume with unwritten blocks has many runs
 * of them (a third of the blocks after 1 GiB of random 4 KiB writes on 1 GiB).
 */
const ZEROES = Buffer.alloc(1024 * 1024);

function zero(dst: Buffer, start: number, end: number): void {
  for (let at = start; at < end; at += ZEROES.length) ZEROES.copy(dst, at, 0, Math.min(ZEROES.length, end - at));
}

function perform(job: Job): void {
  const dst = Buffer.from(job.buf, job.offset, job.length);
  const ops = job.ops;
  for (let r = 0; r < ops.length; r += READ_OP_FIELDS) {
    const file = ops[r]!;
    const pos = ops[r + 1]!;
    const n = ops[r + 2]!;
    const at = ops[r + 3]!;
    if (file < 0) {
      zero(dst, at, at + n);
      continue;
    }
    const f = files[file]!;
    if (ops[r + 4]! >= 0) {
      // the first read from a record not checked yet: all of it, checked
      readCheckedWrite(f.fd, f.path, ops[r + 4]!, ops[r + 5]!, ops[r + 6]!, ops[r + 7]!, pos, n, dst, at);
      continue;
    }
    let done: number;
    try {
      // one read(2) straight into the chunk (no view made per block, 166k of them per GiB); the rest of a short one as usual
      done = readSync(f.fd, dst, at, n, pos);
      if (done > 0 && done < n) done += preadSync(f.fd, n - done, pos + done, dst.subarray(at + done, at + n)).length;
    } catch (err) {
      throw Object.assign(new Error(`cannot read ${f.name}: ${(err as Error).message}`), { code: 'DR_IO' });
    }
    if (done < n) {
      if (f.zeroesPastEnd) zero(dst, at + done, at + n);
      else throw Object.assign(new Error(`${f.name} is shorter than its index says (byte ${pos + done})`), { code: 'DR_STORE_CORRUPT' });
    }
  }
}

port.on('message', (job: Job) => {
  try {
    perform(job);
    port.postMessage({ id: job.id });
  } catch (err) {
    port.postMessage({ id: job.id, error: { code: (err as { code?: string }).code, message: (err as Error).message } });
  }
});
