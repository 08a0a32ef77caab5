/**
 * Instant restore: restore points served as NBD exports. Each export answers
 * reads on demand from a point-in-time reader (nothing is copied first); with
 * --writable the client's writes go to a copy-on-write overlay file per export,
 * and neither the store nor its base images are ever written.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DrError } from '../errors.js';
import type { Logger } from '../cli/log.js';
import { formatBytes, formatMicros } from '../cli/units.js';
import { idToString, type VolumeRecord } from '../format/layout.js';
import { NbdServer, type NbdExport } from '../nbd/server.js';
import type { JournalStore, PointInTimeReader } from '../store/index.js';
import { CowOverlay } from './overlay.js';
import type { RestorePoint } from './restore-point.js';

export interface ServeOptions {
  socket?: string;
  port?: number;
  host: string;
  writable: boolean;
  /** where overlay files are kept (kept after the server stops); default a temporary directory removed at the end */
  overlayDir?: string;
  log: Logger;
  signal: AbortSignal;
  /** called once every export is being served */
  onReady(info: ServeInfo): void;
}

export interface ServedExport {
  name: string;
  uri: string;
  point: string;
  seq: number;
  time: number;
  volume: string;
  size: number;
  writable: boolean;
  overlay?: string;
}

export interface ServeInfo {
  socket?: string;
  host?: string;
  port?: number;
  exports: ServedExport[];
}

/** The export name for a point and volume: the point itself, or POINT/VOLUME when a point serves several volumes. */
export function exportName(point: string, volume: VolumeRecord, several: boolean): string {
  return several ? `${point}/${volume.name}` : point;
}

/** An NBD URI (nbd+unix:///NAME?socket=PATH or nbd://HOST:PORT/NAME) for an export. */
export function nbdUri(name: string, where: { socket?: string; host?: string; port?: number }): string {
  const enc = encodeURIComponent(name).replace(/%3A/gi, ':').replace(/%2F/gi, '/').replace(/%40/g, '@');
  if (where.socket !== undefined) return `nbd+unix:///${enc}?socket=${encodeURI(path.resolve(where.socket))}`;
  const host = where.host!.includes(':') ? `[${where.host}]` : where.host;
  return `nbd://${host}:${where.port}/${enc}`;
}

/** Serve until the signal aborts; then stop cleanly: requests in flight finish, overlays are flushed, leases released. */
export async function serveRestorePoints(
  store: JournalStore, points: RestorePoint[], volumes: VolumeRecord[], opts: ServeOptions,
): Promise<ServeInfo> {
  const several = volumes.length > 1;
  const names = new Set<string>();
  for (const p of points) {
    for (const v of volumes) {
      const n = exportName(p.point, v, several);
      if (names.has(n)) throw new DrError('DR_USAGE', `--at ${p.point} is given twice`);
      if (Buffer.byteLength(n) > 4096) throw new DrError('DR_USAGE', `export name ${n.slice(0, 40)}... is longer than NBD allows (4096 bytes)`);
      names.add(n);
    }
  }
  const readers: PointInTimeReader[] = [];
  const overlays: CowOverlay[] = [];
  let overlayDir = opts.overlayDir;
  let tempOverlayDir: string | null = null;
  let server: NbdServer | null = null;
  let listeningOn: string | null = null;
  const exports: NbdExport[] = [];
  const served: ServedExport[] = [];
  try {
    if (opts.writable) {
      if (overlayDir === undefined) overlayDir = tempOverlayDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dr-restore-overlay-'));
      else await fsp.mkdir(overlayDir, { recursive: true });
    }
    for (const p of points) {
      const reader = await store.pointInTime(p.seq);
      readers.push(reader);
      for (const v of volumes) {
        const name = exportName(p.point, v, several);
        const base = (offset: number, length: number) => reader.read(v.index, offset, length);
        const description = `${v.name} at ${p.point} (seq ${reader.seq}, ${formatMicros(reader.time)})`;
        const common = { name, description, size: v.size, minBlock: 1, preferredBlock: Math.max(4096, v.blockSize), maxBlock: 32 * 1024 * 1024 };
        let overlayFile: string | undefined;
        if (opts.writable) {
          overlayFile = path.join(overlayDir!, `${safeFileName(name)}.overlay`);
          const ov = await CowOverlay.open({
            file: overlayFile,
            size: v.size,
            blockSize: Math.max(4096, v.blockSize),
            base,
            identity: {
              group: store.groupId ? idToString(store.groupId) : '', volume: idToString(v.id), volumeName: v.name, seq: reader.seq,
            },
          });
          overlays.push(ov);
          if (ov.count > 0) opts.log.info(`continuing overlay ${overlayFile} (${formatBytes(ov.count * ov.blockSize)} written before)`);
          exports.push({
            ...common,
            readOnly: false,
            read: (o, l) => ov.read(o, l),
            write: (o, data, fua) => ov.write(o, data, fua),
            flush: () => ov.flush(),
            trim: (o, l, fua) => ov.zero(o, l, fua),
            zero: (o, l, _noHole, fua) => ov.zero(o, l, fua),
          });
        } else {
          exports.push({ ...common, readOnly: true, read: base });
        }
        served.push({
          name, uri: '', point: p.point, seq: reader.seq, time: reader.time, volume: v.name, size: v.size, writable: opts.writable,
          ...(overlayFile ? { overlay: overlayFile } : {}),
        });
      }
    }
    server = new NbdServer({ exports, log: opts.log, multiConn: true });
    const info: ServeInfo = { exports: served };
    if (opts.socket !== undefined) {
      await server.listenUnix(opts.socket);
      listeningOn = opts.socket;
      info.socket = path.resolve(opts.socket);
    } else {
      info.host = opts.host;
      info.port = await server.listenTcp(opts.port ?? 10809, opts.host);
    }
    for (const e of served) e.uri = nbdUri(e.name, info);
    opts.onReady(info);
    if (!opts.signal.aborted) await new Promise<void>((resolve) => opts.signal.addEventListener('abort', () => resolve(), { once: true }));
    opts.log.debug('stopping: finishing requests in flight');
    return info;
  } finally {
    const failures: unknown[] = [];
    if (server) await server.close().catch((e: unknown) => failures.push(e));
    if (listeningOn !== null) await fsp.rm(listeningOn, { force: true }).catch(() => undefined);
    for (const ov of overlays) await ov.close().catch((e: unknown) => failures.push(e));
    for (const r of readers) await r.release().catch((e: unknown) => failures.push(e));
    if (tempOverlayDir) await fsp.rm(tempOverlayDir, { recursive: true, force: true }).catch(() => undefined);
    if (failures.length > 0) opts.log.warn(`while stopping: ${failures.map((e) => (e as Error).message ?? String(e)).join('; ')}`);
  }
}

/** An export name as a file name: anything outside A-Z a-z 0-9 . _ - becomes _ (plus a short hash when changed). */
function safeFileName(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[.-]/, '_').slice(0, 100);
  if (safe === name) return safe;
  let h = 0;
  for (const c of Buffer.from(name, 'utf8')) h = (Math.imul(h, 31) + c) >>> 0;
  return `${safe}-${h.toString(16).padStart(8, '0')}`;
}
