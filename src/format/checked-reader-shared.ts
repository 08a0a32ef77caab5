/** What CheckedFileReader and its worker thread share: the control words and the step that reads a chunk. */
import { readSync } from 'node:fs';
import type { RecordCrcWalker } from './crc-walker.js';

/** The control words (an Int32Array over a SharedArrayBuffer). */
export const CTRL = {
  /** chunks the main thread has released so far */
  released: 0,
  /** 1 = stop */
  stop: 1,
  /** 1 = the worker waits for a release (wake it) */
  waiting: 2,
  /** 1 = the worker has started and waits for the hand-over (a word, not a message: the main thread reads it between chunks without waiting for its event loop) */
  ready: 3,
  /** 0 = the main thread reads; 1 = the worker reads (the hand-over message was posted); 2 = stop */
  handedOver: 4,
  /** how many words */
  size: 5,
} as const;

/**
 * Read the next chunk of `fd` (from its file position) into `buf` and walk its record
 * CRCs: the bytes read (0 at the end) and how far the stream is verified. Read errors are
 * thrown as they are; each side reports them its own way.
 */
export function readChunk(fd: number, buf: Buffer, walker: RecordCrcWalker): { n: number; verifiedEnd: number } {
  const n = readSync(fd, buf, 0, buf.length, null);
  return { n, verifiedEnd: n > 0 ? walker.push(buf.subarray(0, n)) : walker.verifiedEnd };
}
