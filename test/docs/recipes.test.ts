// Every recipe in the README, run as written: the remote host `drsite` is an sshd on
// loopback, /srv, /run/drkit, /mnt and /var/log are temporary directories, and drkit is
// installed with `npm i -g . --prefix` (which also proves the bins and man pages install).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain JS module shared with the demo
import { startSshd } from '../../scripts/lib/sshd.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const T = mkdtempSync(join(tmpdir(), 'drkit-recipes-'));
const prefix = join(T, 'prefix');
const fakebin = join(T, 'fakebin');
mkdirSync(fakebin, { recursive: true });
for (const d of ['srv', 'run/drkit', 'mnt/db', 'log']) mkdirSync(join(T, d), { recursive: true });

function recipe(name: string): string {
  const m = new RegExp(`<!-- recipe: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`README has no recipe ${name}`);
  return localize(m[1]!);
}
function localize(text: string): string {
  return text
    .replaceAll('/srv/', `${T}/srv/`).replaceAll('/run/drkit', `${T}/run/drkit`)
    .replaceAll('/mnt/db', `${T}/mnt/db`).replaceAll('/var/log/', `${T}/log/`);
}

const install = spawnSync('npm', ['i', '-g', '.', '--prefix', prefix, '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: ROOT, encoding: 'utf8' });
const PATH = `${prefix}/bin:${fakebin}:${process.env.PATH}`;
const sshd = await startSshd({ path: PATH });
// `ssh backup@drsite ...` reaches the loopback sshd.
writeFileSync(join(fakebin, 'ssh'), `#!/bin/bash
args=(); for a in "$@"; do case "$a" in backup@drsite) args+=(root@127.0.0.1);; *) args+=("$a");; esac; done
exec /usr/bin/ssh -i ${sshd.key} -p ${sshd.port} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes -o LogLevel=ERROR "\${args[@]}"
`);
// `mail` keeps what it would have sent.
writeFileSync(join(fakebin, 'mail'), `#!/bin/sh\n{ echo "Subject: $2"; cat; } >> ${T}/mailbox\n`);
chmodSync(join(fakebin, 'ssh'), 0o755);
chmodSync(join(fakebin, 'mail'), 0o755);

t.teardown(async () => {
  spawnSync('umount', [`${T}/mnt/db`]);
  spawnSync('fusermount3', ['-u', `${T}/run/drkit/db.fuse`]);
  await sshd.stop();
  rmSync(T, { recursive: true, force: true });
});

function bash(script: string, timeoutMs = 120_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH, NO_COLOR: '1' };
    delete env.NODE_OPTIONS;
    const p = spawn('bash', ['-euo', 'pipefail', '-c', script], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

t.test('npm i -g . installs the six commands and the man pages', async (t) => {
  t.equal(install.status, 0, install.stderr);
  for (const c of ['dr-tap', 'dr-journal', 'dr-ship', 'dr-apply', 'dr-verify', 'dr-restore']) {
    t.ok(existsSync(join(prefix, 'bin', c)), `${c} installed`);
    t.ok(existsSync(join(prefix, 'share/man/man1', `${c}.1`)), `${c}(1) installed`);
  }
  t.ok(existsSync(join(prefix, 'share/man/man5/dr-journal.5')), 'dr-journal(5) installed');
});

t.test('recipe: protect a volume (kernel ext4 through nbdfuse and a loop device)', async (t) => {
  const r = await bash(recipe('protect'));
  t.equal(r.code, 0, r.err);
  t.match(r.out, /before-upgrade/, 'the app-consistent bookmark is listed');
  t.match(r.out, /app/);
});

t.test('recipe: initial sync with dr-tap scan over ssh', async (t) => {
  const r = await bash(recipe('scan'));
  t.equal(r.code, 0, r.err);
});

t.test('recipe: continuous shipping under systemd (the unit ExecStart, run for real)', async (t) => {
  const unit = readFileSync(join(ROOT, 'examples/drkit-ship@.service'), 'utf8');
  const env = Object.fromEntries(readFileSync(join(ROOT, 'examples/drkit-ship.env'), 'utf8').split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), localize(l.slice(l.indexOf('=') + 1))]));
  const exec = /^ExecStart=(.*)$/m.exec(unit)![1]!.replace(/\$\{([A-Z_]+)\}/g, (_, k: string) => env[k] ?? '').replace('/usr/local/bin/', '');
  t.match(exec, /^dr-ship send \S+ --follow/);
  const last = await bash(`dr-journal last ${env.JOURNAL}`);
  const script = `${exec} 2>${T}/log/ship.json &
for i in $(seq 600); do [ "$(dr-journal last ${env.REMOTE_JOURNAL} 2>/dev/null)" = "${last.out.trim()}" ] && break; sleep 0.1; done
kill %1 && wait %1 || true
dr-journal last ${env.REMOTE_JOURNAL}`;
  const r = await bash(script);
  t.equal(r.code, 0, r.err);
  t.equal(r.out.trim(), last.out.trim(), 'the recovery site caught up with the protected journal');
  t.match(readFileSync(`${T}/log/ship.json`, 'utf8'), /"lag_ms"/, 'NDJSON status lines');
});

t.test('recipe: nightly cron jobs (each line of examples/drkit.cron)', async (t) => {
  const lines = readFileSync(join(ROOT, 'examples/drkit.cron'), 'utf8').split('\n').filter((l) => /^\d/.test(l));
  t.equal(lines.length, 3);
  for (const line of lines) {
    const command = localize(line.split(/\s+/).slice(6).join(' '));
    const r = await bash(command);
    t.equal(r.code, 0, `${command}\n${r.err}`);
  }
  t.notOk(existsSync(`${T}/mailbox`), 'no failure mail');
  const broken = await bash(localize(lines[0]!.split(/\s+/).slice(6).join(' ')).replace('backup@drsite', 'nobody@drsite-unreachable'));
  t.equal(broken.code, 0, 'the job itself succeeds: it mailed');
  t.match(readFileSync(`${T}/mailbox`, 'utf8'), /drkit: shipping db failed/, 'a failure is mailed to root');
});

t.test('recipe: a failover drill with dr-restore --serve --writable', async (t) => {
  const r = await bash(recipe('failover'), 60_000);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /nightly/);
});

t.test('recipe: recover a whole consistency group with --tar', async (t) => {
  const r = await bash(recipe('tar'));
  t.equal(r.code, 0, r.err);
  t.match(r.out, /manifest\.json/);
});
