/**
 * Where a command writes a binary journal stream: standard output (refused when it
 * is a terminal) or a file named with --output (created, fsynced when done).
 */
import { closeSync, createWriteStream, fsyncSync, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { widenPipe } from '../cli/io.js';
import { DrError, fromSystemError } from '../errors.js';

export interface StreamOutput {
  out: Writable;
  /** fd to fsync once the stream is complete (files only) */
  fd: number | undefined;
  name: string;
  /** true when stdout is free for machine output (--json) */
  stdoutFree: boolean;
  close(): Promise<void>;
}

export function openStreamOutput(path: string | undefined, what = 'binary journal stream'): StreamOutput {
  if (path === undefined || path === '-') {
    if (process.stdout.isTTY) {
      throw new DrError('DR_USAGE', `refusing to write a ${what} to a terminal: redirect standard output or use --output FILE`);
    }
    widenPipe(1);
    return { out: process.stdout, fd: 1, name: 'standard output', stdoutFree: false, close: async () => undefined };
  }
  let fd: number;
  try {
    fd = openSync(path, 'w', 0o644);
  } catch (err) {
    throw fromSystemError(err, `cannot create ${path}`);
  }
  const out = createWriteStream('', { fd, autoClose: false, highWaterMark: 1 << 20 });
  return {
    out, fd, name: path, stdoutFree: true,
    close: () => new Promise<void>((resolve, reject) => {
      out.end(() => {
        try {
          fsyncSync(fd);
          closeSync(fd);
          resolve();
        } catch (err) {
          reject(fromSystemError(err, `closing ${path}`));
        }
      });
    }),
  };
}
