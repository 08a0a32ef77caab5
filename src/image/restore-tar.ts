/**
 * The whole consistency group at one point as one tar: an entry per volume (named
 * after the volume, its bytes as of the point) and, last, manifest.json naming the
 * point, seq, time and the SHA-256 of every volume (computed while the entries are
 * written, so the manifest comes after them).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import tar from 'tar-stream';
import { DrError } from '../errors.js';
import { checkVolumeName, idToString, type VolumeRecord } from '../format/layout.js';
import { formatMicros } from '../cli/units.js';
import type { PointInTimeReader } from '../store/index.js';
import { restoreToStream, type RestoreOptions } from './restore-file.js';
import type { RestorePoint } from './restore-point.js';

export const MANIFEST_ENTRY = 'manifest.json';

export interface RestoreManifest {
  format: 'drkit-restore-manifest';
  version: 1;
  group: string | null;
  point: string;
  seq: number;
  /** microseconds since the epoch */
  time: number;
  timeIso: string;
  consistent: { movedFrom: number; kind: 'flush' | 'mark'; mark?: string; markKind?: string } | null;
  volumes: Array<{ name: string; entry: string; index: number; id: string; size: number; blockSize: number; sha256: string }>;
}

/** A tar entry name for a volume: the volume name, refused if it could escape the extraction directory. */
export function entryName(v: VolumeRecord): string {
  checkVolumeName(v.name);
  if (v.name.includes('/') || v.name.includes('..') || v.name.includes('\\') || v.name === MANIFEST_ENTRY) {
    throw new DrError('DR_BAD_RECORD', `volume name ${JSON.stringify(v.name)} cannot be a tar entry name`);
  }
  return v.name;
}

export async function writeGroupTar(
  reader: PointInTimeReader, volumes: VolumeRecord[], point: RestorePoint, group: Buffer | null, out: Writable,
  opts: RestoreOptions,
): Promise<RestoreManifest> {
  const names = volumes.map(entryName); // refuse before writing anything
  const pack = tar.pack();
  const mtime = new Date(Math.floor(point.time / 1000));
  // copy the tar to `out` with back-pressure (out is not ended: it may be standard output)
  const piped = new Promise<void>((resolve, reject) => {
    pack.on('error', reject);
    out.on('error', reject);
    pack.on('data', (data: unknown) => {
      const chunk = data as Buffer;
      if (!out.write(chunk)) {
        pack.pause();
        out.once('drain', () => pack.resume());
      }
    });
    pack.on('end', resolve);
  });
  piped.catch(() => undefined);
  const manifest: RestoreManifest = {
    format: 'drkit-restore-manifest',
    version: 1,
    group: group ? idToString(group) : null,
    point: point.point,
    seq: point.seq,
    time: point.time,
    timeIso: formatMicros(point.time),
    consistent: point.consistentAt && point.movedFrom !== undefined
      ? {
        movedFrom: point.movedFrom,
        kind: point.consistentAt.kind,
        ...(point.consistentAt.kind === 'mark' ? { mark: point.consistentAt.name, markKind: point.consistentAt.markKind } : {}),
      }
      : null,
    volumes: [],
  };
  let before = 0;
  for (let i = 0; i < volumes.length; i++) {
    const v = volumes[i]!;
    const hash = createHash('sha256');
    const finished = new Promise<void>((resolve, reject) => {
      const entry = pack.entry({ name: names[i]!, size: v.size, mode: 0o644, mtime, type: 'file' }, (err) => (err ? reject(err) : resolve()));
      const done = restoreToStream(reader, v, entry as unknown as Writable, { ...opts, onProgress: (n) => opts.onProgress?.(before + n) }, hash)
        .then(() => {
          (entry as unknown as Writable).end();
        });
      done.catch((err) => {
        entry.on('error', () => undefined); // the error is this promise's: without a listener, destroy(err) would end the process
        entry.destroy(err);
        reject(err);
      });
    });
    await Promise.race([finished, piped]);
    before += v.size;
    manifest.volumes.push({
      name: v.name, entry: names[i]!, index: v.index, id: idToString(v.id), size: v.size, blockSize: v.blockSize,
      sha256: hash.digest('hex'),
    });
  }
  const json = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  pack.entry({ name: MANIFEST_ENTRY, size: json.length, mode: 0o644, mtime }, json);
  pack.finalize();
  await piped;
  // the tar is complete in `out`'s buffer: wait until it is flushed
  if (out.writableNeedDrain) await once(out, 'drain');
  return manifest;
}
