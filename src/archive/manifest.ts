/**
 * The archive manifest: PREFIX/manifest.json, the one object that says what an archived
 * journal store holds. It is written last, in one PUT, after every object it names has
 * been uploaded and checked, so a reader never sees a half-archived state; objects it does
 * not name (an upload in progress, a superseded tail) are ignored. docs/ARCHIVE.md has
 * the layout.
 */
import { DrError } from '../errors.js';
import type { VolumeMeta } from '../store/state.js';
import type { MarkInfo } from '../store/segment.js';

export const MANIFEST = 'manifest.json';
export const ARCHIVE_FORMAT = 'drkit-journal-archive';

/** One archived object: key relative to the prefix, size, SHA-256 of the bytes and of its sums object. */
export interface ArchivedObject { key: string; size: number; sha256: string; sums: string }

export interface ArchivedSegment {
  firstSeq: number;
  lastSeq: number;
  firstTime: number;
  lastTime: number;
  records: number;
  /** false for the tail: the durable prefix of the store's open segment (no END yet) */
  sealed: boolean;
  data: ArchivedObject;
  /** the index file (sealed segments) */
  index: ArchivedObject | null;
  marks: MarkInfo[];
}

export interface ArchivedBase {
  volume: number;
  /** the region bitmap of the base image (1 bit per 1 MiB region, base64) */
  map: string;
  /** the regions whose bit is set, packed in order (the last region of a volume may be short) */
  data: ArchivedObject;
}

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: 1;
  groupId: string;
  /** microseconds: first archived, this manifest written */
  created: number;
  updated: number;
  source: { host: string; dir: string };
  segmentSize: number;
  volumes: VolumeMeta[];
  /** the archive's own window: it starts at the base it holds and can be far longer than the local one */
  window: { firstSeq: number; baseGen: number; baseTime: number; foldedRecords: number; foldedMarks: MarkInfo[] };
  base: ArchivedBase[];
  /** sealed segments, oldest first, then at most one tail */
  segments: ArchivedSegment[];
  lastSeq: number;
  lastTime: number;
}

export function parseManifest(body: Buffer, where: string): ArchiveManifest {
  let m: ArchiveManifest;
  try {
    m = JSON.parse(body.toString('utf8')) as ArchiveManifest;
  } catch {
    throw new DrError('DR_STORE_CORRUPT', `${where} is not valid JSON`);
  }
  if (m.format !== ARCHIVE_FORMAT || m.version !== 1 || !Array.isArray(m.segments) || !Array.isArray(m.volumes)) {
    throw new DrError('DR_STORE_CORRUPT', `${where} is not a drkit journal archive manifest (format ${String(m.format)} version ${String(m.version)})`);
  }
  return m;
}

/** Every object key a manifest refers to (with the sums objects). */
export function manifestKeys(m: ArchiveManifest): Set<string> {
  const keys = new Set<string>();
  const add = (o: ArchivedObject | null): void => {
    if (!o) return;
    keys.add(o.key);
    keys.add(`${o.key}.sums`);
  };
  for (const b of m.base) add(b.data);
  for (const s of m.segments) {
    add(s.data);
    add(s.index);
  }
  return keys;
}

/** The last sealed archived seq (where the next sealed segment must start, minus one). */
export function sealedThrough(m: ArchiveManifest): number {
  let end = m.window.firstSeq - 1;
  for (const s of m.segments) if (s.sealed) end = s.lastSeq;
  return end;
}
