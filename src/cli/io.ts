/** Opening inputs and outputs named on the command line, with errors that name them. */
import { promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import { fromSystemError } from '../errors.js';

/** A file path, or "-" / undefined for standard input. Fails early (and clearly) if unreadable. */
export async function openInput(path: string | undefined): Promise<{ stream: Readable; name: string }> {
  if (path === undefined || path === '-') return { stream: process.stdin, name: 'standard input' };
  try {
    const fh = await fsp.open(path, 'r');
    return { stream: fh.createReadStream({ highWaterMark: 1 << 20 }), name: path };
  } catch (err) {
    throw fromSystemError(err, `cannot open ${path}`);
  }
}
