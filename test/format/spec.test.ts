// The spec cannot drift from the code: the annotated hexdump in docs/FORMAT.md is the
// golden fixture byte for byte, and man/dr-journal.5 is generated from docs/FORMAT.md.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const root = new URL('../../', import.meta.url);

t.test('FORMAT.md hexdump equals test/fixtures/small.drj', async (t) => {
  const md = readFileSync(new URL('docs/FORMAT.md', root), 'utf8');
  const fixture = readFileSync(new URL('test/fixtures/small.drj', root));
  const bytes: number[] = [];
  let lines = 0;
  for (const line of md.split('\n')) {
    const m = /^([0-9a-f]{6}) {2}((?:[0-9a-f]{2} ?)+)/.exec(line);
    if (!m) continue;
    lines++;
    const off = parseInt(m[1]!, 16);
    t.equal(off, bytes.length, `line at 0x${m[1]} continues the dump without gaps`);
    for (const h of m[2]!.trim().split(' ')) bytes.push(parseInt(h, 16));
  }
  t.ok(lines > 50, 'the dump is there');
  t.ok(Buffer.from(bytes).equals(fixture), 'every byte of the dump matches the fixture');
});

t.test('man/dr-journal.5 is generated from docs/FORMAT.md', async (t) => {
  const generated = execFileSync('node', ['scripts/md2man.mjs', 'docs/FORMAT.md'], { cwd: root, encoding: 'utf8' });
  t.equal(readFileSync(new URL('man/dr-journal.5', root), 'utf8'), generated, 'regenerate with: node scripts/md2man.mjs docs/FORMAT.md > man/dr-journal.5');
});
