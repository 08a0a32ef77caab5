/** Worker thread entry: runs image tasks (tasks.ts) posted by the pool (pool.ts). */
import { parentPort } from 'node:worker_threads';
import { DrError } from '../errors.js';
import { closeAll, runTask, type Task } from './tasks.js';

const port = parentPort;
if (!port) throw new Error('image worker started outside a worker thread');

port.on('message', (msg: { id: number; task: Task } | { close: true }) => {
  if ('close' in msg) {
    closeAll();
    port.close();
    return;
  }
  try {
    const { result, transfer } = runTask(msg.task);
    port.postMessage({ id: msg.id, result }, transfer);
  } catch (err) {
    const e = err instanceof DrError ? err : null;
    port.postMessage({ id: msg.id, error: { code: e?.code ?? 'DR_IO', message: (err as Error)?.message ?? String(err) } });
  }
});
