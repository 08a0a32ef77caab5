/**
 * Archive tests: run `dr-journal archive` (through bin/dr-journal when it registers the
 * subcommand, else through test/helpers/archive-cli.mjs, the same module with the same CLI
 * kit), and an S3 client for the test cluster.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { BIN, run, type RunResult } from './run.js';
import type { Ceph } from './ceph.js';

const SHIM = fileURLToPath(new URL('./archive-cli.mjs', import.meta.url));
let wired: boolean | null = null;

/** argv that runs `dr-journal <args>` for the archive subcommands */
export function journalArgv(args: string[]): { file: string; argv: string[] } {
  if (wired === null) {
    const help = spawnSync(BIN + 'dr-journal', ['--help'], { encoding: 'utf8' });
    wired = /\barchive\b/.test(help.stdout ?? '');
  }
  return wired ? { file: BIN + 'dr-journal', argv: args } : { file: process.execPath, argv: [SHIM, ...args] };
}

export function journal(ceph: Ceph, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  const { file, argv } = journalArgv(args);
  return run(file, argv, { env: ceph.env, timeoutMs });
}

export function spawnJournal(ceph: Ceph, args: string[]): ChildProcess {
  const { file, argv } = journalArgv(args);
  return spawn(file, argv, { env: { ...process.env, ...ceph.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
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
