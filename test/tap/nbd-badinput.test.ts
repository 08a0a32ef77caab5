// Bad input from NBD clients and on the command line: the right NBD error or a
// clear one-line error, the server keeps serving the other clients, and what was
// journaled stays complete.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replayFiles } from '../helpers/tap-replay.js';
import { RawNbd } from '../helpers/tap-nbdraw.js';
import { run } from '../helpers/run.js';
import { startTap } from '../helpers/tap-run.js';

const SIZE = 1024 * 1024;
const EPERM = 1, EINVAL = 22, ENOSPC = 28;
const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6, BLOCK_STATUS: 7 };

t.test('protocol errors from a raw client', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapb-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'd.img');
  writeFileSync(disk, Buffer.alloc(SIZE));
  const sock = path.join(dir, 's.sock');
  const stream = path.join(dir, 'j.drj');
  const tap = await startTap(['nbd', '--export', `d=${disk}`, '--socket', sock], { stdoutFile: stream, waitFor: sock });
  t.teardown(() => tap.child.kill('SIGKILL'));
  const clients: RawNbd[] = [];
  t.teardown(() => clients.forEach((c) => c.destroy()));
  const connect = async () => {
    const c = await RawNbd.connect(sock);
    clients.push(c);
    return c;
  };

  await t.test('negotiation', async (t) => {
    const c = await connect();
    const hs = await c.hello();
    t.equal(hs & 3, 3, 'handshake flags: fixed newstyle and no zeroes');
    c.sendOption(99);
    t.equal((await c.optionReply()).type, 0x80000001, 'unknown option: NBD_REP_ERR_UNSUP');
    c.sendOption(8);
    t.equal((await c.optionReply()).type, 0x80000001, 'STRUCTURED_REPLY: NBD_REP_ERR_UNSUP (simple replies only)');
    c.sendOption(3, Buffer.from('junk'));
    t.equal((await c.optionReply()).type, 0x80000003, 'LIST with data: NBD_REP_ERR_INVALID');
    c.sendOption(6, RawNbd.goData('nope'));
    t.equal((await c.optionReply()).type, 0x80000006, 'INFO of an unknown export: NBD_REP_ERR_UNKNOWN');
    c.sendOption(7, Buffer.from([0, 0, 0, 9, 1]));
    t.equal((await c.optionReply()).type, 0x80000003, 'GO with a malformed payload: NBD_REP_ERR_INVALID');
    c.sendOption(6, RawNbd.goData('d', [1, 3]));
    const infos: number[] = [];
    let size = 0;
    let bs: number[] = [];
    for (;;) {
      const r = await c.optionReply();
      if (r.type === 1) break;
      const info = r.data.readUInt16BE(0);
      infos.push(info);
      if (info === 0) size = Number(r.data.readBigUInt64BE(2));
      if (info === 3) bs = [r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10)];
    }
    t.same(infos.sort(), [0, 1, 3], 'INFO: NBD_INFO_EXPORT, NAME and BLOCK_SIZE, then ACK');
    t.equal(size, SIZE, 'export size');
    t.same(bs, [1, 4096, 32 * 1024 * 1024], 'block sizes: min 1, preferred 4096, max 32 MiB');
    c.sendOption(2);
    t.equal((await c.optionReply()).type, 1, 'ABORT: ACK');
    t.ok(await c.waitClosed(), 'then the server closes');

    const e = await connect();
    await e.hello();
    e.sendOption(1, Buffer.from('nope'));
    t.ok(await e.waitClosed(), 'EXPORT_NAME of an unknown export: connection closed');
  });

  await t.test('transmission', async (t) => {
    const c = await connect();
    const { size, flags } = await c.go('d');
    t.equal(size, SIZE);
    t.equal(flags & 0x16d, 0x16d, 'transmission flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, CAN_MULTI_CONN');
    t.equal(flags & 2, 0, 'not read-only');
    const other = await connect();
    await other.go('');

    c.write(c.request(CMD.READ, SIZE - 4096, 8192, 1));
    t.same(await c.reply(), { error: EINVAL, cookie: 1, data: Buffer.alloc(0) }, 'read past the end: EINVAL');
    c.write(Buffer.concat([c.request(CMD.WRITE, SIZE - 10, 20, 2), Buffer.alloc(20, 0xee)]));
    t.equal((await c.reply()).error, ENOSPC, 'write past the end: ENOSPC (payload consumed)');
    c.write(c.request(CMD.WRITE_ZEROES, SIZE, 1, 3));
    t.equal((await c.reply()).error, ENOSPC, 'write zeroes past the end: ENOSPC');
    c.write(c.request(CMD.TRIM, SIZE - 1, 2, 4));
    t.equal((await c.reply()).error, EINVAL, 'trim past the end: EINVAL');
    c.write(c.request(42, 0, 512, 5));
    t.equal((await c.reply()).error, EINVAL, 'unknown command: EINVAL');
    c.write(c.request(CMD.BLOCK_STATUS, 0, 512, 6));
    t.equal((await c.reply()).error, EINVAL, 'BLOCK_STATUS without structured replies: EINVAL');
    c.write(c.request(CMD.READ, 0, 64 * 1024 * 1024, 7));
    t.equal((await c.reply()).error, EINVAL, 'oversized read (64 MiB): EINVAL, nothing read');
    // an oversized write: the payload is dropped, never parsed as requests
    const big = 33 * 1024 * 1024;
    const payload = Buffer.alloc(big);
    for (let i = 0; i + 28 <= big; i += 4096) c.request(CMD.DISC, 0, 0, 99).copy(payload, i); // looks like requests
    c.write(Buffer.concat([c.request(CMD.WRITE, 0, big, 8), payload]));
    t.equal((await c.reply(0)).error, EINVAL, 'oversized write (33 MiB): EINVAL after dropping its payload');
    c.write(Buffer.concat([c.request(CMD.WRITE, 4096, 8, 9, 1), Buffer.from('drkit!\n\0')]));
    t.same(await c.reply(), { error: 0, cookie: 9, data: Buffer.alloc(0) }, 'the connection goes on: a FUA write succeeds');
    c.write(c.request(CMD.READ, 4096, 8, 10));
    t.equal((await c.reply(8)).data.toString(), 'drkit!\n\0', 'and reads back');
    c.write(c.request(CMD.FLUSH, 0, 0, 11));
    t.equal((await c.reply()).error, 0, 'flush');

    // a client that disconnects mid-request: its partial write is neither applied nor journaled
    const m = await connect();
    await m.go('d');
    m.write(Buffer.concat([m.request(CMD.WRITE, 65536, 65536, 1), Buffer.alloc(1000, 0x77)]));
    await new Promise((r) => setTimeout(r, 100));
    m.destroy();
    // a client with bad request magic is dropped
    const b = await connect();
    await b.go('d');
    b.write(b.request(CMD.READ, 0, 512, 1, 0, 0xdeadbeef));
    t.ok(await b.waitClosed(), 'bad request magic: that client is disconnected');
    // the others are still served
    other.write(other.request(CMD.READ, 4096, 8, 12));
    t.equal((await other.reply(8)).data.toString(), 'drkit!\n\0', 'another client is still served (default export "")');
    other.write(other.request(CMD.DISC, 0, 0, 13));
    t.ok(await other.waitClosed(), 'DISC: the server closes the connection');
    t.equal(readFileSync(disk).subarray(65536, 66536).every((x) => x === 0), true, 'the partial write was not applied');
  });

  const r = await tap.stop();
  t.equal(r.code, 0, 'dr-tap exits 0 after all that');
  t.match(r.stderr, /bad request magic/, 'the dropped client is reported on stderr');
  const rep = replayFiles([stream]);
  t.equal(rep.error, null, 'stream valid');
  t.ok(rep.images.get('d')!.equals(readFileSync(disk)), 'journal rebuilds the volume');
});

