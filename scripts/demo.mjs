#!/usr/bin/env node
// The main job, end to end, with real parts, on a generated sample volume:
//   site A: dr-tap nbd in front of the volume, journaling into a store; a real client (the
//           kernel's ext4 through nbdfuse + a loop device, or qemu-io where mounting is not
//           possible) writes files; app-consistent bookmarks under fsfreeze.
//   ship:   dr-ship send --follow over ssh (a throwaway sshd on loopback) to a store at site B.
//   site B: dr-apply keeps a replica; dr-restore rebuilds the volume at a bookmark and at a
//           time; dr-verify proves each against references taken at site A.
// Prints a short account and exits non-zero if any proof fails.
// Usage: node scripts/demo.mjs [--size-mib N] [--client kernel|qemu] [--keep] [--dir DIR]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, copyFileSync, writeFileSync, openSync, closeSync, ftruncateSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSshd } from './lib/sshd.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const SIZE_MIB = Number(opt('--size-mib', '128'));
const KEEP = args.includes('--keep');
const CLIENT = opt('--client', 'auto');
const ROOT = resolve(new URL('..', import.meta.url).pathname);
const BIN = (c) => join(ROOT, 'bin', c);
const color = process.stdout.isTTY && !process.env.NO_COLOR;
const green = (s) => (color ? `\x1b[32m${s}\x1b[0m` : s);
const red = (s) => (color ? `\x1b[31m${s}\x1b[0m` : s);
const bold = (s) => (color ? `\x1b[1m${s}\x1b[0m` : s);

const work = opt('--dir') ? resolve(opt('--dir')) : mkdtempSync(join(tmpdir(), 'drkit-demo-'));
mkdirSync(work, { recursive: true });
const A = join(work, 'site-a');
const B = join(work, 'site-b');
mkdirSync(A, { recursive: true });
mkdirSync(B, { recursive: true });

const account = [];
const proofs = [];
const cleanups = [];
const started = Date.now();
const say = (s) => process.stdout.write(`${s}\n`);
const step = (s) => say(bold(`\n== ${s}`));
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
const secs = (ms) => `${(ms / 1000).toFixed(2)}s`;

