/**
 * Opening images: regular files and block devices, read-only or read-write, with
 * their size in bytes and errors that name the path.
 *
 * Size of a block device: fstat() reports 0 for devices and Node has no lseek()
 * or ioctl(BLKGETSIZE64), so we read the kernel's own figure from sysfs:
 * /sys/dev/block/MAJOR:MINOR/size, which is always in 512-byte units whatever the
 * device's logical block size (see the kernel's Documentation/ABI/stable/sysfs-block).
 * This needs no external command (no blockdev(8)) and no privileges beyond opening
 * the device itself.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, constants as C } from 'node:fs';
import { DrError, fromSystemError } from '../errors.js';

export type ImageKind = 'file' | 'block';

export interface ImageHandle {
  path: string;
  fd: number;
  size: number;
  kind: ImageKind;
}

/** Open an image (file or block device) and learn its size. DR_IO naming the path on failure. */
export function openImage(path: string, mode: 'r' | 'r+' = 'r'): ImageHandle {
  let fd: number;
  try {
    fd = openSync(path, mode === 'r' ? C.O_RDONLY : C.O_RDWR);
  } catch (err) {
    throw fromSystemError(err, `cannot open ${path}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isFile()) return { path, fd, size: st.size, kind: 'file' };
    if (st.isBlockDevice()) return { path, fd, size: blockDeviceSize(path, st.rdev), kind: 'block' };
    throw new DrError('DR_IO', `${path} is not a regular file or a block device`);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

export function closeImage(h: ImageHandle): void {
  try {
    closeSync(h.fd);
  } catch {
    /* already closed */
  }
}

/** Size in bytes of the block device with device number `rdev`, from sysfs. */
export function blockDeviceSize(path: string, rdev: number): number {
  // Linux dev_t encoding (glibc's gnu_dev_major/minor) for the 32-bit value Node reports.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  const sys = `/sys/dev/block/${major}:${minor}/size`;
  let text: string;
  try {
    text = readFileSync(sys, 'utf8');
  } catch (err) {
    throw fromSystemError(err, `cannot learn the size of block device ${path} (${sys})`);
  }
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors)) throw new DrError('DR_IO', `cannot learn the size of block device ${path}: ${sys} says ${JSON.stringify(text.trim())}`);
  return sectors * 512;
}

/** Read exactly `length` bytes at `position` (fewer only at end of file). Returns the count read. */
export function readFully(fd: number, buf: Buffer, length: number, position: number, what: string): number {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, buf, done, length - done, position + done);
    } catch (err) {
      throw fromSystemError(err, `reading ${what} at byte ${position + done}`);
    }
    if (n === 0) break;
    done += n;
  }
  return done;
}
