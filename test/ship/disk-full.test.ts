// The receiver's disk fills up: the sender stops with DR_NO_SPACE (no retry loop),
// and what the receiver stored is a valid prefix of the journal.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeJournal, digestJournal } from '../helpers/ship-journal.js';
import { DR_SHIP, killLeftovers, run } from '../helpers/ship-run.js';

let sshd: Sshd;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'drkit-shipfull-'));
const mnt = path.join(tmp, 'mnt');
let mounted = false;

t.before(async () => {
  sshd = await startSshd();
  // a small ext4 file system on a loop device (needs root, as the suite runs in CI)
  const img = path.join(tmp, 'fs.img');
  execFileSync('truncate', ['-s', '8M', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', img]);
  mkdirSync(mnt);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  mounted = true;
});
t.teardown(async () => {
  killLeftovers();
  await sshd?.stop();
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(tmp, { recursive: true, force: true });
});

t.test('receiver disk full: DR_NO_SPACE, the stored part is a valid prefix', async (t) => {
  const src = path.join(tmp, 'src');
  const dst = path.join(mnt, 'dst');
  // 16 MiB of random data for an 8 MiB file system
  const made = await makeJournal(src, { writes: 128, writeSize: 128 * 1024, mixed: false });
  const r = run(DR_SHIP, ['send', src, '--json', '--', ...sshd.ssh, sshd.remote(DR_SHIP, 'receive', dst)]);
  const res = await r.done;
  t.equal(res.code, 3, 'exit 3');
  t.match(res.stderr, /dr-ship: error: receiver: .*no space left on device \(DR_NO_SPACE\)/, 'one clear error line');
  t.notMatch(res.stderr, /reconnecting/, 'not retried');
  const got = await digestJournal(dst);
  t.ok(got.lastSeq > 0 && got.lastSeq < made.lastSeq, `the receiver kept seq 1..${got.lastSeq} of ${made.lastSeq}`);
  const acked = r.events().filter((e) => e.event === 'status').at(-1)?.acked_seq;
  t.ok(Number(acked) <= got.lastSeq, `everything acknowledged (${acked}) is stored`);
  const want = await digestJournal(src, got.lastSeq);
  t.equal(got.digest, want.digest, 'and it is the same as the source up to there');
});
