/**
 * dr-journal archive: copy a journal store to an S3 bucket so that any point of its window
 * can be rebuilt from the bucket alone.
 *
 * One pass uploads, in this order: the base images the archive needs (only when it starts,
 * or when local segments were pruned before they could be archived), every sealed segment
 * (and its index) not archived yet, the durable prefix of the open segment as a "tail"
 * object, and last the manifest naming all of them. Objects already in the bucket with the
 * same SHA-256 are skipped, so a pass is idempotent, and an interrupted pass resumes (see
 * objects.ts for multipart resume). Sealed segments stay in the archive after the local
 * store prunes them: the archive's window only grows.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DrError } from '../errors.js';
import type { Logger } from '../cli/log.js';
import { JournalStore } from '../store/index.js';
import type { SegmentEntry } from '../store/store.js';
import { baseFiles, readBaseMap, regionCount, regionSet, REGION } from '../store/base.js';
import { writeFileDurable } from '../store/files.js';
import { ARCHIVED_STATE, confirmedArchive, type ArchivedState } from '../store/archived.js';
import { ObjectStore, digestSource, fileSource, type Digest, type Source, type S3Options } from './objects.js';
import {
  ARCHIVE_FORMAT, MANIFEST, manifestKeys, parseManifest, sealedThrough,
  type ArchiveManifest, type ArchivedBase, type ArchivedObject, type ArchivedSegment,
} from './manifest.js';
import { formatArchiveUrl, keyOf, type ArchiveUrl } from './url.js';

export { ARCHIVED_STATE, type ArchivedState } from '../store/archived.js';

export interface ArchiveOptions {
  s3?: S3Options;
  log: Logger;
  signal?: AbortSignal;
  /** upload the durable prefix of the open segment too (default true) */
  tail?: boolean;
  /** check the archived objects of the segments still stored locally, uploading again any that differ */
  verify?: boolean;
  onBytes?: (n: number) => void;
  /** test hook: called after each object is uploaded */
  onObject?: (key: string) => void;
}

export interface PassResult {
  uploadedObjects: number;
  uploadedBytes: number;
  skippedObjects: number;
  sealedThrough: number;
  lastSeq: number;
  segments: number;
  manifestWritten: boolean;
  rebased: boolean;
}

const now = (): number => Date.now() * 1000;

export class Archiver {
  readonly objects: ObjectStore;
  private manifest: ArchiveManifest | null = null;
  private loaded = false;

  constructor(readonly dir: string, readonly url: ArchiveUrl, readonly opts: ArchiveOptions) {
    this.objects = new ObjectStore(url.bucket, opts.s3);
  }

  close(): void {
    this.objects.destroy();
  }

  private key(name: string): string {
    return keyOf(this.url, name);
  }

  async loadManifest(): Promise<ArchiveManifest | null> {
    const body = await this.objects.getBufferIfExists(this.key(MANIFEST));
    return body ? parseManifest(body, formatArchiveUrl(this.url) + '/' + MANIFEST) : null;
  }

