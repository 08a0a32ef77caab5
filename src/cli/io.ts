/** Opening inputs and outputs named on the command line, with errors that name them. */
import { spawnSync } from 'node:child_process';
import { fstatSync, promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import { fromSystemError } from '../errors.js';

/** A file path, or "-" / undefined for standard input. Fails early (and clearly) if unreadable. */
export async function openInput(path: string | undefined): Promise<{ stream: Readable; name: string }> {
  if (path === undefined || path === '-') {
    widenPipe(0);
    return { stream: process.stdin, name: 'standard input' };
  }
  try {
    const fh = await fsp.open(path, 'r');
    return { stream: fh.createReadStream({ highWaterMark: 1 << 20 }), name: path };
  } catch (err) {
    throw fromSystemError(err, `cannot open ${path}`);
  }
}

/**
 * The chunks of `input`, read ahead of the consumer up to `limit` bytes. A for-await over
 * a pipe's stream stops reading once its buffer holds highWaterMark bytes (16 KiB for
 * standard input), so every pause of the consumer (waiting for a write to finish) soon
 * stops the writer upstream too; at the far end of an ssh pipe that is sshd, ssh and the
 * sender, all stalled in turn. Keeping the pipe drained while the consumer works lets the
 * chain run on (dr-ship receive, 1 GiB through loopback ssh on a busy machine: 3.4-3.5 s
 * instead of 5.8-6.7 s in two of three alternating pairs; on a quiet one the difference is
 * within the noise). Ends at 'end', or at 'close' (a destroyed input); throws the stream's
 * error.
 */
export async function* readAhead(input: Readable, limit: number): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let error: Error | null = null;
  let wake: (() => void) | null = null;
  const signal = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const onData = (c: Buffer): void => {
    queue.push(c);
    queued += c.length;
    if (queued >= limit) input.pause();
    signal();
  };
  const onEnd = (): void => {
    ended = true;
    signal();
  };
  const onError = (err: Error): void => {
    error = err;
    signal();
  };
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('close', onEnd);
  input.on('error', onError);
  try {
    for (;;) {
      const c = queue.shift();
      if (c !== undefined) {
        queued -= c.length;
        if (input.isPaused() && queued < limit / 2 && !ended) input.resume();
        yield c;
        continue;
      }
      if (error) throw error;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    input.off('data', onData);
    input.off('end', onEnd);
    input.off('close', onEnd);
    input.off('error', onError);
  }
}

/** What widenPipe() asks for: the most an unprivileged process may (Linux's fs.pipe-max-size default). */
export const PIPE_BYTES = 1 << 20;
/** Linux fcntl(2) F_SETPIPE_SZ */
const F_SETPIPE_SZ = 1031;

/**
 * Let the pipe on `fd`, when it is one, hold PIPE_BYTES instead of Linux's default 64 KiB
 * (fcntl F_SETPIPE_SZ; the size belongs to the pipe, so a child holding the same pipe can
 * set it). A stream read from a 64 KiB pipe stalls the writer upstream whenever this
 * process is busy with what it read; at the far end of ssh that is sshd, then ssh, then
 * the sender (dr-ship receive of 1 GiB through loopback ssh, median of 5: 2.86 s instead
 * of 3.25 s, with --compress 2.18 s instead of 2.40 s). The same holds the other way for a
 * stream written into a pipe (`dr-journal cat DIR | ssh ...`: 2.30-2.36 s instead of
 * 2.34-2.81 s for 1 GiB), so commands widen the pipes of the streams they read and write
 * on standard input and output. Node has no fcntl, so a one-line
 * perl makes the call (perl-base is part of every Debian system), about 3 ms once per run.
 * Returns whether the pipe was widened: without perl, on another system, past the
 * per-user pipe limit (fs.pipe-user-pages-soft) or on anything but a pipe it stays as it is.
 */
export function widenPipe(fd: number, bytes = PIPE_BYTES): boolean {
  if (process.platform !== 'linux') return false;
  try {
    if (!fstatSync(fd).isFIFO()) return false;
  } catch {
    return false;
  }
  const r = spawnSync('perl', ['-e', `fcntl(STDIN, ${F_SETPIPE_SZ}, $ARGV[0] + 0) or exit 1`, String(bytes)], {
    stdio: [fd, 'ignore', 'ignore'],
    timeout: 5000,
  });
  return r.status === 0;
}
