/**
 * `--backing-sync checkpoint` (the default with --journal): the journal is the
 * write-ahead log. A FLUSH makes the journal durable; the backing stores are synced
 * at checkpoints (every --checkpoint-every, and when the tap stops). The file
 * DIR/tap-backing.json records, per volume, the last seq whose change is known to be
 * on the backing store's stable storage. After a crash, the next `dr-tap nbd` run
 * applies the journal's records after that seq to the backing store before it
 * serves it, so what a client was told is stable is there again.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DrError, fromSystemError } from '../errors.js';
import type { Logger } from '../cli/log.js';
import type { JournalStore } from '../store/index.js';
import { writevAllSync } from '../store/files.js';
import type { BackingVolume } from './tap.js';

export const CHECKPOINT_FILE = 'tap-backing.json';

export interface BackingCheckpoint {
  /** volume name -> { id (hex), seq: last seq on stable storage in the backing store } */
  volumes: Record<string, { id: string; seq: number; path: string }>;
}

export function readBackingCheckpoint(dir: string): BackingCheckpoint {
  const file = path.join(dir, CHECKPOINT_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { volumes: {} };
    throw fromSystemError(err, `cannot read ${file}`);
  }
  try {
    const j = JSON.parse(text) as BackingCheckpoint;
    if (typeof j.volumes !== 'object' || j.volumes === null) throw new Error('no volumes');
    return j;
  } catch (err) {
    throw new DrError('DR_STORE_CORRUPT', `${file} is damaged (${(err as Error).message}): if the last run stopped cleanly, remove it`);
  }
}

export function writeBackingCheckpoint(dir: string, ck: BackingCheckpoint): void {
  const file = path.join(dir, CHECKPOINT_FILE);
  const tmp = `${file}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeFileSync(fd, JSON.stringify(ck, null, 1) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    throw fromSystemError(err, `cannot write ${file}`);
  }
}

/**
 * Apply the journal's records after each volume's checkpoint to its backing store
 * (a crash left it behind the journal), then sync it. Returns records applied.
 */
export async function recoverBacking(store: JournalStore, volumes: BackingVolume[], ck: BackingCheckpoint, log: Logger): Promise<number> {
  let applied = 0;
  for (const v of volumes) {
    const c = ck.volumes[v.name];
    if (!c || c.id !== v.id.toString('hex')) continue;
    if (c.seq >= store.lastSeq) continue;
    const fromSeq = c.seq + 1;
    if (fromSeq < store.firstSeq) {
      throw new DrError('DR_OUTSIDE_WINDOW', `backing store ${v.path} of ${v.name} needs the journal's records from seq ${fromSeq}, but the journal starts at seq ${store.firstSeq}: restore the volume with dr-restore`);
    }
    log.warn(`${v.name}: the last run did not stop cleanly; applying seq ${fromSeq}..${store.lastSeq} of the journal to ${v.path}`);
    let n = 0;
    for await (const r of store.records({ fromSeq })) {
      if ((r.type === 'write' || r.type === 'zero') && r.volume === v.index) {
        if (r.type === 'write') writevAllSync(v.fd, [r.data], r.offset);
        else {
          const z = Buffer.alloc(Math.min(r.length, 1 << 20));
          for (let off = r.offset; off < r.offset + r.length; off += z.length) {
            writevAllSync(v.fd, [z.subarray(0, Math.min(z.length, r.offset + r.length - off))], off);
          }
        }
        n++;
      }
    }
    fs.fdatasyncSync(v.fd);
    applied += n;
    log.info(`${v.name}: ${n} records applied to ${v.path}`);
  }
  return applied;
}
