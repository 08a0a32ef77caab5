// EarlyWriteback (src/image/writeback.ts): the background fdatasyncs a restore or an
// apply starts while it writes. They start only once enough bytes were written, one at
// a time; settle() waits for the running one; close() while one runs closes its
// descriptor only when it ends; a file that cannot be opened gives no writeback.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EarlyWriteback } from '../../src/image/writeback.js';

const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;

t.test('fdatasync every N bytes, settled and closed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dr-writeback-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'img');
  const fd = fs.openSync(file, 'w');
  t.teardown(() => fs.closeSync(fd));
  const before = fdCount();
  const wb = EarlyWriteback.open(file, 1 << 20)!;
  t.ok(wb, 'opened');
  t.equal(fdCount(), before + 1, 'one descriptor of its own');
  const chunk = Buffer.alloc(256 * 1024, 7);
  for (let i = 0; i < 16; i++) {
    fs.writeSync(fd, chunk, 0, chunk.length, i * chunk.length);
    wb.wrote(chunk.length);
  }
  await wb.settle();
  // a hint running when closed: its descriptor goes once it ends
  for (let i = 0; i < 4; i++) wb.wrote(chunk.length);
  wb.close();
  await new Promise((r) => setTimeout(r, 200));
  t.equal(fdCount(), before, 'its descriptor is closed');
  t.equal(fs.statSync(file).size, 16 * chunk.length, 'the file is what was written');
  wb.close();
  t.equal(EarlyWriteback.open(path.join(dir, 'missing')), null, 'no file: no writeback (the writer\'s own fdatasync is what counts)');
});
