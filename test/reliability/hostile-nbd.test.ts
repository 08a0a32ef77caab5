// Malformed NBD traffic from raw socket clients against dr-tap nbd and dr-restore
// --serve, in seeded random order, while a well-behaved client (qemu-io on the tap,
// nbdcopy on the restore server) keeps working and checking its bytes: bad magic in
// every phase, oversized options and requests, unknown options and commands, reads
// and writes past the end, requests with their payload cut short, half-closed and
// reset connections. Each hostile session must end within a time limit (an error
// reply or the server closing it: no hang), the server must stay up and keep serving,
// and at the end the tap stops cleanly with a valid journal of exactly the good
// client's writes, and the restore server's store is unchanged.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawNbd, IHAVEOPT } from '../helpers/tap-nbdraw.js';
import { requirePeer, sh, startTap } from '../helpers/tap-run.js';
import { figures, killLeftovers, rand, replay, rounds, runBin, seedFor, sleep, start, tempDir, waitFor } from '../helpers/reliability-common.js';
import { makeWorkload } from '../helpers/workload.js';
import { treeDigest } from '../helpers/restore-store.js';

for (const p of ['qemu-io', 'nbdcopy']) requirePeer(p);
t.teardown(killLeftovers);
const f = figures(t, 'hostile-nbd');
t.setTimeout(900_000);

const KINDS = [
  'greeting-then-close', 'bad-client-flags', 'bad-option-magic', 'oversized-option', 'unknown-option', 'unknown-export',
  'half-close-in-options', 'bad-request-magic', 'unknown-command', 'read-past-end', 'oversized-read', 'write-cut-short',
  'oversized-write', 'random-bytes-after-go', 'half-close-after-go', 'reset-mid-request', 'random-bytes-at-start',
] as const;

/** One hostile session; resolves with what happened. Throws on a hang (no reply and no close within the limit). */
async function session(path: string, exportName: string, size: number, kind: (typeof KINDS)[number], r: () => number): Promise<string> {
  const c = await RawNbd.connect(path);
  const LIMIT = 8000;
  const closedOrReply = async (what: string, reply: () => Promise<unknown>): Promise<string> => {
    try {
      await reply();
      return `${what}: replied`;
    } catch (err) {
      if (c.closed) return `${what}: closed`;
      throw new Error(`${what}: ${(err as Error).message}`);
    }
  };
  try {
    switch (kind) {
      case 'greeting-then-close':
        await c.read(18, LIMIT);
        c.destroy();
        return 'closed by the client';
      case 'random-bytes-at-start': {
        await c.read(18, LIMIT);
        const junk = Buffer.alloc(1 + Math.floor(r() * 4096));
        for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(r() * 256);
        c.write(junk);
        // the first 4 bytes are the client flags: a random option may follow; the server must not hang
        c.sock.end();
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('random bytes at start');
      }
      case 'bad-client-flags': {
        await c.read(18, LIMIT);
        c.write(Buffer.from([0xff, 0xff, 0xff, 0xfc]));
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('bad client flags');
      }
      case 'bad-option-magic': {
        await c.hello();
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(IHAVEOPT ^ 1n, 0);
        h.writeUInt32BE(7, 8);
        c.write(h);
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('bad option magic');
      }
      case 'oversized-option': {
        await c.hello();
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(IHAVEOPT, 0);
        h.writeUInt32BE(7, 8);
        h.writeUInt32BE(0xffffffff, 12);
        c.write(h);
        c.write(Buffer.alloc(4096, 0x41));
        return closedOrReply('oversized option', async () => {
          const rep = await c.optionReply();
          if (!(rep.type & 0x80000000)) throw new Error(`accepted: reply type ${rep.type}`);
          if (!(await c.waitClosed(LIMIT))) throw new Error('kept reading a 4 GiB option');
        });
      }
      case 'unknown-option': {
        await c.hello();
        c.sendOption(0x1000 + Math.floor(r() * 1000), Buffer.alloc(Math.floor(r() * 64), 0x42));
        const rep = await c.optionReply();
        if (rep.type !== 0x80000001) throw new Error(`unknown option: reply ${rep.type.toString(16)}, wanted NBD_REP_ERR_UNSUP`);
        // the connection is still usable: go on to a real export and read from it
        c.sendOption(7, RawNbd.goData(exportName));
        for (;;) {
          const x = await c.optionReply();
          if (x.type === 1) break;
          if (x.type & 0x80000000) throw new Error(`GO refused after an unknown option: ${x.type.toString(16)}`);
        }
        c.write(c.request(0, 0, 512, 7));
        const rr = await c.reply(512);
        if (rr.error !== 0) throw new Error(`read after an unknown option: error ${rr.error}`);
        c.write(c.request(2, 0, 0, 8)); // DISC
        return 'unsupported, then served';
      }
      case 'unknown-export': {
        await c.hello();
        c.sendOption(7, RawNbd.goData(`no-such-export-${Math.floor(r() * 1000)}`));
        const rep = await c.optionReply();
        if (rep.type !== 0x80000006) throw new Error(`unknown export: reply ${rep.type.toString(16)}, wanted NBD_REP_ERR_UNKNOWN`);
        c.destroy();
        return 'unknown export refused';
      }
      case 'half-close-in-options': {
        await c.hello();
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(IHAVEOPT, 0);
        h.writeUInt32BE(7, 8);
        h.writeUInt32BE(100, 12);
        c.write(h);
        c.write(Buffer.alloc(10));
        c.sock.end(); // half-close with 90 bytes of the option missing
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('half-closed inside an option');
      }
      default:
        break;
    }
    // transmission phase
    await c.go(exportName);
    switch (kind) {
      case 'bad-request-magic':
        c.write(c.request(0, 0, 512, 1, 0, 0x12345678));
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('bad request magic');
      case 'unknown-command': {
        c.write(c.request(50 + Math.floor(r() * 1000), 0, 512, 2));
        const rep = await c.reply();
        if (rep.error === 0) throw new Error('unknown command accepted');
        return `unknown command: error ${rep.error}`;
      }
      case 'read-past-end': {
        c.write(c.request(0, size - 256, 512, 3));
        const rep = await c.reply(512);
        if (rep.error === 0) throw new Error('read past the end accepted');
        return `read past the end: error ${rep.error}`;
      }
      case 'oversized-read': {
        c.write(c.request(0, 0, 0xffffffff, 4));
        return closedOrReply('oversized read', async () => {
          const rep = await c.reply(0);
          if (rep.error === 0) throw new Error('a 4 GiB read accepted');
        });
      }
      case 'oversized-write': {
        c.write(c.request(1, 0, 0xfffffff0, 5));
        c.write(Buffer.alloc(65536, 0xee));
        c.sock.end();
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('oversized write, half-closed');
      }
      case 'write-cut-short': {
        c.write(c.request(1, 4096, 65536, 6));
        c.write(Buffer.alloc(1000, 0xee));
        c.sock.end();
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('write cut short');
      }
      case 'random-bytes-after-go': {
        const junk = Buffer.alloc(28 + Math.floor(r() * 8192));
        for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(r() * 256);
        c.write(junk);
        c.sock.end();
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('random bytes after GO');
      }
      case 'half-close-after-go':
        c.sock.end();
        return (await c.waitClosed(LIMIT)) ? 'closed' : hang('half-closed after GO');
      case 'reset-mid-request':
        c.write(c.request(1, 0, 4096, 9).subarray(0, 13));
        c.sock.destroy(); // unix sockets have no RST: an abrupt close mid-request
        return 'reset';
      default:
        throw new Error(`unhandled kind ${kind}`);
    }
  } finally {
    c.destroy();
  }
}

