// A full disk: dr-journal append on a small loop-mounted ext4 runs out of space,
// says so clearly (DR_NO_SPACE, exit 3), leaves a valid store, and appends the
// rest once space is freed.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { JournalStore } from '../../src/store/index.js';
import { decode, genStream, journal, plain, restream, tmpdir } from '../helpers/store-streams.js';

t.test('ENOSPC on a 16 MiB ext4: clear error, valid store, appendable after freeing space', async (t) => {
  const dir = tmpdir();
  const img = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  let mounted = false;
  t.teardown(() => {
    if (mounted) execFileSync('umount', [mnt]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  fs.mkdirSync(mnt);
  execFileSync('truncate', ['-s', '16M', img]);
  execFileSync('mkfs.ext4', ['-q', img]);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  mounted = true;
  const store = path.join(mnt, 'j');
  // leave about 5 MiB free
  const free = Number(execFileSync('df', ['-B1', '--output=avail', mnt]).toString().split('\n')[1]);
  const filler = path.join(mnt, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(Math.max(0, free - 5 * 1024 * 1024), 1));
  const g = genStream({ seed: 81, records: 900, flushEvery: 30, maxBlocks: 4, volumes: [{ name: 'd', size: 8 << 20 }] });
  t.ok(g.bytes.length > 6 << 20, `stream of ${g.bytes.length} bytes does not fit in 5 MiB`);
  let r = journal(['append', store, '--segment-size', '512K'], g.bytes);
  t.equal(r.status, 3, 'exit 3');
  t.match(r.err, /^dr-journal: error: .*no space left on device \(DR_NO_SPACE\)\n$/, `one clear line: ${r.err}`);
  let s = await JournalStore.open(store);
  const stored = s.lastSeq;
  t.ok(stored > 0 && stored < 900, `store holds seq 1..${stored}`);
  r = journal(['cat', store]);
  t.equal(r.status, 0, `store is valid: ${r.err}`);
  t.same(decode(r.stdout).records.map(plain), g.records.slice(0, stored).map(plain), 'what is stored is the input prefix');
  fs.unlinkSync(filler);
  r = journal(['append', store], restream(g, stored + 1));
  t.equal(r.status, 0, `appends after space is freed: ${r.err}`);
  s = await JournalStore.open(store);
  t.equal(s.lastSeq, 900);
  r = journal(['cat', store]);
  t.same(decode(r.stdout).records.map(plain), g.records.map(plain), 'every record stored once, in order');
});
