/**
 * Small file-system helpers with the durability rules of the store: new files are
 * written to a temporary name, fsynced, renamed into place and their directory
 * fsynced; every system error becomes a DrError naming the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DrError, fromSystemError } from '../errors.js';

export function ioError(err: unknown, what: string): DrError {
  return fromSystemError(err, what);
}

/** fsync a directory so that a rename or create inside it is durable. */
export function fsyncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    throw ioError(err, `cannot sync directory ${dir}`);
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/** The temporary name `file` is written under before its rename (prune removes those of dead processes). */
export function tempPath(file: string): string {
  return `${file}.tmp.${process.pid}`;
}

/** The pid in a name made by tempPath(), or null for any other name. */
export function tempPathOwner(name: string): number | null {
  const m = /\.tmp\.(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Write a whole file durably: temp file, fsync, rename, fsync directory. */
export function writeFileDurable(file: string, data: Buffer | string | Array<Buffer>): void {
  const tmp = tempPath(file);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'w', 0o644);
    writevAllSync(fd, Array.isArray(data) ? data : [typeof data === 'string' ? Buffer.from(data) : data], 0);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) try { fs.closeSync(fd); } catch { /* already failing */ }
    try { fs.unlinkSync(tmp); } catch { /* may not exist */ }
    throw ioError(err, `cannot write ${file}`);
  }
  fsyncDir(path.dirname(file));
}

/** writeFileDurable() with the writes and syncs on the thread pool. */
export async function writeFileDurableAsync(file: string, parts: Buffer[]): Promise<void> {
  const tmp = tempPath(file);
  let fh: fs.promises.FileHandle | null = null;
  try {
    fh = await fs.promises.open(tmp, 'w', 0o644);
    await writevAll(fh.fd, parts, 0);
    await fh.sync();
    await fh.close();
    fh = null;
    await fs.promises.rename(tmp, file);
  } catch (err) {
    if (fh !== null) await fh.close().catch(() => undefined);
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw ioError(err, `cannot write ${file}`);
  }
  await fsyncDirAsync(path.dirname(file));
}

/** fsyncDir() on the thread pool. */
export async function fsyncDirAsync(dir: string): Promise<void> {
  let fh: fs.promises.FileHandle | null = null;
  try {
    fh = await fs.promises.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    throw ioError(err, `cannot sync directory ${dir}`);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Read exactly `length` bytes at `position` (fewer only at end of file). */
export function preadSync(fd: number, length: number, position: number, into?: Buffer): Buffer {
  const buf = into ?? Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === buf.length ? buf : buf.subarray(0, done);
}

export function readJson<T>(file: string): T | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(err, `cannot read ${file}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new DrError('DR_STORE_CORRUPT', `${file} is not valid JSON`);
  }
}

export function exists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Is process `pid` alive (and not a zombie)? */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
  } catch {
    /* no /proc: trust kill(0) */
  }
  return true;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', done);
      resolve();
    }, ms);
    const done = () => {
      clearTimeout(t);
      resolve();
    };
    signal?.addEventListener('abort', done, { once: true });
  });
}

const sleepBuf = new Int32Array(new SharedArrayBuffer(4));
/** buffers per writev call (the usual IOV_MAX) */
const IOV_MAX = 1024;

/**
 * Write all of `bufs` at `position`, or at the descriptor's own position (a pipe, standard
 * output) when it is undefined: loops over partial writes, waits out EAGAIN (a full
 * non-blocking pipe) and fails on a write that makes no progress. `total`: byteLength(bufs),
 * when the caller already has it.
 */
export function writevAllSync(fd: number, bufs: Buffer[], position?: number, total = byteLength(bufs)): void {
  let done = 0;
  while (done < total) {
    let rest = sliceFrom(bufs, done);
    if (rest.length > IOV_MAX) rest = rest.slice(0, IOV_MAX);
    let n: number;
    try {
      n = position === undefined ? fs.writevSync(fd, rest) : fs.writevSync(fd, rest, position + done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
        Atomics.wait(sleepBuf, 0, 0, 1); // a non-blocking pipe is full: wait for the reader
        continue;
      }
      throw err;
    }
    if (n <= 0) throw new Error(`short write: no byte of the ${total - done} left was written`);
    done += n;
  }
}

/** Write all of `bufs` at `position` on the thread pool (looping over short writes); `total` as in writevAllSync(). */
export function writevAll(fd: number, bufs: Buffer[], position: number, total = byteLength(bufs)): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done >= total) {
        resolve();
        return;
      }
      fs.writev(fd, sliceFrom(bufs, done), position + done, (err, n) => {
        if (err) reject(err);
        else if (n <= 0) reject(new Error('short write'));
        else step(done + n);
      });
    };
    step(0);
  });
}

export function byteLength(bufs: Buffer[]): number {
  let n = 0;
  for (const b of bufs) n += b.length;
  return n;
}

/** `bufs` without their first `skip` bytes (views, no copy). */
function sliceFrom(bufs: Buffer[], skip: number): Buffer[] {
  if (skip === 0) return bufs;
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
