/** Archive tests: run the real `dr-journal archive`, and an S3 client for the test cluster. */
import { spawn, type ChildProcess } from 'node:child_process';
import { S3Client } from '@aws-sdk/client-s3';
import { BIN, run, type RunResult } from './run.js';
import type { Ceph } from './ceph.js';

export function journal(ceph: Ceph, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return run(BIN + 'dr-journal', args, { env: ceph.env, timeoutMs });
}

export function spawnJournal(ceph: Ceph, args: string[]): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, ...ceph.env, NO_COLOR: '1' };
  delete env.NODE_OPTIONS;
  return spawn(BIN + 'dr-journal', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function s3Client(ceph: Ceph): S3Client {
  return new S3Client({
    endpoint: ceph.endpoint, region: ceph.region, forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
  });
}

/** S3 options for in-process library calls against the test cluster. */
export function s3Opts(ceph: Ceph): { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string } {
  return { endpoint: ceph.endpoint, region: ceph.region, accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey };
}
