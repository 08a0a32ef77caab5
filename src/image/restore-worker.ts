/**
 * Worker thread of restore-workers.ts: opens the store read-only and the point in
 * time `seq`, then answers {id, volume, offset, length} with the bytes (their
 * memory is transferred to the main thread) or an error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { JournalStore } from '../store/index.js';
import { createLogger } from '../cli/log.js';

const { dir, seq } = workerData as { dir: string; seq: number };
const port = parentPort!;

const errorOf = (err: unknown) => ({ code: (err as { code?: string }).code, message: (err as Error)?.message ?? String(err) });

try {
  const log = createLogger('dr-restore', -1);
  const store = await JournalStore.open(dir, { readOnly: true, log });
  const reader = await store.pointInTime(seq);
  port.on('message', (m: { id: number; volume: number; offset: number; length: number }) => {
    reader.read(m.volume, m.offset, m.length).then(
      (b) => {
        // a buffer that owns its memory is moved; a slice of a shared pool is copied out first
        let ab: ArrayBuffer;
        if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) ab = b.buffer;
        else {
          ab = new ArrayBuffer(b.length);
          new Uint8Array(ab).set(b);
        }
        port.postMessage({ id: m.id, buf: ab, offset: 0, length: b.length }, [ab]);
      },
      (err) => port.postMessage({ id: m.id, error: errorOf(err) }),
    );
  });
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ failed: errorOf(err) });
}
