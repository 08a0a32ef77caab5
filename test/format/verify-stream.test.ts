// dr-verify stream, as a user runs it: every golden fixture accepted, truncated and
// bit-flipped streams rejected with the right code, offset and exit status.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { run } from '../helpers/run.js';

const fixture = (n: string) => new URL(`../fixtures/${n}.drj`, import.meta.url).pathname;

t.test('accepts every complete golden fixture', async (t) => {
  for (const name of ['empty', 'small', 'group', 'ignorable']) {
    const r = await run('dr-verify', ['stream', fixture(name)]);
    t.equal(r.code, 0, `${name}: exit 0`);
    t.match(r.stdout.toString(), /result:\s+valid/);
    t.equal(r.stderr, '', `${name}: nothing on stderr`);
  }
});

t.test('summary of a group stream (--json, from stdin)', async (t) => {
  const r = await run('dr-verify', ['stream', '--json'], { input: readFileSync(fixture('group')) });
  t.equal(r.code, 0);
  const s = JSON.parse(r.stdout.toString());
  t.equal(s.volumes.length, 2);
  t.same(s.volumes.map((v: { name: string }) => v.name), ['db', 'logs']);
  t.same(s.records, { volume: 2, write: 3, zero: 1, flush: 1, mark: 2, signature: 1, end: 1 });
  t.equal(s.firstSeq, 1000);
  t.equal(s.lastSeq, 1007);
  t.same(s.marks.map((m: { name: string; kind: string }) => [m.name, m.kind]), [['hourly 10:00', 'crash'], ['före-upgrade', 'user']]);
  t.equal(s.complete, true);
});

t.test('a live stream without END is truncated: exit 2, DR_TRUNCATED', async (t) => {
  const r = await run('dr-verify', ['stream', fixture('live')]);
  t.equal(r.code, 2);
  t.match(r.stderr, /^dr-verify: error: stream ends without its END trailer at byte 197 \(last good seq 1\) \(DR_TRUNCATED\)\n$/);
});

t.test('truncated mid-record and bit-flipped: code and offset', async (t) => {
  const small = readFileSync(fixture('small'));
  const cut = await run('dr-verify', ['stream', '-'], { input: small.subarray(0, 200) });
  t.equal(cut.code, 2);
  t.match(cut.stderr, /truncated record at byte 191 \(last good seq 1\) \(DR_TRUNCATED\)/);
  const flipped = Buffer.from(small);
  flipped[0xb8]! ^= 0x20; // inside the data of seq 1 ("drkit!")
  const bad = await run('dr-verify', ['stream', '-'], { input: flipped });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /record checksum mismatch \(seq 1\) at byte 135 \(last good seq 0\) \(DR_BAD_CHECKSUM\)/);
  t.equal(bad.stderr.split('\n').filter(Boolean).length, 1, 'one line on stderr');
});

t.test('usage errors exit 2 with a hint; --help and --version work', async (t) => {
  const u = await run('dr-verify', ['stream', 'a', 'b']);
  t.equal(u.code, 2);
  t.match(u.stderr, /\(see dr-verify --help\) \(DR_USAGE\)/);
  const h = await run('dr-verify', ['--help']);
  t.equal(h.code, 0);
  t.match(h.stdout.toString(), /stream \[file\]/);
  const v = await run('dr-verify', ['--version']);
  t.match(v.stdout.toString(), /^\d+\.\d+\.\d+/);
  const missing = await run('dr-verify', ['stream', '/nonexistent/x.drj']);
  t.equal(missing.code, 3);
  t.match(missing.stderr, /cannot open \/nonexistent\/x.drj: no such file or directory \(DR_IO\)/);
});

t.test('yargs, bundled by the build, still finds its own locale files', async (t) => {
  // scripts/bundle-yargs.mjs: inside the bundle, yargs must look where the package is
  const de = await run('dr-verify', ['--help'], { env: { LANG: 'de_DE.UTF-8', LC_ALL: '', LC_MESSAGES: '' } });
  t.equal(de.code, 0);
  t.match(de.stdout.toString(), /^Kommandos:$/m);
  const fr = await run('dr-verify', ['stream', 'a', 'b'], { env: { LC_ALL: 'fr_FR.UTF-8' } });
  t.equal(fr.code, 2);
  t.match(fr.stderr, /Argument inconnu : b \(see dr-verify --help\) \(DR_USAGE\)/);
});

t.test('NO_COLOR honoured; colour only when forced', async (t) => {
  const plain = await run('dr-verify', ['stream', fixture('live')], { env: { NO_COLOR: '1' } });
  t.notMatch(plain.stderr, /\u001b\[/);
  const forced = await run('dr-verify', ['stream', fixture('live')], { env: { NO_COLOR: '', FORCE_COLOR: '1' } });
  t.match(forced.stderr, /\u001b\[/);
});
