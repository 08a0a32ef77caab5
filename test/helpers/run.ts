/** Spawn a real bin/ command and collect its exit status, stdout and stderr. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/', import.meta.url));

export interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string }

export function run(
  cmd: string,
  args: string[],
  opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const file = cmd.startsWith('dr-') ? BIN + cmd : cmd;
  return new Promise((resolve, reject) => {
    // The commands run as a user runs them: without the test runner's loader options.
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...opts.env };
    delete env.NODE_OPTIONS;
    const child = spawn(file, args, {
      env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on('error', () => {}); // the command may exit before reading all input
    child.stdin.end(opts.input ?? '');
  });
}
