// writevAllSync: every byte at the given position, or at the descriptor's own position.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writevAllSync, writeFileDurable } from '../../src/store/files.js';

t.test('positioned, unpositioned and many-buffer writes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drkit-writeall-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'f');
  const fd = fs.openSync(file, 'w+');
  try {
    writevAllSync(fd, [Buffer.from('abc'), Buffer.alloc(0), Buffer.from('def')]);
    writevAllSync(fd, [Buffer.from('XY')], 1);
    writevAllSync(fd, [Buffer.from('gh')]); // the descriptor's position: after "abcdef"
    const many = Array.from({ length: 3000 }, (_, i) => Buffer.from([i & 0xff])); // more than IOV_MAX
    writevAllSync(fd, many, 8);
    writevAllSync(fd, [], 0);
  } finally {
    fs.closeSync(fd);
  }
  const got = fs.readFileSync(file);
  t.equal(got.subarray(0, 8).toString(), 'aXYdefgh');
  t.equal(got.length, 8 + 3000);
  for (let i = 0; i < 3000; i++) if (got[8 + i] !== (i & 0xff)) t.fail(`byte ${8 + i}`);
  writeFileDurable(path.join(dir, 'g'), [Buffer.from('12'), Buffer.from('345')]);
  t.equal(fs.readFileSync(path.join(dir, 'g'), 'utf8'), '12345');
});

t.test('a failing write throws its system error', async (t) => {
  const fd = fs.openSync('/dev/full', 'w');
  try {
    t.throws(() => writevAllSync(fd, [Buffer.from('x')]), { code: 'ENOSPC' });
  } finally {
    fs.closeSync(fd);
  }
});
