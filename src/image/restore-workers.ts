/**
 * Reads of a point in time spread over worker threads: the store's point-in-time
 * reader does synchronous preads, one per block whose newest version is scattered
 * through the journal, so a restore's reads run on several threads while the main
 * thread writes. Each worker opens the store itself (read-only: the main thread's
 * reader holds the lease that keeps the files) and the same seq, and answers
 * read requests with the bytes, moved (not copied) back to the main thread.
 */
import { Worker } from 'node:worker_threads';
import { DrError, type DrCode } from '../errors.js';
import type { VolumeRecord } from '../format/layout.js';
import type { PointInTimeReader } from '../store/index.js';

interface Pending { resolve(b: Buffer): void; reject(e: unknown): void }

type Reply = { id: number; buf: ArrayBuffer; offset: number; length: number } | { id: number; error: { code?: string; message: string } } | { ready: true } | { failed: { code?: string; message: string } };

class WorkerReader {
  readonly worker: Worker;
  private pending = new Map<number, Pending>();
  private next = 1;
  load = 0;
  ready: Promise<void>;

  constructor(dir: string, seq: number) {
    this.worker = new Worker(new URL('./restore-worker.js', import.meta.url), { workerData: { dir, seq } });
    this.worker.unref();
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (m: Reply) => {
        if ('ready' in m) return resolve();
        if ('failed' in m) return reject(toError(m.failed));
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.load--;
        if ('error' in m) p.reject(toError(m.error));
        else p.resolve(Buffer.from(m.buf, m.offset, m.length));
      });
      this.worker.on('error', (err) => {
        reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
    });
    this.ready.catch(() => undefined);
  }

  read(volume: number, offset: number, length: number): Promise<Buffer> {
    const id = this.next++;
    this.load++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, volume, offset, length });
    });
  }
}

function toError(e: { code?: string; message: string }): Error {
  return e.code && e.code.startsWith('DR_') ? new DrError(e.code as DrCode, e.message) : new DrError('DR_IO', e.message);
}

/**
 * A reader whose read() goes to `jobs` worker threads (the least busy one);
 * allocated() and the identity come from `main`, which keeps its lease.
 */
export async function parallelReader(main: PointInTimeReader, dir: string, jobs: number): Promise<PointInTimeReader> {
  const workers = Array.from({ length: jobs }, () => new WorkerReader(dir, main.seq));
  try {
    await Promise.all(workers.map((w) => w.ready));
  } catch (err) {
    await Promise.all(workers.map((w) => w.worker.terminate()));
    throw err;
  }
  return {
    seq: main.seq,
    time: main.time,
    volumes: main.volumes as VolumeRecord[],
    read: (volume, offset, length) => {
      let best = workers[0]!;
      for (const w of workers) if (w.load < best.load) best = w;
      return best.read(volume, offset, length);
    },
    allocated: (volume) => main.allocated(volume),
    sources: (volume, offset, length) => main.sources(volume, offset, length),
    release: async () => {
      await Promise.all(workers.map((w) => w.worker.terminate()));
    },
  };
}
