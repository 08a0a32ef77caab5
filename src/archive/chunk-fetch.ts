/**
 * Fetching only the bytes a restore needs: the temp store's segment data files and base
 * images start as sparse placeholders of their full size; callers say which local byte
 * ranges they need (need()), and fetch() brings exactly the checksum chunks (1 MiB) covering
 * them with ranged GETs - runs of neighbouring chunks in one request, several requests in
 * flight - every chunk checked against the object's sums before fetch() resolves, written
 * into the placeholder at its place. Chunks already fetched are never asked for again.
 *
 * A segment data object maps 1:1 onto its file. A base image object holds only the 1 MiB
 * regions its map marks, packed in order, so packed chunk k is the k-th marked region.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DrError, fromSystemError } from '../errors.js';
import { REGION, regionCount, regionSet } from '../store/base.js';
import type { ArchivedObject } from './manifest.js';
import { SUM_CHUNK } from './limits.js';
import type { ObjectStore } from './objects.js';

// a packed base image chunk is exactly one region (the last one of a volume may be short)
if (REGION !== SUM_CHUNK) throw new Error('archive chunk size and base image region size differ');

/** chunks per ranged GET at most: long enough to stream, short enough to spread over the requests in flight */
const MAX_RUN = 16;

interface Target {
  key: string;
  object: ArchivedObject;
  file: string;
  fd: number;
  chunks: number;
  /** base images: file position of packed chunk k (the k-th set region); null = identity */
  regionOf: Int32Array | null;
  /** base images: packed chunk of region r, or -1 */
  packedOf: Int32Array | null;
  /** 1 = needed, 2 = fetched */
  state: Uint8Array;
}

export interface FetchStats {
  /** bytes received */
  bytes: number;
  /** ranged GETs made */
  requests: number;
}

export class ChunkFetcher {
  private readonly targets = new Map<string, Target>();
  readonly stats: FetchStats = { bytes: 0, requests: 0 };

  constructor(private readonly objects: ObjectStore, private readonly keyOf: (relKey: string) => string, private readonly where: string) {}

  /** A segment data object: the placeholder `file` (created, sparse, of the object's size). */
  addSegment(object: ArchivedObject, file: string): void {
    this.add(object, file, object.size, null);
  }

  /** A packed base image: the placeholder `file` is the unpacked image (sparse, `size` bytes). */
  addBase(object: ArchivedObject, file: string, size: number, map: Uint8Array): void {
    const regions: number[] = [];
    for (let r = 0; r < regionCount(size); r++) if (regionSet(map, r)) regions.push(r);
    const expected = regions.reduce((n, r) => n + Math.min(REGION, size - r * REGION), 0);
    if (expected !== object.size) {
      throw new DrError('DR_STORE_CORRUPT', `${this.where}/${object.key} has ${object.size} bytes, its region map says ${expected}`);
    }
    this.add(object, file, size, Int32Array.from(regions));
  }

  private add(object: ArchivedObject, file: string, fileSize: number, regionOf: Int32Array | null): void {
    let fd: number;
    try {
      fd = fs.openSync(file, 'w+');
      fs.ftruncateSync(fd, fileSize);
    } catch (err) {
      throw fromSystemError(err, `cannot create ${file}`);
    }
    let packedOf: Int32Array | null = null;
    if (regionOf) {
      packedOf = new Int32Array(regionCount(fileSize)).fill(-1);
      regionOf.forEach((r, k) => (packedOf![r] = k));
    }
    const chunks = Math.ceil(object.size / SUM_CHUNK);
    this.targets.set(path.resolve(file), { key: this.keyOf(object.key), object, file, fd, chunks, regionOf, packedOf, state: new Uint8Array(chunks) });
  }

  /** Local bytes [pos, pos+length) of `file` will be read (files that are no placeholder here were downloaded whole). */
  need(file: string, pos: number, length: number): void {
    const t = this.targets.get(path.resolve(file));
    if (!t || length <= 0) return;
    const c0 = Math.floor(pos / SUM_CHUNK);
    const c1 = Math.floor((pos + length - 1) / SUM_CHUNK);
    for (let c = c0; c <= c1; c++) {
      // a base image region the map does not mark reads as zeroes: nothing to fetch
      const k = t.packedOf ? (t.packedOf[c] ?? -1) : c;
      if (k < 0 || k >= t.chunks) continue;
      if (t.state[k] === 0) t.state[k] = 1;
    }
  }

  /** Bytes of the objects added here (what downloading them whole would cost). */
  get objectBytes(): number {
    let n = 0;
    for (const t of this.targets.values()) n += t.object.size;
    return n;
  }

  /** Fetch every needed chunk not fetched yet, `concurrency` ranged GETs in flight. */
  async fetch(concurrency: number, opts: { signal?: AbortSignal; onBytes?: (n: number) => void } = {}): Promise<void> {
    const runs: Array<{ t: Target; c0: number; c1: number }> = [];
    for (const t of this.targets.values()) {
      for (let k = 0; k < t.chunks; k++) {
        if (t.state[k] !== 1) continue;
        let e = k;
        while (e + 1 < t.chunks && e + 1 - k < MAX_RUN && t.state[e + 1] === 1) e++;
        runs.push({ t, c0: k, c1: e });
        k = e;
      }
    }
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (next < runs.length && !failed) {
        const { t, c0, c1 } = runs[next++]!;
        this.stats.requests++;
        try {
          await this.objects.readChunks(t.key, c0, c1, t.object.sums, (k, within, bytes) => {
            const at = (t.regionOf ? t.regionOf[k]! : k) * SUM_CHUNK + within;
            try {
              fs.writeSync(t.fd, bytes, 0, bytes.length, at);
            } catch (err) {
              throw fromSystemError(err, `cannot write ${t.file}`);
            }
            this.stats.bytes += bytes.length;
            opts.onBytes?.(bytes.length);
          }, opts.signal);
        } catch (err) {
          failed = true;
          throw err;
        }
        t.state.fill(2, c0, c1 + 1);
      }
    };
    const results = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(concurrency, runs.length)) }, worker));
    const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (bad) throw bad.reason;
  }

  close(): void {
    for (const t of this.targets.values()) {
      try {
        fs.closeSync(t.fd);
      } catch {
        /* already closed */
      }
    }
    this.targets.clear();
  }
}