t.test('command-line and backing-store errors', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'drkit-tapc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const missing = await run('dr-tap', ['nbd', '--export', `d=${dir}/nope.img`, '--socket', `${dir}/s`]);
  t.equal(missing.code, 3, 'a backing file that cannot be opened: exit 3');
  t.match(missing.stderr, /^dr-tap: error: cannot open backing store .*nope\.img of export d: no such file or directory \(DR_IO\)\n$/, 'one clear line naming it');
  writeFileSync(`${dir}/d.img`, Buffer.alloc(4096));
  const noListen = await run('dr-tap', ['nbd', '--export', `d=${dir}/d.img`]);
  t.equal(noListen.code, 2, 'no --socket or --port: exit 2');
  t.match(noListen.stderr, /name --socket PATH or --port N \(DR_USAGE\)/);
  const badSpec = await run('dr-tap', ['nbd', '--export', 'novalue', '--socket', `${dir}/s`]);
  t.equal(badSpec.code, 2, 'bad --export: exit 2');
  t.match(badSpec.stderr, /bad --export "novalue": use NAME=PATH \(DR_USAGE\)/);
  const badBs = await run('dr-tap', ['nbd', '--export', `d=${dir}/d.img`, '--socket', `${dir}/s`, '--block-size', '1000']);
  t.equal(badBs.code, 2, 'bad --block-size: exit 2');
  const badMark = await run('dr-tap', ['mark', '--control', `${dir}/none.sock`, 'x']);
  t.equal(badMark.code, 3, 'mark with a control socket nobody listens on: exit 3');
  t.match(badMark.stderr, /cannot connect to control socket .*none\.sock/);
});
