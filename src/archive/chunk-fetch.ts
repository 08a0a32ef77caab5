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
import { promisify } from 'node:util';
import { DrError, fromSystemError } from '../errors.js';
import { REGION, regionCount, regionSet } from '../store/base.js';
import type { ArchivedObject } from './manifest.js';
import { SUM_CHUNK } from './limits.js';
import type { ObjectStore } from './objects.js';

// a packed base image chunk is exactly one region (the last one of a volume may be short)
if (REGION !== SUM_CHUNK) throw new Error('archive chunk size and base image region size differ');

const write = promisify(fs.write);

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
  /** per chunk: IDLE, NEEDED, QUEUED, FETCHED */
  state: Uint8Array;
  /** per chunk: when it was first needed (-1: not yet), the order of the background fetch */
  rank: Float64Array;
  /** per chunk: its run (index into runs) once queued */
  runOf: Int32Array;
}

const IDLE = 0;
const NEEDED = 1;
const QUEUED = 2;
const IN_FLIGHT = 3;
const FETCHED = 4;

/** One ranged GET: chunks c0..c1 of one object. */
interface Run {
  t: Target;
  c0: number;
  c1: number;
  rank: number;
  state: number;
  done: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

export interface FetchStats {
  /** ranged GETs made */
  requests: number;
}

export class ChunkFetcher {
  private readonly targets = new Map<string, Target>();
  readonly stats: FetchStats = { requests: 0 };
  private readonly runs: Run[] = [];
  /** runs in the order they are needed, and runs a waiting read asked for (taken first) */
  private readonly queue: Run[] = [];
  private readonly urgent: Run[] = [];
  private ranks = 0;
  private workers = 0;
  private readonly running = new Set<Promise<void>>();
  private error: unknown = null;
  private closed = false;
  private readonly abort = new AbortController();
  private readonly onBytes?: (n: number) => void;
  private readonly concurrency: number;

  constructor(
    private readonly objects: ObjectStore, private readonly keyOf: (relKey: string) => string, private readonly where: string,
    opts: { concurrency: number; signal?: AbortSignal; onBytes?: (n: number) => void },
  ) {
    this.concurrency = opts.concurrency;
    this.onBytes = opts.onBytes;
    opts.signal?.addEventListener('abort', () => this.fail(new DrError('DR_INTERRUPTED', 'archive transfer interrupted')), { once: true });
  }

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
    this.targets.set(path.resolve(file), {
      key: this.keyOf(object.key), object, file, fd, chunks, regionOf, packedOf,
      state: new Uint8Array(chunks), rank: new Float64Array(chunks).fill(-1), runOf: new Int32Array(chunks).fill(-1),
    });
  }

  /**
   * Local bytes [pos, pos+length) of `file` will be read: fetched by the next fetch() (in the
   * order first needed). Files that are no placeholder here were downloaded whole.
   */
  need(file: string, pos: number, length: number): void {
    const t = this.targets.get(path.resolve(file));
    if (!t) return;
    const rank = this.ranks++;
    for (const k of this.chunksOf(t, pos, length)) {
      if (t.state[k] !== NEEDED && t.state[k] !== IDLE) continue;
      t.state[k] = NEEDED;
      if (t.rank[k] === -1) t.rank[k] = rank;
    }
  }

  /** The object chunks holding local bytes [pos, pos+length) of `t` (a base image region the map does not mark reads as zeroes: none). */
  private *chunksOf(t: Target, pos: number, length: number): Generator<number> {
    if (length <= 0) return;
    const c0 = Math.floor(pos / SUM_CHUNK);
    const c1 = Math.floor((pos + length - 1) / SUM_CHUNK);
    for (let c = c0; c <= c1; c++) {
      const k = t.packedOf ? (t.packedOf[c] ?? -1) : c;
      if (k >= 0 && k < t.chunks) yield k;
    }
  }

  /** Bytes of the objects added here (what downloading them whole would cost). */
  get objectBytes(): number {
    let n = 0;
    for (const t of this.targets.values()) n += t.object.size;
    return n;
  }

