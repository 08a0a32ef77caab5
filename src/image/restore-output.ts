/**
 * Where a restore writes: a regular file is written under a temporary name in the
 * same directory, made durable and only then renamed into place (a failed or
 * interrupted restore never leaves a half-written file under the name asked for);
 * an existing output is refused unless forced; devices and pipes are written in
 * place, in order.
 */
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { DrError, fromSystemError } from '../errors.js';

export type OutputKind = 'new' | 'replace' | 'special';

/** Check the output path: DR_EXISTS unless --force; a directory is never replaced. */
export async function checkOutput(file: string, force: boolean): Promise<OutputKind> {
  let st: fs.Stats;
  try {
    st = await fsp.lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'new';
    throw fromSystemError(err, `cannot check ${file}`);
  }
  if (st.isDirectory()) throw new DrError('DR_EXISTS', `${file} is a directory: name the file to write`);
  if (!force) throw new DrError('DR_EXISTS', `${file} already exists: use --force to replace it`);
  return st.isFile() || st.isSymbolicLink() ? 'replace' : 'special';
}

/** A regular file being written under a temporary name next to its final one. */
export class AtomicOutput {
  private done = false;

  private constructor(readonly target: string, readonly tmp: string, readonly fh: fsp.FileHandle) {}

  static async create(target: string): Promise<AtomicOutput> {
    const dir = path.dirname(path.resolve(target));
    const tmp = path.join(dir, `.${path.basename(target)}.dr-restore-${process.pid}.tmp`);
    let fh: fsp.FileHandle;
    try {
      await fsp.rm(tmp, { force: true });
      fh = await fsp.open(tmp, 'wx', 0o644);
    } catch (err) {
      throw fromSystemError(err, `cannot create ${target} (temporary file in ${dir})`);
    }
    return new AtomicOutput(target, tmp, fh);
  }

  /** Make the data durable, rename it into place and make the rename durable. */
  async commit(): Promise<void> {
    try {
      await this.fh.sync();
      await this.fh.close();
      this.done = true;
      await fsp.rename(this.tmp, this.target);
      await syncDir(path.dirname(path.resolve(this.target)));
    } catch (err) {
      await this.abort();
      throw fromSystemError(err, `cannot write ${this.target}`);
    }
  }

  /** Throw the temporary file away (after a failure or an interruption). */
  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => undefined);
    }
    await fsp.rm(this.tmp, { force: true }).catch(() => undefined);
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write to a Node stream, waiting when it is full; rejects if the stream fails. */
export async function writeOut(out: Writable, buf: Buffer): Promise<void> {
  if (out.destroyed) throw new DrError('DR_EPIPE', 'output closed');
  if (!out.write(buf)) await once(out, 'drain');
}

/** Open a device, pipe or other non-regular file to be written in order from its start. */
export async function openSpecialOutput(file: string): Promise<{ out: Writable; close(): Promise<void> }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'w');
  } catch (err) {
    throw fromSystemError(err, `cannot open ${file}`);
  }
  const out = fileWriter(fh, file, false);
  return {
    out,
    close: async () => {
      await endWriter(out);
      try {
        await fh.sync().catch(() => undefined); // pipes and character devices cannot be synced
        await fh.close();
      } catch (err) {
        throw fromSystemError(err, `closing ${file}`);
      }
    },
  };
}

/**
 * A Writable appending to an open file handle that stays open (and ours) after
 * the stream ends: FileHandle.createWriteStream keeps a reference that makes a
 * later close() of the handle wait forever unless the stream closes it itself.
 */
export function fileWriter(fh: fsp.FileHandle, name: string, positional = true): Writable {
  let pos = 0;
  const writeAll = async (buf: Buffer): Promise<void> => {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await fh.write(buf, done, buf.length - done, positional ? pos + done : null);
      done += bytesWritten;
    }
    pos += buf.length;
  };
  return new Writable({
    highWaterMark: 1 << 20,
    writev(chunks, cb) {
      (async () => {
        for (const c of chunks) await writeAll(c.chunk as Buffer);
      })().then(() => cb(), (err) => cb(fromSystemError(err, `cannot write ${name}`)));
    },
  });
}

/** End a writer and wait until everything is written. */
export function endWriter(w: Writable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    w.once('error', reject);
    w.end(() => resolve());
  });
}