function hang(what: string): never {
  throw new Error(`the server neither answered nor closed the connection: ${what}`);
}

/** The hostile barrage: `n` sessions of random kinds, two at a time. */
async function barrage(t: { fail(msg: string): void }, path: string, exportName: string, size: number, seed: number, n: number, area: string): Promise<void> {
  const r = rand(seed);
  const plan = Array.from({ length: n }, () => KINDS[Math.floor(r() * KINDS.length)]!);
  let i = 0;
  const worker = async () => {
    for (;;) {
      const k = i++;
      const kind = plan[k];
      if (!kind) return;
      f.malformed++;
      try {
        await session(path, exportName, size, kind, rand(seed + k));
      } catch (err) {
        t.fail(`hostile session ${k} (${kind}): ${(err as Error).message} ${replay(area, `session ${k}`)}`);
      }
    }
  };
  await Promise.all([worker(), worker()]);
}

function qemuIo(uri: string, cmds: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    const c = spawn('qemu-io', ['-f', 'raw', uri, ...cmds.flatMap((x) => ['-c', x])], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ ok: code === 0 && !/fail|error/i.test(out), out }));
  });
}

t.test('dr-tap nbd: a raw hostile barrage while qemu-io keeps writing and verifying', async (t) => {
  const seed = seedFor('nbd-tap');
  const r = rand(seed);
  const dir = tempDir(t, 'drkit-rel-nbd-');
  const disk = join(dir, 'd.img');
  const sock = join(dir, 'nbd.sock');
  const J = join(dir, 'J');
  const SIZE = 4 << 20;
  sh('truncate', ['-s', String(SIZE), disk]);
  const tap = await startTap(['nbd', '--export', `d=${disk}`, '--socket', sock, '--journal', J], { stdoutFile: null, waitFor: sock });
  t.teardown(() => tap.child.kill('SIGKILL'));
  const uri = `nbd+unix:///d?socket=${sock}`;
  let stop = false;
  let goodOps = 0;
  const ref = Buffer.alloc(SIZE);
  const good = (async () => {
    let p = 1;
    while (!stop) {
      const len = 4096 * (1 + Math.floor(r() * 16));
      const off = Math.floor(r() * (SIZE / 4096 - 16)) * 4096;
      p = (p % 250) + 1;
      const res = await qemuIo(uri, [`write -P ${p} ${off} ${len}`, 'flush', `read -P ${p} ${off} ${len}`]);
      t.ok(res.ok, `the well-behaved client is served and reads back its write ${res.ok ? '' : res.out.slice(0, 300)} ${replay('nbd-tap')}`);
      if (res.ok) {
        ref.fill(p, off, off + len);
        goodOps++;
      }
    }
  })();
  await barrage(t, sock, 'd', SIZE, seed, rounds(60, 400), 'nbd-tap');
  stop = true;
  await good;
  t.ok(goodOps >= 3, `the good client kept working during the barrage (${goodOps} write/flush/read rounds)`);
  t.equal(tap.child.exitCode, null, 'the tap is still running');
  const res = await tap.stop('SIGTERM');
  t.equal(res.code, 0, `dr-tap stops cleanly after the barrage ${res.stderr.slice(-300)}`);
  t.notMatch(res.stderr, /internal error|TypeError|RangeError|\n\s+at /, 'no crash report on stderr');
  t.ok(readFileSync(disk).equals(ref), `the volume holds exactly the good client's writes ${replay('nbd-tap')}`);
  f.bytesCompared += SIZE;
  const v = await runBin('dr-verify', ['journal', J]);
  t.equal(v.code, 0, `the journal is valid ${v.stderr.trim()}`);
  const latest = join(dir, 'latest.img');
  const rl = await runBin('dr-restore', [J, '--at', 'latest', '--out', latest]);
  t.equal(rl.code, 0, 'restore latest');
  t.ok(readFileSync(latest).equals(ref), `the journal holds exactly the good client's writes ${replay('nbd-tap')}`);
  f.bytesCompared += SIZE;
});

