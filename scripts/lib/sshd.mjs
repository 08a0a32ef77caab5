// A throwaway OpenSSH server on 127.0.0.1 for the demo and the tests: host and user keys
// in a temp dir, key authentication only, root allowed (this is a loopback test peer).
// start() resolves to { port, ssh: [argv prefix for `ssh ... root@127.0.0.1`], stop() }.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync, existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

const SSHD = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => existsSync(p));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(); });
      c.once('error', () => {
        c.destroy();
        if (Date.now() > deadline) reject(new Error(`sshd did not listen on 127.0.0.1:${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * Start sshd; throws with the reason when it cannot (no sshd binary, not root, ...).
 * opts.path: PATH for remote commands (SetEnv), e.g. so the far end finds dr-* and node.
 */
export async function startSshd(opts = {}) {
  if (!SSHD) throw new Error('sshd is not installed (Debian package openssh-server)');
  const dir = mkdtempSync(join(tmpdir(), 'drkit-sshd-'));
  mkdirSync('/run/sshd', { recursive: true });
  const keygen = (file) => {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  };
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'user_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')));
  chmodSync(join(dir, 'authorized_keys'), 0o600);
  const port = await freePort();
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_key')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'UsePAM no', 'StrictModes no', 'PermitRootLogin prohibit-password', 'LogLevel ERROR', 'MaxStartups 100:30:200',
    ...(opts.path ? [`SetEnv PATH=${opts.path}`] : []), '',
  ].join('\n'));
  const proc = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  try {
    await Promise.race([waitForPort(port, 10_000), exited.then(() => { throw new Error(`sshd exited: ${stderr.trim()}`); })]);
  } catch (err) {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const ssh = ['ssh', '-T', '-i', join(dir, 'user_key'), '-p', String(port),
    '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
    '-o', 'ConnectTimeout=5', `${userInfo().username}@127.0.0.1`];
  return {
    port,
    dir,
    key: join(dir, 'user_key'),
    ssh,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