  /** One archive pass over the store as it is now. */
  async pass(): Promise<PassResult> {
    const { log, signal } = this.opts;
    // digests of the next sealed segment, computed while the current one uploads (and the
    // first one while the bucket and manifest are read)
    const ahead = new Map<string, Promise<Digest>>();
    const digestAhead = (file: string): void => {
      if (ahead.has(file)) return;
      const p = fileSource(file).then(async (src) => {
        try {
          return await digestSource(src, this.objects.partSize, { signal });
        } finally {
          await src.close();
        }
      });
      p.catch(() => undefined); // a file pruned meanwhile: digested again (and failing properly) when its turn comes
      ahead.set(file, p);
    };
    const store = await JournalStore.open(this.dir, { readOnly: true, log });
    const known = this.manifest ? sealedThrough(this.manifest) : 0;
    const firstTodo = store.segments.find((s) => s.summary.sealed && s.summary.records > 0 && s.summary.lastSeq > known);
    if (firstTodo) digestAhead(firstTodo.data);
    if (!this.loaded) {
      try {
        await this.objects.ensureBucket();
        this.manifest = await this.loadManifest();
      } catch (err) {
        await store.close();
        throw err;
      }
      this.loaded = true;
    }
    const result: PassResult = {
      uploadedObjects: 0, uploadedBytes: 0, skippedObjects: 0, sealedThrough: 0, lastSeq: 0, segments: 0, manifestWritten: false, rebased: false,
    };
    try {
      if (!store.groupId) {
        log.info(`${store.dir} holds no records yet: nothing to archive`);
        return result;
      }
      const groupId = store.groupId.toString('hex');
      const old = this.manifest;
      if (old && old.groupId !== groupId) {
        throw new DrError('DR_GROUP_MISMATCH', `${formatArchiveUrl(this.url)} archives group ${old.groupId}, but ${store.dir} holds group ${groupId}`);
      }
      const through = old ? sealedThrough(old) : -1;
      const rebase = !old || through + 1 < store.firstSeq;
      if (old && rebase) {
        log.warn(`records ${through + 1}..${store.firstSeq - 1} were pruned from ${store.dir} before they were archived: the archive restarts at the store's window (seq ${store.firstSeq})`);
      }
      const win = store.window;
      const next: ArchiveManifest = rebase
        ? {
          format: ARCHIVE_FORMAT, version: 1, groupId, created: old?.created ?? now(), updated: 0,
          source: { host: os.hostname(), dir: store.dir }, segmentSize: store.segmentSize,
          volumes: store.meta.volumes,
          window: {
            firstSeq: store.firstSeq, baseGen: win?.baseGen ?? 0, baseTime: win?.baseTime ?? 0,
            foldedRecords: win?.foldedRecords ?? 0, foldedMarks: win?.foldedMarks ?? [],
          },
          base: [], segments: [], lastSeq: store.firstSeq - 1, lastTime: win?.baseTime ?? 0,
        }
        : { ...old!, volumes: store.meta.volumes, segmentSize: store.segmentSize, source: { host: os.hostname(), dir: store.dir }, segments: old!.segments.filter((s) => s.sealed) };
      result.rebased = rebase && old !== null;

      let verifying = false;
      const upload = async (name: string, src: Source, file?: string): Promise<ArchivedObject> => {
        try {
          const early = file !== undefined && !verifying ? ahead.get(file) : undefined;
          if (file !== undefined) ahead.delete(file);
          const t0 = Date.now();
          const digest = (early ? await early.catch(() => null) : null) ?? await digestSource(src, this.objects.partSize, { etag: verifying, signal });
          const t1 = Date.now();
          const key = this.key(name);
          const sent = await this.objects.putSource(key, src, digest, { signal, onBytes: this.opts.onBytes });
          const t2 = Date.now();
          if (sent > 0 || src.size === 0) result.uploadedObjects++;
          else result.skippedObjects++;
          result.uploadedBytes += sent;
          this.opts.onObject?.(key);
          log.debug(`${sent > 0 ? 'uploaded' : 'already archived'} ${name} (${src.size} bytes; checksums ${t1 - t0} ms, transfer ${t2 - t1} ms)`);
          return { key: name, size: src.size, sha256: digest.sha256, sums: sha256Hex(digest.sums) };
        } finally {
          await src.close();
        }
      };

      // base images, when the archive (re)starts from a pruned store
      if (rebase && next.window.baseGen > 0) {
        for (const v of store.volumes) {
          const files = baseFiles(store.dir, v.index, next.window.baseGen);
          if (!fs.existsSync(files.img)) continue; // a volume added after the prune: zeroes
          const map = readBaseMap(files.map, v.size) ?? new Uint8Array(Math.ceil(regionCount(v.size) / 8)).fill(0xff);
          const src = await packedBaseSource(files.img, v.size, map);
          const data = await upload(`base/${v.index}.${next.window.baseGen}.packed`, src);
          const entry: ArchivedBase = { volume: v.index, map: Buffer.from(map).toString('base64'), data };
          next.base.push(entry);
        }
      }

      // sealed segments not archived yet
      let end = sealedThrough(next);
      const sealed = store.segments.filter((s) => s.summary.sealed && s.summary.records > 0);
      for (const [i, s] of sealed.entries()) {
        if (signal?.aborted) throw new DrError('DR_INTERRUPTED', 'archive interrupted');
        if (!s.summary.sealed || s.summary.records === 0) continue;
        if (s.summary.lastSeq <= end) {
          if (this.opts.verify) {
            verifying = true;
            try {
              await this.verifySegment(s, next, upload);
            } finally {
              verifying = false;
            }
          }
          continue;
        }
        if (s.firstSeq !== end + 1) {
          throw new DrError('DR_CONFLICT', `segment ${path.basename(s.data)} (seq ${s.firstSeq}..${s.summary.lastSeq}) does not follow the archive, which holds records up to seq ${end}: was ${formatArchiveUrl(this.url)} written from another store of the group?`);
        }
        const following = sealed[i + 1];
        if (following) digestAhead(following.data);
        const seg = await this.archiveSegment(s, upload);
        if (!seg) break; // pruned under us: the next pass sees the new window
        next.segments.push(seg);
        end = s.summary.lastSeq;
        next.lastSeq = end;
        next.lastTime = s.summary.lastTime;
      }

      // the durable prefix of the open segment
      const open = store.segments[store.segments.length - 1];
      const prevTail = old?.segments.find((s) => !s.sealed) ?? null;
      if (this.opts.tail !== false && open && !open.summary.sealed && store.lastSeq > end && open.firstSeq === end + 1) {
        if (prevTail && prevTail.firstSeq === open.firstSeq && prevTail.lastSeq === store.lastSeq && !rebase) {
          next.segments.push(prevTail);
        } else {
          const tail = await this.archiveTail(store, open, upload);
          if (tail) next.segments.push(tail);
        }
        const t = next.segments[next.segments.length - 1]!;
        if (!t.sealed) {
          next.lastSeq = t.lastSeq;
          next.lastTime = t.lastTime;
        }
      }

      result.sealedThrough = end;
      result.lastSeq = next.lastSeq;
      result.segments = next.segments.length;
      const changed = !old || JSON.stringify({ ...old, updated: 0 }) !== JSON.stringify({ ...next, updated: 0 });
      if (changed) {
        next.updated = now();
        const body = Buffer.from(JSON.stringify(next, null, 1) + '\n');
        await this.objects.putBuffer(this.key(MANIFEST), body, undefined, signal);
        result.manifestWritten = true;
        // what the new manifest no longer names: superseded tails, or everything after a restart
        if (old) {
          const keep = manifestKeys(next);
          const drop = [...manifestKeys(old)].filter((k) => !keep.has(k)).map((k) => this.key(k));
          if (drop.length) await this.objects.deleteKeys(drop);
        }
      }
      this.manifest = next;
      this.recordLocally(store.dir, end, next.lastSeq);
      return result;
    } finally {
      await store.close();
    }
  }