t.test('dr-restore --serve: a raw hostile barrage while nbdcopy keeps reading the right bytes', async (t) => {
  const seed = seedFor('nbd-restore');
  const dir = tempDir(t, 'drkit-rel-nbdr-');
  const w = makeWorkload({ seed, volumes: [{ name: 'vol', size: 4 << 20, blockSize: 4096 }], records: 200, markEvery: 50 });
  const store = join(dir, 'J');
  const a = await runBin('dr-journal', ['append', store], { input: w.stream });
  t.equal(a.code, 0, `store built ${a.stderr.trim()}`);
  const before = treeDigest(store);
  const sock = join(dir, 'r.sock');
  const mark = w.marks[1]!;
  const srv = start('dr-restore', [store, '--serve', '--socket', sock, '--at', 'latest', '--at', `mark:${mark.name}`], { stdin: 'ignore' });
  await waitFor('the restore server', () => srv.exited || /listening on/.test(srv.stderr()), 30_000);
  await sleep(100);
  t.notOk(srv.exited, `dr-restore --serve runs ${srv.stderr()}`);
  // the export names: ask the server
  const list = sh('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${sock}`]);
  const names = (JSON.parse(list) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']);
  t.equal(names.length, 2, `two exports: ${names.join(', ')}`);
  const latestName = names[0]!;
  const markName = names[1]!;
  let stop = false;
  let reads = 0;
  const good = (async () => {
    let k = 0;
    while (!stop) {
      const which = k++ % 2;
      const out = join(dir, `copy-${which}.img`);
      const res = await runBin('nbdcopy', [`nbd+unix:///${which === 0 ? latestName : markName}?socket=${sock}`, out], { timeoutMs: 30_000 });
      const want = which === 0 ? w.final[0]! : mark.images[0]!;
      const same = res.code === 0 && readFileSync(out).equals(want);
      f.bytesCompared += want.length;
      t.ok(same, `nbdcopy reads ${which === 0 ? 'latest' : `mark ${mark.name}`} byte for byte during the barrage ${res.stderr.trim()} ${replay('nbd-restore')}`);
      if (same) reads++;
    }
  })();
  await barrage(t, sock, latestName, w.volumes[0]!.size, seed, rounds(50, 400), 'nbd-restore');
  stop = true;
  await good;
  t.ok(reads >= 2, `the good client kept reading during the barrage (${reads} full copies)`);
  t.notOk(srv.exited, 'the restore server is still running');
  srv.child.kill('SIGTERM');
  const res = await srv.done;
  t.ok(res.code === 0 || res.code === 3, `dr-restore --serve stops on SIGTERM (${res.code}) ${res.stderr.slice(-300)}`);
  t.notMatch(res.stderr, /internal error|TypeError|RangeError|\n\s+at /, 'no crash report on stderr');
  t.same(treeDigest(store), before, 'the store was not modified');
});
