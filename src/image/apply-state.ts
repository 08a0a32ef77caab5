/**
 * The replica's state file: which group the replica belongs to, which volume is
 * replicated to which target, and the last sequence number applied and made
 * durable. dr-apply writes it only after fdatasync of every target, and always
 * atomically (temp file, fsync, rename, fsync of the directory), so after a crash
 * it names a seq whose effects are all on disk. The file is JSON:
 *
 *   { "format": "drkit-apply-state", "version": 1,
 *     "group": "<uuid>", "appliedSeq": N, "appliedTime": <microseconds>,
 *     "volumes": [ { "name": "db", "id": "<uuid>", "size": 4194304, "target": "/abs/db.img" } ],
 *     "updated": "<ISO-8601>" }
 *
 * A lock file next to it (STATE.lock, holding the pid) keeps two dr-apply runs
 * off the same replica; a lock left by a dead process is taken over.
 */
import {
  closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync, constants as C,
} from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { DrError, fromSystemError } from '../errors.js';

export const STATE_FORMAT = 'drkit-apply-state';
export const STATE_VERSION = 1;

export interface StateVolume {
  name: string;
  /** volume id, 8-4-4-4-12 hex */
  id: string;
  size: number;
  /** absolute path of the target image */
  target: string;
}

export interface ApplyState {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  /** group id, 8-4-4-4-12 hex */
  group: string;
  /** every record up to and including this seq is applied and durable */
  appliedSeq: number;
  /** time of that record, microseconds since the epoch (0 if none) */
  appliedTime: number;
  volumes: StateVolume[];
  updated: string;
}

/** Read a state file; null when it does not exist. DR_STORE_CORRUPT when it is not a valid state file. */
export function readState(path: string): ApplyState | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, `cannot read state file ${path}`);
  }
  let s: ApplyState;
  try {
    s = JSON.parse(text) as ApplyState;
  } catch {
    throw new DrError('DR_STORE_CORRUPT', `state file ${path} is not valid JSON (not written by dr-apply?)`);
  }
  const bad = (what: string) => new DrError('DR_STORE_CORRUPT', `state file ${path}: ${what}`);
  if (s === null || typeof s !== 'object' || s.format !== STATE_FORMAT) throw bad(`not a dr-apply state file (format is not "${STATE_FORMAT}")`);
  if (s.version !== STATE_VERSION) throw bad(`version ${String(s.version)} is not supported (this dr-apply knows ${STATE_VERSION})`);
  if (typeof s.group !== 'string' || !/^[0-9a-f-]{36}$/.test(s.group)) throw bad('bad group id');
  if (!Number.isSafeInteger(s.appliedSeq) || s.appliedSeq < 0) throw bad('bad appliedSeq');
  if (!Number.isSafeInteger(s.appliedTime) || s.appliedTime < 0) throw bad('bad appliedTime');
  if (!Array.isArray(s.volumes)) throw bad('bad volume list');
  for (const v of s.volumes) {
    if (typeof v?.name !== 'string' || typeof v.id !== 'string' || !Number.isSafeInteger(v.size) || typeof v.target !== 'string') {
      throw bad('bad volume entry');
    }
  }
  return s;
}

/** Replace the state file atomically and durably: write a temp file, fsync it, rename, fsync the directory. */
export function writeState(path: string, state: ApplyState): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}`);
  const body = Buffer.from(JSON.stringify(state, null, 1) + '\n');
  let fd = -1;
  try {
    fd = openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_TRUNC, 0o644);
    let done = 0;
    while (done < body.length) done += writeSync(fd, body, done, body.length - done);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
    syncDir(dir);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to remove */
    }
    throw fromSystemError(err, `cannot write state file ${path}`);
  }
}

/** fsync a directory so a rename or a new file in it survives a crash. */
export function syncDir(dir: string): void {
  const fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** An exclusive lock on a replica: STATE.lock created with O_EXCL, holding our pid. */
export class StateLock {
  private constructor(readonly path: string) {}

  static acquire(statePath: string): StateLock {
    const path = `${statePath}.lock`;
    for (let attempt = 0; attempt < 3; attempt++) {
      // The pid is written to a private file first and then hard-linked into place,
      // so a lock file never exists without its owner's pid in it.
      const tmp = `${path}.${process.pid}`;
      try {
        writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
        linkSync(tmp, path);
        return new StateLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, `cannot create lock file ${path}`);
      } finally {
        try {
          unlinkSync(tmp);
        } catch {
          /* not created */
        }
      }
      let pid = NaN;
      try {
        pid = Number(readFileSync(path, 'utf8').trim());
      } catch {
        /* vanished or unreadable: retry */
      }
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new DrError('DR_LOCKED', `replica is in use by dr-apply process ${pid} (lock file ${path})`);
      }
      // Stale (its process is gone, e.g. killed with -9) or half-written: take it over.
      try {
        unlinkSync(path);
      } catch {
        /* someone else removed it */
      }
    }
    throw new DrError('DR_LOCKED', `cannot take the lock file ${path}`);
  }

  release(): void {
    try {
      unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