/** Run a command to completion; throw with its stderr unless it exits as expected. */
function sh(cmd, argv, { input, ok = [0], quiet = false } = {}) {
  const r = spawnSync(cmd, argv, { input: typeof input === 'string' ? Buffer.from(input) : input, maxBuffer: 1 << 30 });
  const stderr = r.stderr?.toString() ?? '';
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (!ok.includes(r.status)) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${stderr.trim()}`);
  if (!quiet && stderr.trim()) process.stderr.write(stderr);
  return { code: r.status, stdout: r.stdout.toString(), raw: r.stdout, stderr };
}

function background(cmd, argv, name) {
  const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; if (err.length > 1 << 20) err = err.slice(-65536); });
  p.stdout.resume();
  const done = new Promise((res) => p.once('exit', (code, signal) => res({ code, signal })));
  return { p, name, done, stderr: () => err };
}

async function waitFor(what, test, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function prove(what, fn) {
  try {
    const detail = fn();
    proofs.push({ what, ok: true, detail });
    say(`  ${green('PROVED')} ${what}${detail ? ` (${detail})` : ''}`);
  } catch (err) {
    proofs.push({ what, ok: false, detail: err.message });
    say(`  ${red('FAILED')} ${what}: ${err.message}`);
  }
}

function compare(a, b) {
  const r = sh(BIN('dr-verify'), ['compare', a, b, '--json'], { ok: [0, 1], quiet: true });
  if (r.code !== 0) throw new Error(`differs: ${r.stdout.slice(0, 300)}`);
  return `${mib(statSync(a).size)} identical`;
}

const sha256 = (file) => sh('sha256sum', [file], { quiet: true }).stdout.split(' ')[0];
const canMount = () => process.getuid?.() === 0 && existsSync('/dev/loop-control') && spawnSync('which', ['nbdfuse']).status === 0;

async function main() {
  say(bold('drkit main job') + ` in ${work}`);
  const volume = join(A, 'vol0.img');
  const fd = openSync(volume, 'w');
  ftruncateSync(fd, SIZE_MIB * 1048576);
  closeSync(fd);
  const journalA = join(A, 'journal');
  const journalB = join(B, 'journal');
  const sock = join(A, 'nbd.sock');
  const control = join(A, 'control.sock');
  account.push(`sample volume: ${SIZE_MIB} MiB sparse file`);

  step('site A: dr-tap nbd in front of the volume, journaling every write');
  const tap = background(BIN('dr-tap'), ['nbd', '--export', `vol0=${volume}`, '--socket', sock, '--journal', journalA, '--control', control], 'dr-tap');
  cleanups.push(async () => { if (tap.p.exitCode === null) { tap.p.kill('SIGTERM'); await tap.done; } });
  await waitFor('the tap socket', () => existsSync(sock) && existsSync(control));
  say(`  serving vol0 on ${sock}`);

  step('ship: dr-ship send --follow over ssh to site B');
  let sshd = null;
  let transport;
  try {
    sshd = await startSshd();
    cleanups.push(() => sshd.stop());
    transport = [...sshd.ssh, `env PATH=${process.env.PATH} ${BIN('dr-ship')} receive ${journalB}`];
    account.push(`transport: ssh to a throwaway sshd on 127.0.0.1:${sshd.port}`);
    say(`  sshd on 127.0.0.1:${sshd.port}`);
  } catch (err) {
    transport = [BIN('dr-ship'), 'receive', journalB];
    account.push(`transport: local pipe (sshd could not start: ${err.message})`);
    say(`  sshd could not start (${err.message}); falling back to a local pipe`);
  }
  // The sender waits for the store to exist; it is created by the tap's first write.
  await waitFor('the journal store', () => existsSync(join(journalA, 'store.json')));
  const ship = background(BIN('dr-ship'), ['send', journalA, '--follow', '--rpo', '30s', '--json', '--', ...transport], 'dr-ship');
  cleanups.push(async () => { if (ship.p.exitCode === null) { ship.p.kill('SIGTERM'); await ship.done; } });

  step('site A: a real client writes to the volume');
  const refs = {};
  const t0 = Date.now();
  let timePoint;
  if (CLIENT === 'kernel' || (CLIENT === 'auto' && canMount())) {
    timePoint = await kernelClient(sock, control, refs, volume);
    account.push('client: the Linux kernel (nbdfuse + loop device + ext4, files written, fsfreeze for app-consistent marks)');
  } else {
    timePoint = await qemuClient(sock, control, refs, volume);
    account.push(`client: qemu-io (${CLIENT === 'qemu' ? 'chosen with --client qemu' : 'mounting is not possible on this machine'})`);
  }
  const clientMs = Date.now() - t0;

  step('stop the tap (SIGTERM: finish in-flight, flush, trailer) and let shipping catch up');
  tap.p.kill('SIGTERM');
  const tapExit = await tap.done;
  if (tapExit.code !== 0) throw new Error(`dr-tap exited ${tapExit.code}: ${tap.stderr().trim()}`);
  const lastA = Number(sh(BIN('dr-journal'), ['last', journalA], { quiet: true }).stdout.trim());
  const shipStart = Date.now();
  await waitFor('site B to catch up', () => {
    if (!existsSync(join(journalB, 'store.json'))) return false;
    const r = spawnSync(BIN('dr-journal'), ['last', journalB], { encoding: 'utf8' });
    return r.status === 0 && Number(r.stdout.trim()) === lastA;
  }, 120_000);
  const catchUpMs = Date.now() - shipStart;
  ship.p.kill('SIGTERM');
  await ship.done;
  const lags = ship.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l); } catch { return null; } })
    .filter((j) => j && typeof j.lag_ms === 'number').map((j) => j.lag_ms).sort((a, b) => a - b);
  const pct = (p) => (lags.length ? lags[Math.min(lags.length - 1, Math.floor((lags.length * p) / 100))] : 0);
  const lsA = JSON.parse(sh(BIN('dr-journal'), ['ls', journalA, '--json'], { quiet: true }).stdout);
  account.push(`journal at site A: ${lsA.records} records, seq ${lsA.firstSeq}..${lsA.lastSeq}, ${mib(lsA.segmentBytes)} in ${lsA.segments.length} segment(s), ${mib(lsA.writeBytes)} of writes`);
  account.push(`shipping: site B caught up ${secs(catchUpMs)} after the tap stopped; lag p50 ${pct(50)}ms, p99 ${pct(99)}ms over ${lags.length} status lines`);
  account.push(`client work: ${secs(clientMs)}`);

  step('site B: the journal arrived whole');
  prove('site B holds every record of site A', () => {
    const a = createHash('sha256').update(sh(BIN('dr-journal'), ['cat', journalA], { quiet: true, input: '' }).stdout).digest('hex');
    const b = createHash('sha256').update(sh(BIN('dr-journal'), ['cat', journalB], { quiet: true, input: '' }).stdout).digest('hex');
    const lastB = Number(sh(BIN('dr-journal'), ['last', journalB], { quiet: true }).stdout.trim());
    if (lastB !== lastA) throw new Error(`last seq ${lastB} at B, ${lastA} at A`);
    return `last seq ${lastB} on both`;
  });
  prove('dr-verify journal: every segment, checksum and index at site B', () => {
    sh(BIN('dr-verify'), ['journal', journalB], { quiet: true });
    return 'valid';
  });

  step('site B: dr-apply keeps a replica');
  const replica = join(B, 'replica.img');
  const applyStart = Date.now();
  sh(BIN('dr-apply'), ['--journal', journalB, '--target', `vol0=${replica}`], { quiet: true });
  account.push(`dr-apply: replica built in ${secs(Date.now() - applyStart)}`);
  prove('replica at site B equals the volume at site A (byte for byte)', () => compare(replica, volume));
  prove('replica vs source by exchanged chunk hashes (what two sites do over ssh)', () => {
    const hashes = sh(BIN('dr-verify'), ['hashes', replica], { quiet: true }).raw;
    sh(BIN('dr-verify'), ['compare', volume, '--against-hashes', '-'], { input: hashes, quiet: true });
    return `${hashes.length} bytes of hashes instead of ${mib(statSync(volume).size)}`;
  });

  step('site B: restore to bookmarks and to a time');
  for (const [mark, ref] of Object.entries(refs)) {
    const out = join(B, `restore-${mark}.img`);
    const t = Date.now();
    sh(BIN('dr-restore'), [journalB, '--at', `mark:${mark}`, '--out', out], { quiet: true });
    prove(`restore at bookmark ${mark} equals the volume as it was then (${secs(Date.now() - t)})`, () => compare(out, ref));
    if (CLIENT !== 'qemu' && canMount()) prove(`the file system restored at ${mark} is clean (e2fsck -fn)`, () => { sh('e2fsck', ['-fn', out], { quiet: true }); return 'clean'; });
  }
  if (timePoint) {
    const out = join(B, 'restore-time.img');
    sh(BIN('dr-restore'), [journalB, '--at', timePoint.iso, '--out', out], { quiet: true });
    prove(`restore at time ${timePoint.iso} equals the volume as it was then`, () => compare(out, timePoint.ref));
  }
  prove('dr-verify restore checks the latest point against the source without writing it out', () => {
    sh(BIN('dr-verify'), ['restore', journalB, '--at', 'latest', '--against', volume], { quiet: true });
    return 'equal';
  });
}

/** The kernel as the client: ext4 on a loop device over nbdfuse over dr-tap. */
async function kernelClient(sock, control, refs, volume) {
  const fuseDir = join(work, 'fuse');
  const mnt = join(work, 'mnt');
  mkdirSync(fuseDir, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  const fuse = background('nbdfuse', [fuseDir, '--unix', sock], 'nbdfuse');
  cleanups.push(async () => { spawnSync('fusermount3', ['-u', fuseDir]); if (fuse.p.exitCode === null) fuse.p.kill('SIGTERM'); await fuse.done; });
  await waitFor('nbdfuse', () => existsSync(join(fuseDir, 'nbd')));
  const loop = sh('losetup', ['-f', '--show', join(fuseDir, 'nbd')], { quiet: true }).stdout.trim();
  cleanups.push(() => spawnSync('losetup', ['-d', loop]));
  sh('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', loop], { quiet: true });
  sh('mount', [loop, mnt], { quiet: true });
  cleanups.push(() => spawnSync('umount', [mnt]));
  say(`  ext4 on ${loop} (nbdfuse -> dr-tap) mounted at ${mnt}`);
  let bytes = 0;
  const writeFiles = (tag, n, size) => {
    mkdirSync(join(mnt, tag), { recursive: true });
    for (let i = 0; i < n; i++) {
      const data = i % 3 === 0 ? Buffer.alloc(size, `${tag}-${i}\n`) : randomBytes(size);
      writeFileSync(join(mnt, tag, `file-${i}.bin`), data);
      bytes += size;
    }
  };
  const appMark = async (name) => {
    sh('fsfreeze', ['-f', mnt], { quiet: true });
    try {
      sh(BIN('dr-tap'), ['mark', '--control', control, name, '--kind', 'app'], { quiet: true });
      refs[name] = join(work, `ref-${name}.img`);
      copyFileSync(volume, refs[name]);
    } finally {
      sh('fsfreeze', ['-u', mnt], { quiet: true });
    }
    say(`  app-consistent bookmark ${name} (fsfreeze, dr-tap mark, reference copy)`);
  };
  writeFiles('monday', 12, 1 << 20);
  sh('sync', [], { quiet: true });
  await appMark('after-monday');
  writeFiles('tuesday', 8, 512 << 10);
  rmSync(join(mnt, 'monday', 'file-1.bin'));
  sh('fstrim', [mnt], { ok: [0, 1, 32, 64], quiet: true });
  // A point in time that is not a bookmark: freeze, note the time, keep a reference.
  sh('fsfreeze', ['-f', mnt], { quiet: true });
  await sleep(20);
  const iso = new Date().toISOString();
  await sleep(20);
  const timeRef = join(work, 'ref-time.img');
  copyFileSync(volume, timeRef);
  sh('fsfreeze', ['-u', mnt], { quiet: true });
  say(`  noted the time ${iso} and the volume as it was then`);
  writeFiles('wednesday', 10, 1 << 20);
  sh('sync', [], { quiet: true });
  await appMark('after-wednesday');
  sh('umount', [mnt], { quiet: true });
  spawnSync('losetup', ['-d', loop]);
  spawnSync('fusermount3', ['-u', fuseDir]);
  await fuse.done;
  account.push(`files written through ext4: ${mib(bytes)}`);
  return { iso, ref: timeRef };
}

/** Where the kernel cannot be used: qemu-io writes patterns through dr-tap. */
async function qemuClient(sock, control, refs, volume) {
  const url = `nbd+unix:///vol0?socket=${sock}`;
  const io = (...cmds) => sh('qemu-io', ['-f', 'raw', url, ...cmds.flatMap((c) => ['-c', c])], { quiet: true });
  io('write -P 0x11 0 8M', 'write -P 0x22 16M 4M', 'flush');
  sh(BIN('dr-tap'), ['mark', '--control', control, 'first', '--kind', 'app'], { quiet: true });
  refs.first = join(work, 'ref-first.img');
  copyFileSync(volume, refs.first);
  io('write -z 0 1M', 'discard 2M 1M', 'write -P 0x33 100k 300k', 'flush');
  await sleep(20);
  const iso = new Date().toISOString();
  await sleep(20);
  const timeRef = join(work, 'ref-time.img');
  copyFileSync(volume, timeRef);
  io('write -P 0x44 4M 8M', 'flush');
  sh(BIN('dr-tap'), ['mark', '--control', control, 'second', '--kind', 'app'], { quiet: true });
  refs.second = join(work, 'ref-second.img');
  copyFileSync(volume, refs.second);
  return { iso, ref: timeRef };
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  say(red(`\nthe main job stopped: ${err.message}`));
}
for (const c of cleanups.reverse()) {
  try { await c(); } catch { /* best effort */ }
}
const bad = proofs.filter((p) => !p.ok);
say(bold('\n== account'));
for (const line of account) say(`  ${line}`);
say(`  proofs: ${proofs.length - bad.length} of ${proofs.length} held; total time ${secs(Date.now() - started)}`);
if (KEEP) say(`  everything is kept in ${work}`);
else rmSync(work, { recursive: true, force: true });
if (failed || bad.length > 0 || proofs.length === 0) {
  say(red('main job: FAILED'));
  process.exit(1);
}
say(green('main job: every proof held'));
