/**
 * Start the test Ceph cluster (ceph.ts) for a script: prints one JSON line
 * { endpoint, env, timings } on stdout when radosgw answers, and stops the cluster when
 * stdin closes or on SIGTERM/SIGINT. Used by scripts/bench.d/archive.mjs.
 */
import { startCeph } from './ceph.js';

const ceph = await startCeph();
process.stdout.write(JSON.stringify({ endpoint: ceph.endpoint, env: ceph.env, timings: ceph.timings, dir: ceph.dir }) + '\n');
let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await ceph.stop();
  process.exit(0);
};
process.stdin.on('end', () => void stop());
process.stdin.on('close', () => void stop());
process.stdin.resume();
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