  private async archiveSegment(s: SegmentEntry, upload: (name: string, src: Source, file?: string) => Promise<ArchivedObject>): Promise<ArchivedSegment | null> {
    let data: Source;
    let index: Source | null = null;
    try {
      data = await fileSource(s.data);
      if (fs.existsSync(s.index)) index = await fileSource(s.index).catch(() => null);
    } catch (err) {
      if (!fs.existsSync(s.data)) return null;
      throw err;
    }
    const name = path.basename(s.data);
    const indexUp = index ? upload(`segments/${path.basename(s.index)}`, index) : Promise.resolve(null);
    indexUp.catch(() => undefined);
    const dataObj = await upload(`segments/${name}`, data, s.data);
    const indexObj = await indexUp;
    const sum = s.summary;
    return {
      firstSeq: s.firstSeq, lastSeq: sum.lastSeq, firstTime: sum.firstTime, lastTime: sum.lastTime, records: sum.records,
      sealed: true, data: dataObj, index: indexObj, marks: sum.marks,
    };
  }

  /** An archived segment still stored locally: the same bytes must be in the bucket (re-sent if not). */
  private async verifySegment(s: SegmentEntry, m: ArchiveManifest, upload: (name: string, src: Source) => Promise<ArchivedObject>): Promise<void> {
    const entry = m.segments.find((a) => a.sealed && a.firstSeq === s.firstSeq);
    if (!entry) return; // archived before a restart of the archive window
    const again = await this.archiveSegment(s, upload);
    if (!again) return;
    if (again.data.sha256 !== entry.data.sha256 || again.data.size !== entry.data.size) {
      throw new DrError('DR_CONFLICT', `segment ${path.basename(s.data)} differs from its archived copy ${formatArchiveUrl(this.url)}/${entry.data.key} (SHA-256 ${again.data.sha256}, archived ${entry.data.sha256})`);
    }
  }

