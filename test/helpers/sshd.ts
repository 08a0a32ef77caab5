/**
 * A real OpenSSH server on 127.0.0.1 for the tests: the launcher the demo uses too
 * (scripts/lib/sshd.mjs: throwaway host and user keys, a free port, key login as the
 * current user), plus remote() to build the command line that runs a drkit bin/ command
 * on the far side with node on PATH.
 */
import path from 'node:path';
// @ts-expect-error: a plain JS module shared with the demo
import { startSshd as startLoopbackSshd } from '../../scripts/lib/sshd.mjs';

export interface Sshd {
  port: number;
  dir: string;
  /** ssh client argv (without the remote command): ssh -T -i KEY ... -p PORT user@127.0.0.1 */
  ssh: string[];
  /** the remote command line that runs a drkit bin/ command with node on PATH */
  remote(bin: string, ...args: string[]): string;
  stop(): Promise<void>;
}

export async function startSshd(): Promise<Sshd> {
  const s = (await startLoopbackSshd()) as Omit<Sshd, 'remote'>;
  const pathEnv = `${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
  return {
    port: s.port,
    dir: s.dir,
    ssh: s.ssh,
    stop: () => s.stop(),
    remote: (bin, ...args) => ['env', `PATH=${pathEnv}`, bin, ...args].map(shellQuote).join(' '),
  };
}

/** Quote one word for the remote shell (ssh passes the command line to the user's shell). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