  /**
   * Queue every needed chunk, runs in the order they were first needed, and start up to
   * `concurrency` ranged GETs at a time; resolves when all of them are in (the caller may
   * also go on: ensure() waits for just what a read needs).
   */
  fetch(): Promise<void> {
    const runs: Run[] = [];
    for (const t of this.targets.values()) {
      for (let k = 0; k < t.chunks; k++) {
        if (t.state[k] !== NEEDED) continue;
        let e = k;
        while (e + 1 < t.chunks && e + 1 - k < MAX_RUN && t.state[e + 1] === NEEDED) e++;
        let rank = Infinity;
        for (let c = k; c <= e; c++) rank = Math.min(rank, t.rank[c]!);
        runs.push(this.queueRun(t, k, e, rank));
        k = e;
      }
    }
    runs.sort((a, b) => a.rank - b.rank);
    this.queue.push(...runs);
    this.spawn();
    return Promise.all(runs.map((r) => r.done)).then(() => undefined);
  }

  /** Resolves once local bytes [pos, pos+length) of `file` are in (fetched first if nobody asked for them yet). */
  ensure(file: string, pos: number, length: number): Promise<void> {
    if (this.error !== null) return Promise.reject(this.error);
    const t = this.targets.get(file); // the reader's sources(): absolute, as the keys are
    if (!t) return Promise.resolve();
    const waits: Array<Promise<void>> = [];
    let first = -1;
    let last = -1;
    const flush = (): void => {
      if (first < 0) return;
      const run = this.queueRun(t, first, last, -1);
      this.urgent.push(run);
      waits.push(run.done);
      first = -1;
    };
    for (const k of this.chunksOf(t, pos, length)) {
      const state = t.state[k]!;
      if (state === FETCHED) continue;
      if (state === QUEUED) {
        const run = this.runs[t.runOf[k]!]!;
        if (waits.includes(run.done)) continue; // a run covering several chunks: queued and waited for once
        if (run.state === QUEUED) this.urgent.push(run);
        waits.push(run.done);
        continue;
      }
      // not planned: a run of its own, with its neighbours in this read
      if (first >= 0 && (k !== last + 1 || k - first >= MAX_RUN)) flush();
      if (first < 0) first = k;
      last = k;
    }
    flush();
    if (waits.length === 0) return Promise.resolve();
    this.spawn();
    return Promise.all(waits).then(() => undefined);
  }

  private queueRun(t: Target, c0: number, c1: number, rank: number): Run {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => undefined); // failures reach the waiting reads (or close())
    const run: Run = { t, c0, c1, rank, state: QUEUED, done, resolve, reject };
    const id = this.runs.push(run) - 1;
    for (let k = c0; k <= c1; k++) {
      t.state[k] = QUEUED;
      t.runOf[k] = id;
    }
    return run;
  }

  private next(): Run | undefined {
    for (;;) {
      const run = this.urgent.length > 0 ? this.urgent.shift() : this.queue.shift();
      if (!run) return undefined;
      if (run.state === QUEUED) return run;
    }
  }

  private spawn(): void {
    while (this.workers < this.concurrency && this.error === null && !this.closed && (this.urgent.length > 0 || this.queue.length > 0)) {
      this.workers++;
      const w = this.work().finally(() => {
        this.workers--;
        this.running.delete(w);
      });
      this.running.add(w);
    }
  }

  private async work(): Promise<void> {
    for (let run = this.next(); run && this.error === null && !this.closed; run = this.next()) {
      const { t, c0, c1 } = run;
      run.state = IN_FLIGHT;
      this.stats.requests++;
      try {
        await this.objects.readChunks(t.key, c0, c1, t.object.sums, async (k, bytes) => {
          // on the thread pool: the main thread goes on receiving and checking the next chunk
          const at = (t.regionOf ? t.regionOf[k]! : k) * SUM_CHUNK;
          try {
            for (let done = 0; done < bytes.length;) done += (await write(t.fd, bytes, done, bytes.length - done, at + done)).bytesWritten;
          } catch (err) {
            throw fromSystemError(err, `cannot write ${t.file}`);
          }
          this.onBytes?.(bytes.length);
        }, this.abort.signal);
      } catch (err) {
        this.fail(this.closed ? new DrError('DR_INTERRUPTED', 'archive transfer interrupted') : err);
        return;
      }
      t.state.fill(FETCHED, c0, c1 + 1);
      run.state = FETCHED;
      run.resolve();
    }
  }

  /** The first failure ends every transfer: each waiting read gets it. */
  private fail(err: unknown): void {
    this.error ??= err;
    for (const run of this.runs) {
      if (run.state === FETCHED) continue;
      run.state = FETCHED;
      run.reject(this.error);
    }
    this.abort.abort();
  }

  /** Stop transferring (requests in flight are aborted), close the placeholders. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.running.size > 0) this.fail(new DrError('DR_INTERRUPTED', 'archive transfer interrupted'));
    await Promise.allSettled([...this.running]);
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
