/**
 * A small pool of worker threads (one per core) running image tasks, and an
 * ordered driver that keeps a bounded number of tasks in flight and yields their
 * results in task order: memory is bounded by window x stripe size, whatever the
 * image size.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DrError, type DrCode } from '../errors.js';
import { runTask, type Task, type TaskResult } from './tasks.js';

interface Pending { resolve: (r: TaskResult) => void; reject: (e: Error) => void }

export class WorkerPool {
  private workers: Worker[] = [];
  private idle: Worker[] = [];
  private queue: Array<{ id: number; task: Task; transfer: ArrayBuffer[] }> = [];
  private pending = new Map<number, Pending>();
  private owner = new Map<number, Worker>();
  private nextId = 1;
  private failed: Error | null = null;
  readonly size: number;

  /** threads = 0: run tasks inline on the main thread (small images: no thread start-up cost) */
  constructor(threads = defaultThreads()) {
    this.size = Math.max(threads, 1);
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL('./worker.js', import.meta.url));
      w.on('message', (m: { id: number; result?: TaskResult; error?: { code: string; message: string } }) => this.done(w, m));
      w.on('error', (err) => this.crash(err));
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run(task: Task, transfer: ArrayBuffer[] = []): Promise<TaskResult> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.workers.length === 0) {
      try {
        return Promise.resolve(runTask(task).result);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.queue.push({ id, task, transfer });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.owner.set(job.id, w);
      w.postMessage({ id: job.id, task: job.task }, job.transfer);
    }
  }

  private done(w: Worker, m: { id: number; result?: TaskResult; error?: { code: string; message: string } }): void {
    const p = this.pending.get(m.id);
    this.pending.delete(m.id);
    this.owner.delete(m.id);
    this.idle.push(w);
    if (p) {
      if (m.error) p.reject(new DrError(m.error.code as DrCode, m.error.message));
      else p.resolve(m.result!);
    }
    this.dispatch();
  }

  private crash(err: Error): void {
    this.failed = new DrError('DR_IO', `image worker failed: ${err.message}`);
    for (const p of this.pending.values()) p.reject(this.failed);
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
    this.idle = [];
  }
}

/** Below this many bytes of image work, threads cost more to start than they save. */
export const INLINE_BELOW = 16 << 20;

/**
 * Worker threads for `bytes` of image work: DRKIT_THREADS if set (0 = inline), else
 * one per core (at most 8), or none (inline) for small images.
 */
export function defaultThreads(bytes = Infinity): number {
  const text = process.env.DRKIT_THREADS;
  if (text !== undefined && text !== '') {
    const env = Number(text);
    if (Number.isInteger(env) && env >= 0) return Math.min(env, 64);
  }
  if (bytes < INLINE_BELOW) return 0;
  return Math.max(1, Math.min(availableParallelism(), 8));
}

/**
 * Run tasks with at most `window` in flight, yielding [task, result] in task order.
 * `prepare` may be async (e.g. reading a manifest's digests for the task).
 */
export async function* ordered<T extends Task>(
  pool: WorkerPool,
  tasks: AsyncIterable<T> | Iterable<T>,
  window = pool.size * 2,
): AsyncGenerator<[T, TaskResult]> {
  const inflight: Array<[T, Promise<TaskResult>]> = [];
  // Avoid unhandled rejections for tasks that fail while an earlier one is awaited.
  const track = (p: Promise<TaskResult>) => {
    p.catch(() => undefined);
    return p;
  };
  for await (const t of tasks) {
    inflight.push([t, track(pool.run(t))]);
    if (inflight.length >= window) {
      const [task, p] = inflight.shift()!;
      yield [task, await p];
    }
  }
  while (inflight.length > 0) {
    const [task, p] = inflight.shift()!;
    yield [task, await p];
  }
}

/** Stripes [offset, length) covering [start, end), each a multiple of `unit` except the last. */
export function* stripes(start: number, end: number, stripe: number): Generator<{ offset: number; length: number }> {
  for (let o = start; o < end; o += stripe) yield { offset: o, length: Math.min(stripe, end - o) };
}
