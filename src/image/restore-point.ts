/**
 * Restore points of a journal store: resolving what the user named with --at
 * (moving back to the nearest FLUSH or MARK with --consistent), choosing volumes
 * by name, and the list of every point a restore can use (dr-restore --list).
 */
import { DrError } from '../errors.js';
import type { MarkKind, VolumeRecord } from '../format/layout.js';
import { idToString } from '../format/layout.js';
import type { JournalStore } from '../store/index.js';

export interface RestorePoint {
  /** the point as the user wrote it (names the NBD export) */
  point: string;
  seq: number;
  /** microseconds since the epoch (0 for an empty base) */
  time: number;
  /** set by --consistent: the seq the point resolved to before moving back, and what it moved to */
  movedFrom?: number;
  consistentAt?: { kind: 'flush' } | { kind: 'mark'; name: string; markKind: MarkKind };
}

/** The window of a store in words, for error messages. */
export function describeWindow(store: JournalStore): string {
  const s = store as unknown as { describeWindow?: () => string };
  if (typeof s.describeWindow === 'function') return s.describeWindow();
  if (store.lastSeq < store.firstSeq) return `the store holds no records (window starts at seq ${store.firstSeq})`;
  return `the window is seq ${store.firstSeq}..${store.lastSeq}`;
}

/** Resolve `--at POINT` (and `--consistent`) against the store. Throws DR_BAD_POINT / DR_OUTSIDE_WINDOW. */
export function resolveRestorePoint(store: JournalStore, point: string, consistent: boolean): RestorePoint {
  const at = store.resolvePoint(point);
  const out: RestorePoint = { point, seq: at.seq, time: at.time };
  if (!consistent) return out;
  let best: { seq: number; time: number; via: NonNullable<RestorePoint['consistentAt']> } | null = null;
  for (const f of store.flushPoints()) {
    if (f.seq <= at.seq && (!best || f.seq > best.seq)) best = { seq: f.seq, time: f.time, via: { kind: 'flush' } };
  }
  for (const m of store.marks()) {
    // a MARK at the same seq as a FLUSH cannot happen (one record per seq); prefer the later one
    if (m.seq <= at.seq && (!best || m.seq > best.seq)) best = { seq: m.seq, time: m.time, via: { kind: 'mark', name: m.name, markKind: m.kind } };
  }
  if (!best) {
    throw new DrError('DR_OUTSIDE_WINDOW', `no FLUSH or MARK at or before seq ${at.seq} (point ${point}) to move back to with --consistent: ${describeWindow(store)}`);
  }
  return { point, seq: best.seq, time: best.time, movedFrom: at.seq, consistentAt: best.via };
}

/** The volumes to restore: the one named, or every volume of the group. */
export function selectVolumes(store: JournalStore, name: string | undefined): VolumeRecord[] {
  if (store.volumes.length === 0) throw new DrError('DR_BAD_POINT', `the store ${store.dir} declares no volume yet: nothing to restore`);
  if (name === undefined) return store.volumes;
  const v = store.volumes.find((x) => x.name === name);
  if (!v) {
    throw new DrError('DR_USAGE', `no volume named ${JSON.stringify(name)} in ${store.dir} (volumes: ${store.volumes.map((x) => x.name).join(', ')})`);
  }
  return [v];
}

/** The one volume a single-file restore writes: --volume, or the only volume of the group. */
export function selectOneVolume(store: JournalStore, name: string | undefined): VolumeRecord {
  const vols = selectVolumes(store, name);
  if (vols.length > 1) {
    throw new DrError('DR_USAGE', `the group has ${vols.length} volumes (${vols.map((v) => v.name).join(', ')}): name one with --volume, or use --tar for all of them`);
  }
  return vols[0]!;
}

/** What `dr-restore --list` reports. Every point of the window is crash-consistent; app marks are app-consistent. */
export interface RestorePointList {
  store: string;
  group: string | null;
  volumes: Array<{ index: number; name: string; size: number; blockSize: number; id: string }>;
  window: {
    firstSeq: number;
    lastSeq: number;
    firstTime: number | null;
    lastTime: number | null;
    /** the point just before the window (everything older is folded into the base images), restorable as seq:N */
    baseSeq: number;
    records: number;
  };
  marks: Array<{ seq: number; time: number; name: string; kind: MarkKind; id: string; consistency: 'app' | 'crash'; point: string }>;
  flushPoints: { count: number; shown: Array<{ seq: number; time: number; consistency: 'crash'; point: string }> };
}

export function listRestorePoints(store: JournalStore, flushLimit: number): RestorePointList {
  const empty = store.lastSeq < store.firstSeq;
  const firstTime = empty ? null : store.resolvePoint(`seq:${store.firstSeq}`).time;
  const flushes = store.flushPoints();
  const marks = store.marks();
  const shown = flushLimit > 0 ? flushes.slice(Math.max(0, flushes.length - flushLimit)) : flushes;
  return {
    store: store.dir,
    group: store.groupId ? idToString(store.groupId) : null,
    volumes: store.volumes.map((v) => ({ index: v.index, name: v.name, size: v.size, blockSize: v.blockSize, id: idToString(v.id) })),
    window: {
      firstSeq: store.firstSeq,
      lastSeq: store.lastSeq,
      firstTime,
      lastTime: empty ? null : store.lastTime,
      baseSeq: store.firstSeq - 1,
      records: empty ? 0 : store.lastSeq - store.firstSeq + 1,
    },
    marks: marks.map((m, i) => ({
      seq: m.seq, time: m.time, name: m.name, kind: m.kind, id: idToString(m.id),
      consistency: m.kind === 'app' ? 'app' as const : 'crash' as const,
      // mark:NAME names the newest mark of that name; an older one is reached by its seq
      point: marks.slice(i + 1).some((x) => x.name === m.name) ? `seq:${m.seq}` : `mark:${m.name}`,
    })),
    flushPoints: { count: flushes.length, shown: shown.map((f) => ({ seq: f.seq, time: f.time, consistency: 'crash' as const, point: `seq:${f.seq}` })) },
  };
}
