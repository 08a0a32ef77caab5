/**
 * `dr-tap nbd --state FILE`: what a tap writing its stream to standard output
 * keeps between runs so the next run continues the same journal: the group id,
 * the next seq, and each volume's id, size, block size and whether its baseline
 * was recorded. Replaced atomically (write, fsync, rename).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DrError, fromSystemError } from '../errors.js';
import { idFromString, idToString } from '../format/layout.js';

export interface TapStateVolume {
  name: string;
  id: Buffer;
  size: number;
  blockSize: number;
  baselined: boolean;
}
export interface TapState {
  groupId: Buffer;
  nextSeq: number;
  /** false while a run is going on: a crash leaves it false */
  clean: boolean;
  volumes: TapStateVolume[];
}

const KIND = 'drkit-tap-state';

export function readTapState(file: string): TapState | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, `cannot read state file ${file}`);
  }
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    if (j.format !== KIND || j.version !== 1) throw new Error('not a dr-tap state file');
    const vols = j.volumes as Array<Record<string, unknown>>;
    const nextSeq = Number(j.nextSeq);
    if (!Number.isSafeInteger(nextSeq) || nextSeq < 1 || !Array.isArray(vols)) throw new Error('bad nextSeq or volumes');
    return {
      groupId: idFromString(String(j.group)),
      nextSeq,
      clean: j.clean === true,
      volumes: vols.map((v) => ({
        name: String(v.name), id: idFromString(String(v.id)), size: Number(v.size), blockSize: Number(v.blockSize), baselined: v.baselined === true,
      })),
    };
  } catch (err) {
    throw new DrError('DR_BAD_MANIFEST', `state file ${file} is damaged: ${(err as Error).message}`);
  }
}

export function writeTapState(file: string, s: TapState, durable = true): void {
  const body = JSON.stringify({
    format: KIND,
    version: 1,
    group: idToString(s.groupId),
    nextSeq: s.nextSeq,
    clean: s.clean,
    volumes: s.volumes.map((v) => ({ name: v.name, id: idToString(v.id), size: v.size, blockSize: v.blockSize, baselined: v.baselined })),
  }, null, 1) + '\n';
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp${process.pid}`);
  try {
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeFileSync(fd, body);
      if (durable) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    throw fromSystemError(err, `cannot write state file ${file}`);
  }
}
