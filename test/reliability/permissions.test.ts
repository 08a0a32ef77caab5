// Permissions and the shell:
//  - the NBD and control unix sockets of dr-tap nbd and the socket of dr-restore
//    --serve are created 0600;
//  - no file or directory the tools create is world-writable, even under umask 000
//    (store files, segments, the durable hint, leases, state files, replicas,
//    restored files and tars, manifests, tap state);
//  - nothing is passed through a shell: the source has no `shell: true`, no exec()/
//    execSync() of a command string; the only /bin/sh is dr-ship --on-rpo-breach, a
//    command line the user wrote (like a cron entry), whose details arrive in DR_RPO_*
//    environment variables, never spliced into the command text.
import t from 'tap';
import { lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requirePeer, sh, startTap } from '../helpers/tap-run.js';
import { figures, killLeftovers, runBin, seedFor, start, tempDir, waitFor } from '../helpers/reliability-common.js';
import { makeWorkload } from '../helpers/workload.js';
import { BIN } from '../helpers/run.js';

requirePeer('qemu-io');
t.teardown(killLeftovers);
t.setTimeout(900_000);
const f = figures(t, 'permissions');
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function walk(dir: string): string[] {
  const out: string[] = [dir];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

t.test('sockets 0600 and no world-writable file, under umask 000', async (t) => {
  const old = process.umask(0o000);
  t.teardown(() => {
    process.umask(old);
  });
  const dir = tempDir(t, 'drkit-rel-perm-');
  const w = makeWorkload({ seed: seedFor('permissions'), volumes: [{ name: 'vol', size: 1 << 20, blockSize: 4096 }], records: 40, markEvery: 10 });
  const made: string[] = [];

  // dr-tap nbd with a journal and a control socket; then with a stream and --state
  const disk = join(dir, 'd.img');
  sh('truncate', ['-s', '1M', disk]);
  const sock = join(dir, 'nbd.sock');
  const ctl = join(dir, 'ctl.sock');
  const J = join(dir, 'tapJ');
  const tap = await startTap(['nbd', '--export', `d=${disk}`, '--socket', sock, '--journal', J, '--control', ctl], { stdoutFile: null, waitFor: sock });
  t.teardown(() => tap.child.kill('SIGKILL'));
  await waitFor('the control socket', () => {
    try {
      return lstatSync(ctl).isSocket();
    } catch {
      return false;
    }
  });
  t.equal(lstatSync(sock).mode & 0o777, 0o600, 'dr-tap NBD socket is 0600');
  t.equal(lstatSync(ctl).mode & 0o777, 0o600, 'dr-tap control socket is 0600');
  sh('qemu-io', ['-f', 'raw', `nbd+unix:///d?socket=${sock}`, '-c', 'write -P 7 0 64k', '-c', 'flush']);
  const mk = await runBin('dr-tap', ['mark', '--control', ctl, 'perm']);
  t.equal(mk.code, 0, 'mark');
  t.equal((await tap.stop()).code, 0, 'tap stops');
  made.push(J);
  const state = join(dir, 'tap.state');
  const sock2 = join(dir, 'nbd2.sock');
  const tap2 = await startTap(['nbd', '--export', `d=${disk}`, '--socket', sock2, '--state', state], { stdoutFile: join(dir, 'tap.drj'), waitFor: sock2 });
  t.teardown(() => tap2.child.kill('SIGKILL'));
  t.equal(lstatSync(sock2).mode & 0o777, 0o600, 'dr-tap NBD socket (stream mode) is 0600');
  sh('qemu-io', ['-f', 'raw', `nbd+unix:///d?socket=${sock2}`, '-c', 'write -P 8 0 4k', '-c', 'flush']);
  t.equal((await tap2.stop()).code, 0, 'tap (stream mode) stops');
  made.push(state);

  // a store, prune, apply, restore (file and tar), hashes, scan manifest, ship receive
  const S = join(dir, 'S');
  t.equal((await runBin('dr-journal', ['append', S, '--segment-size', '64K'], { input: w.stream })).code, 0, 'append');
  const R = join(dir, 'replica.img');
  const ap = await runBin('dr-apply', ['--journal', S, '--target', `vol=${R}`]);
  t.equal(ap.code, 0, `apply ${ap.stderr.trim()}`);
  made.push(R, `${R}.drstate`);
  const D = join(dir, 'D');
  const ship = await runBin('dr-ship', ['send', S, '--once', '--', `${BIN}dr-ship`, 'receive', D]);
  t.equal(ship.code, 0, `ship ${ship.stderr.trim()}`);
  made.push(D);
  const pr = await runBin('dr-journal', ['prune', S, '--keep-size', '64K']);
  t.equal(pr.code, 0, `prune ${pr.stderr.trim()}`);
  made.push(S);
  const out = join(dir, 'restored.img');
  t.equal((await runBin('dr-restore', [S, '--at', 'latest', '--out', out])).code, 0, 'restore --out');
  const tar = join(dir, 'restored.tar');
  t.equal((await runBin('dr-restore', [S, '--at', 'latest', '--tar', tar])).code, 0, 'restore --tar');
  made.push(out, tar);
  const man = join(dir, 'scan.man');
  t.equal((await runBin('dr-tap', ['scan', disk, '--manifest', man, '-o', join(dir, 'scan.drj')])).code, 0, 'scan');
  made.push(man, join(dir, 'scan.drj'));

  // dr-restore --serve socket
  const rs = join(dir, 'restore.sock');
  const srv = start('dr-restore', [S, '--serve', '--socket', rs, '--at', 'latest'], { stdin: 'ignore' });
  await waitFor('the restore server', () => srv.exited || /listening on/.test(srv.stderr()), 30_000);
  t.equal(lstatSync(rs).mode & 0o777, 0o600, 'dr-restore --serve socket is 0600');
  srv.child.kill('SIGTERM');
  await srv.done;

  const bad: string[] = [];
  let n = 0;
  for (const root of made) {
    const paths = statSync(root).isDirectory() ? walk(root) : [root];
    for (const p of paths) {
      const st = lstatSync(p);
      if (st.isSymbolicLink()) continue;
      n++;
      if (st.mode & 0o002) bad.push(`${relative(dir, p) || p} ${(st.mode & 0o777).toString(8)}`);
    }
  }
  f.checks += n;
  t.same(bad, [], `none of the ${n} files and directories the tools created is world-writable (umask 000)`);
});

t.test('nothing is passed through a shell', async (t) => {
  const files = walk(SRC).filter((p) => p.endsWith('.ts'));
  const hits: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const rel = relative(SRC, file);
    text.split('\n').forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      if (/shell\s*:\s*(true|['"`])/.test(code)) hits.push(`${rel}:${i + 1}: shell option: ${line.trim()}`);
      if (/\b(execSync|exec)\s*\(/.test(code) && !/\.exec\(/.test(code)) hits.push(`${rel}:${i + 1}: exec of a command string: ${line.trim()}`);
      if (/['"`](\/bin\/)?(ba)?sh['"`]/.test(code) && /spawn|execFile/.test(code)) hits.push(`${rel}:${i + 1}: a shell: ${line.trim()}`);
    });
    if (/from 'node:child_process'/.test(text) && /\bexec\b[,\s}]/.test(text.match(/import\s*{([^}]*)}\s*from 'node:child_process'/)?.[1] ?? '')) hits.push(`${rel}: imports exec`);
  }
  f.checks += files.length;
  // the one allowed shell: dr-ship --on-rpo-breach (a user-written command line, details in env)
  const allowed = hits.filter((h) => /^transport\/rpo\.ts:\d+: a shell: const child = spawn\('\/bin\/sh', \['-c', cmd\], \{ env,/.test(h));
  t.same(hits.filter((h) => !allowed.includes(h)), [], `no shell in ${files.length} source files, except the --on-rpo-breach hook`);
  t.equal(allowed.length, 1, 'the --on-rpo-breach hook is the one /bin/sh, with its details in env');
  const rpo = readFileSync(join(SRC, 'transport', 'rpo.ts'), 'utf8');
  const fn = rpo.slice(rpo.indexOf('runHook('), rpo.indexOf("spawn('/bin/sh'"));
  t.notMatch(fn, /cmd\s*[+=]|`[^`]*\$\{[^}]*\}[^`]*`\s*;?\s*\n\s*const child/, 'the hook command text is used as written, nothing spliced into it');
  // and dr-ship runs its transport command with an argv, no shell
  const sender = readFileSync(join(SRC, 'transport', 'sender.ts'), 'utf8');
  t.match(sender, /spawn\(command\[0\]!, command\.slice\(1\)/, 'dr-ship send runs COMMAND from its argv, without a shell');
});
