/**
 * Run `dr-tap nbd` in the background for a test: stream to a file, wait until it
 * listens, stop it with a signal and collect its exit status and stderr. Also the
 * peers' helpers: run a command and fail the test with its stderr when it fails,
 * and check that a peer is installed (missing peers fail the test under CI).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { BIN } from './run.js';

export interface TapProc {
  child: ChildProcess;
  stderr: () => string;
  /** SIGTERM (or the given signal) and wait for the exit */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start dr-tap with `args`; stdout goes to `stdoutFile` (the journal stream) unless null. Waits for `waitFor` to exist. */
export async function startTap(args: string[], opts: { stdoutFile: string | null; waitFor: string; env?: NodeJS.ProcessEnv }): Promise<TapProc> {
  const outFd = opts.stdoutFile ? openSync(opts.stdoutFile, 'w') : 'pipe';
  const child = spawn(BIN + 'dr-tap', args, {
    stdio: ['ignore', outFd, 'pipe'],
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
  });
  if (typeof outFd === 'number') closeSync(outFd);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  if (child.stdout) child.stdout.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  let done = false;
  void exited.then(() => (done = true));
  const t0 = Date.now();
  while (!existsSync(opts.waitFor) || !/serving /.test(err)) {
    if (done) throw new Error(`dr-tap exited before listening: ${err}`);
    if (Date.now() - t0 > 15000) {
      child.kill('SIGKILL');
      throw new Error(`dr-tap did not listen within 15s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!done) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
      const r = await exited;
      clearTimeout(timer);
      // let stderr drain
      await new Promise((res) => setTimeout(res, 20));
      return { ...r, stderr: err };
    },
  };
}

/** Run a peer command; throws with its output when it fails. */
export function sh(cmd: string, args: string[], opts: { input?: Buffer; timeoutMs?: number; cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { input: opts.input, timeout: opts.timeoutMs ?? 60000, cwd: opts.cwd, maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr?.toString()}${r.stdout?.toString()}`);
  return r.stdout.toString();
}

/** Async variant, for peers that must run while the test does other things. */
export function shAsync(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs ?? 60000);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}${out}`));
    });
  });
}

/** Fail (never skip) when a peer is missing: scripts/install-peers.sh installs them. */
export function requirePeer(cmd: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`]);
  if (r.status !== 0) throw new Error(`peer ${cmd} is not installed (scripts/install-peers.sh installs it)`);
}
