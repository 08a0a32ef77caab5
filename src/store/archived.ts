/**
 * What the archive tier has confirmed: DIR/archived.json, written by `dr-journal archive`
 * (src/archive/archiver.ts) and read by prune, which never folds away a segment that is
 * not yet safely in the bucket once a store has an archive.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The file in a store directory recording what is confirmed archived. */
export const ARCHIVED_STATE = 'archived.json';

export interface ArchivedState {
  url: string;
  /** every record up to this seq is in a sealed archived segment named by a written manifest */
  sealedThrough: number;
  /** last seq in the archive (tail included) */
  lastSeq: number;
  /** microseconds */
  updated: number;
}

/** The archive's URL and the last seq confirmed archived in a sealed segment; null when never archived. */
export function confirmedArchive(dir: string): { url: string; sealedThrough: number } | null {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dir, ARCHIVED_STATE), 'utf8')) as ArchivedState;
    return Number.isSafeInteger(s.sealedThrough) ? { url: String(s.url), sealedThrough: s.sealedThrough } : null;
  } catch {
    return null;
  }
}
