/**
 * Reading restore data out of journal segments with the record checksum checked.
 *
 * A restore reads a block's bytes by position (the extent tables say where each
 * record's data lies), not by decoding the stream, so nothing on that path saw the
 * record CRC: a flipped bit in a segment went into the restored image. Here the first
 * read of a record's data reads the whole record (its 48 bytes of header and WRITE
 * prefix, and all its data) and checks its CRC, volume, offset and length before the
 * bytes are used. The caller remembers which records passed (pit.ts, in its block map),
 * so a record is checked once per reader, and later reads of it are plain preads.
 *
 * Used on the main thread (PitReader.readSync) and on the restore read thread
 * (image/restore-pread-worker.ts), which performs READ_OP rows.
 */
import fs from 'node:fs';
import { DrError } from '../errors.js';
import { WRITE_DATA_AT, writeRecordProblem } from '../format/layout.js';
import { ioError, preadSync } from './files.js';

/**
 * A read op row (PointInTimeReader.whole.readOps): READ_OP_FIELDS numbers
 *   0 file    index into readFiles(); -1: zeroes
 *   1 pos     position in the file
 *   2 n       bytes
 *   3 at      offset in the destination
 *   4 rec     -1, or: the data of a WRITE record not checked yet starts at this file position...
 *   5 recLen  ...and has this many bytes,
 *   6 volume  ...and writes to this volume
 *   7 offset  ...at this volume offset: read it all and check it (readCheckedWrite)
 */
export const READ_OP_FIELDS = 8;

const head = Buffer.allocUnsafe(WRITE_DATA_AT);
/** a record read whole when only part of its data is wanted (grows to the largest: 32 MiB of data at most) */
let scratch = Buffer.allocUnsafe(64 * 1024);

/**
 * Read data bytes [pos, pos + n) of a WRITE record of segment `file` (open as `fd`) into
 * dst[at..], reading and checking the whole record, whose data are [dataAt, dataAt +
 * length) in the segment and which writes to `volume` at `offset`: DR_STORE_CORRUPT
 * (naming the segment and the record's byte) if it is not that record or its checksum
 * fails, or if the segment ends inside it. dst's bytes are undefined after an error.
 *
 * All of the record's data wanted (a whole 4 KiB block written by one 4 KiB write, the
 * usual case): header and data in one readv(2), the data straight into dst. Otherwise the
 * whole record into scratch memory with one pread, the wanted part copied out. (Restoring
 * 1 GiB from a journal of random 4 KiB writes, median of 10 alternating runs: 1.35 s this
 * way, 1.42 s with every record read into scratch and copied, 1.13 s with no check.)
 */
export function readCheckedWrite(
  fd: number, file: string, dataAt: number, length: number, volume: number, offset: number, pos: number, n: number, dst: Buffer, at: number,
): void {
  if (pos < dataAt || pos + n > dataAt + length) {
    throw new DrError('DR_STORE_CORRUPT', `segment ${file}: bytes ${pos}+${n} are not inside the record whose data is at ${dataAt}+${length} (damaged index)`);
  }
  if (n === length) {
    const data = dst.subarray(at, at + n);
    readWriteRecord(fd, file, dataAt, head, data);
    return checkWriteRecord(file, dataAt, head, data, volume, offset);
  }
  const total = WRITE_DATA_AT + length;
  if (scratch.length < total) scratch = Buffer.allocUnsafe(total);
  const data = scratch.subarray(WRITE_DATA_AT, total);
  readWriteRecord(fd, file, dataAt, scratch, data);
  checkWriteRecord(file, dataAt, scratch, data, volume, offset);
  data.copy(dst, at, pos - dataAt, pos - dataAt + n);
}

/**
 * Read a WRITE record whose data start at `dataAt` in segment `file`: its first
 * WRITE_DATA_AT bytes into `head` and its data into `data` (as long as the data), with one
 * readv(2); DR_STORE_CORRUPT if the segment ends before the record does.
 */
function readWriteRecord(fd: number, file: string, dataAt: number, head: Buffer, data: Buffer): void {
  const start = dataAt - WRITE_DATA_AT;
  const total = WRITE_DATA_AT + data.length;
  const h = head.subarray(0, WRITE_DATA_AT);
  let done: number;
  try {
    done = fs.readvSync(fd, [h, data], start);
    // a short one (a signal, the end of the file): the rest piece by piece
    if (done > 0 && done < WRITE_DATA_AT) done += preadSync(fd, WRITE_DATA_AT - done, start + done, h.subarray(done)).length;
    if (done >= WRITE_DATA_AT && done < total) done += preadSync(fd, total - done, start + done, data.subarray(done - WRITE_DATA_AT)).length;
  } catch (err) {
    throw ioError(err, `cannot read segment ${file}`);
  }
  if (done < total) throw new DrError('DR_STORE_CORRUPT', `segment ${file} is shorter than its index says (the record at byte ${start} ends at ${start + total}, the file at ${start + done})`);
}

/** DR_STORE_CORRUPT unless `head` and `data` (read by readWriteRecord) are a WRITE of data.length bytes to `volume` at `offset` with matching checksums. */
function checkWriteRecord(file: string, dataAt: number, head: Buffer, data: Buffer, volume: number, offset: number): void {
  const problem = writeRecordProblem(head, data, volume, offset, data.length);
  if (problem) throw new DrError('DR_STORE_CORRUPT', `segment ${file} is corrupt at byte ${dataAt - WRITE_DATA_AT}: ${problem}`);
}
