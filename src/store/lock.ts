/**
 * Lock files and read leases. A lock file holds the pid of its owner; it is made
 * with O_EXCL, and a lock whose owner is dead (kill -9) is taken over. Leases are
 * one small file per PointInTimeReader naming the files it reads, so prune leaves
 * them in place until the reader releases them.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { DrError } from '../errors.js';
import { ioError, processAlive, fsyncDir } from './files.js';

export class LockFile {
  private held = false;
  private constructor(readonly file: string) {}

  /**
   * Take the lock or throw DR_LOCKED naming the owner. A `transient` holder (a command
   * repairing a torn tail while it opens the store) is waited for, briefly, by others.
   */
  static acquire(file: string, what: string, transient = false): LockFile {
    const lock = new LockFile(file);
    for (let attempt = 0; attempt < 200; attempt++) {
      try {
        const fd = fs.openSync(file, 'wx', 0o644);
        try {
          fs.writeSync(fd, `${process.pid}${transient ? ' opening' : ''}\n`);
        } finally {
          fs.closeSync(fd);
        }
        lock.held = true;
        return lock;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') throw ioError(err, `cannot create lock file ${file}`);
      }
      const owner = LockFile.owner(file);
      if (owner !== null && owner !== process.pid && processAlive(owner) && !transient && LockFile.isTransient(file)) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10); // a reader opening the store: it lets go in a moment
        continue;
      }
      if (owner === null && attempt < 20) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // being written by its new owner
        continue;
      }
      if (owner !== null && owner !== process.pid && processAlive(owner)) {
        throw new DrError('DR_LOCKED', `${what} is locked by process ${owner} (${file})`, { pid: owner });
      }
      if (owner === process.pid) {
        throw new DrError('DR_LOCKED', `${what} is already locked by this process (${file})`, { pid: owner });
      }
      // stale: its owner died without releasing it
      try {
        const stale = `${file}.stale.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
        fs.renameSync(file, stale);
        const again = LockFile.ownerOf(fs.readFileSync(stale, 'utf8'));
        if (again !== null && again !== owner && processAlive(again)) {
          // somebody else took it over between our read and the rename: put it back
          try { fs.linkSync(stale, file); } catch { /* they will see it is gone */ }
          fs.unlinkSync(stale);
          throw new DrError('DR_LOCKED', `${what} is locked by process ${again} (${file})`, { pid: again });
        }
        fs.unlinkSync(stale);
      } catch (err) {
        if (err instanceof DrError) throw err;
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, `cannot take over stale lock ${file}`);
      }
    }
    throw new DrError('DR_LOCKED', `${what} is locked (${file}): could not take the lock`);
  }

  static isTransient(file: string): boolean {
    try {
      return fs.readFileSync(file, 'utf8').includes('opening');
    } catch {
      return false;
    }
  }

  /** Take the lock if free; null when another live process holds it. */
  static tryAcquire(file: string, what: string, transient = false): LockFile | null {
    try {
      return LockFile.acquire(file, what, transient);
    } catch (err) {
      if (err instanceof DrError && err.code === 'DR_LOCKED') return null;
      throw err;
    }
  }

  static ownerOf(text: string): number | null {
    const pid = Number.parseInt(text.trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** pid written in the lock file, or null when there is none. */
  static owner(file: string): number | null {
    try {
      return LockFile.ownerOf(fs.readFileSync(file, 'utf8'));
    } catch {
      return null;
    }
  }

  /** pid of a live owner, or null. */
  static liveOwner(file: string): number | null {
    const pid = LockFile.owner(file);
    return pid !== null && processAlive(pid) ? pid : null;
  }

  get isHeld(): boolean {
    return this.held;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    try {
      if (LockFile.owner(this.file) === process.pid) fs.unlinkSync(this.file);
    } catch {
      /* gone already */
    }
  }
}

export interface LeaseBody {
  pid: number;
  seq: number;
  /** file names relative to the store directory */
  files: string[];
}

/** A read lease: the files a PointInTimeReader has open. */
export class Lease {
  private constructor(readonly file: string) {}

  static take(dir: string, body: Omit<LeaseBody, 'pid'>): Lease {
    const leases = path.join(dir, 'leases');
    try {
      fs.mkdirSync(leases, { recursive: true, mode: 0o755 });
      const file = path.join(leases, `${process.pid}-${crypto.randomBytes(6).toString('hex')}.json`);
      fs.writeFileSync(file, JSON.stringify({ pid: process.pid, ...body }), { mode: 0o644 });
      return new Lease(file);
    } catch (err) {
      throw ioError(err, `cannot write read lease in ${leases}`);
    }
  }

  /** A lease that writes nothing (read-only stores): the open file descriptors still keep the data readable. */
  static none(): Lease {
    return new Lease('');
  }

  release(): void {
    if (!this.file) return;
    try {
      fs.unlinkSync(this.file);
    } catch {
      /* gone already */
    }
  }

  /** Files named by live leases; stale leases (dead owners) are removed when `clean`. */
  static heldFiles(dir: string, clean: boolean): Set<string> {
    const held = new Set<string>();
    const leases = path.join(dir, 'leases');
    let names: string[];
    try {
      names = fs.readdirSync(leases);
    } catch {
      return held;
    }
    let removed = false;
    for (const name of names) {
      const file = path.join(leases, name);
      let body: LeaseBody;
      try {
        body = JSON.parse(fs.readFileSync(file, 'utf8')) as LeaseBody;
      } catch {
        continue; // being written
      }
      if (!processAlive(body.pid)) {
        if (clean) {
          try { fs.unlinkSync(file); removed = true; } catch { /* raced */ }
        }
        continue;
      }
      for (const f of body.files) held.add(f);
    }
    if (removed) try { fsyncDir(leases); } catch { /* best effort */ }
    return held;
  }
}