  private async archiveTail(store: JournalStore, open: SegmentEntry, upload: (name: string, src: Source) => Promise<ArchivedObject>): Promise<ArchivedSegment | null> {
    const lastSeq = store.lastSeq;
    // only what is durable: up to the start of the first record after lastSeq
    const endOffset = lastSeq < open.summary.lastSeq ? store.locate(lastSeq + 1).offset : open.summary.dataEnd;
    let src: Source;
    try {
      src = await fileSource(open.data, endOffset);
    } catch {
      return null; // sealed and renamed under us: the next pass archives it
    }
    const name = `tail/${String(open.firstSeq).padStart(20, '0')}-${String(lastSeq).padStart(20, '0')}.drj`;
    const data = await upload(name, src);
    return {
      firstSeq: open.firstSeq, lastSeq, firstTime: open.summary.firstTime, lastTime: store.lastTime,
      records: lastSeq - open.firstSeq + 1, sealed: false, data, index: null,
      marks: open.summary.marks.filter((m) => m.seq <= lastSeq),
    };
  }

  private recordLocally(dir: string, through: number, lastSeq: number): void {
    const state: ArchivedState = { url: formatArchiveUrl(this.url), sealedThrough: through, lastSeq, updated: now() };
    try {
      writeFileDurable(path.join(dir, ARCHIVED_STATE), JSON.stringify(state) + '\n');
    } catch (err) {
      this.opts.log.warn(`cannot record the archive state in ${dir}: ${(err as Error).message}`);
    }
  }
}

/** The last seq of `dir` confirmed archived in a sealed segment (null when never archived). */
export function confirmedArchivedSeq(dir: string): number | null {
  return confirmedArchive(dir)?.sealedThrough ?? null;
}

function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The regions of a sparse base image whose map bit is set, back to back. */
export async function packedBaseSource(img: string, size: number, map: Uint8Array): Promise<Source> {
  const regions: number[] = [];
  for (let r = 0; r < regionCount(size); r++) if (regionSet(map, r)) regions.push(r);
  const lenOf = (r: number): number => Math.min(REGION, size - r * REGION);
  const total = regions.reduce((n, r) => n + lenOf(r), 0);
  const file = await fileSource(img, size);
  return {
    size: total,
    async read(pos, length) {
      const parts: Buffer[] = [];
      let cur = pos;
      const end = pos + length;
      while (cur < end) {
        const i = Math.floor(cur / REGION);
        const r = regions[i]!;
        const within = cur - i * REGION;
        const n = Math.min(end - cur, lenOf(r) - within);
        parts.push(await file.read(r * REGION + within, n));
        cur += n;
      }
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    },
    close: () => file.close(),
  };
}
