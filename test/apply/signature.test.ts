// SIGNATURE records are checked against the replica when reached: a match goes on,
// a mismatch stops with exit 1 naming volume, range and seq (everything before it
// recorded), or with --on-mismatch=warn is reported and the apply goes on.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StreamWriter } from '../../src/format/codec.js';
import { makeWorkload } from '../helpers/workload.js';
import { firstDifference, readState, runApply, tempDir } from '../helpers/apply-run.js';

t.test('a workload full of good signatures applies cleanly', async (t) => {
  const w = makeWorkload({ seed: 12, records: 500, signatures: true });
  const sigs = w.records.filter((r) => r.type === 'signature').length;
  t.ok(sigs > 10, `${sigs} signatures in the workload`);
  const dir = tempDir(t);
  const args = w.volumes.flatMap((v) => ['--target', `${v.name}=${join(dir, v.name + '.img')}`]);
  const r = await runApply([...args, '--json'], w.stream, dir);
  t.equal(r.code, 0, r.stderr);
  const done = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.equal(done.signatures, sigs, 'every signature checked');
  t.equal(done.mismatches, 0);
  w.volumes.forEach((v, i) => t.equal(firstDifference(readFileSync(join(dir, v.name + '.img')), w.final[i]!), -1, `${v.name} equals the reference`));
});

function badSignatureStream(): Buffer {
  const w = new StreamWriter({ groupId: Buffer.alloc(16, 1), firstSeq: 100 });
  const parts = [w.start(), ...w.volume({ name: 'vol', size: 1 << 20, blockSize: 4096, id: Buffer.alloc(16, 2) })];
  const a = Buffer.alloc(8192, 0x41);
  parts.push(...w.record({ type: 'write', volume: 0, offset: 4096, data: a }).parts); // 100
  const good = createHash('sha256').update(a).digest();
  parts.push(...w.record({ type: 'signature', volume: 0, offset: 4096, length: 8192, algorithm: 'sha256', digest: good }).parts); // 101
  parts.push(...w.record({ type: 'write', volume: 0, offset: 0, data: Buffer.alloc(100, 0x42) }).parts); // 102
  const wrong = createHash('sha256').update('something else').digest();
  parts.push(...w.record({ type: 'signature', volume: 0, offset: 0, length: 65536, algorithm: 'sha256', digest: wrong }).parts); // 103
  parts.push(...w.record({ type: 'write', volume: 0, offset: 65536, data: Buffer.alloc(100, 0x43) }).parts); // 104
  parts.push(...w.end());
  return Buffer.concat(parts);
}

t.test('a mismatch stops with exit 1 naming volume, range and seq', async (t) => {
  const dir = tempDir(t);
  const img = join(dir, 'vol.img');
  writeFileSync(img, Buffer.alloc(1 << 20)); // a seeded replica: the stream starts at seq 100
  const r = await runApply(['--target', img], badSignatureStream(), dir);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, /^dr-apply: error: signature mismatch at seq 103: volume vol bytes 0\.\.65536 \(65536 bytes\) hash to sha256 [0-9a-f]{16}\.\.\., the journal says [0-9a-f]{16}\.\.\.; replica at seq 102 .*\(DR_MISMATCH\)\n$/m);
  t.equal(readState(img + '.drstate').appliedSeq, 102, 'everything before the signature recorded');
  const got = readFileSync(img);
  t.ok(got.subarray(0, 100).equals(Buffer.alloc(100, 0x42)), 'the write before it applied');
  t.ok(got.subarray(65536, 65636).equals(Buffer.alloc(100)), 'the write after it not applied');
  const again = await runApply(['--target', img], badSignatureStream(), dir);
  t.equal(again.code, 1, 'a rerun meets the same mismatch');
});

t.test('--on-mismatch=warn reports it and applies the rest', async (t) => {
  const dir = tempDir(t);
  const img = join(dir, 'vol.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const r = await runApply(['--target', img, '--on-mismatch=warn', '--json'], badSignatureStream(), dir);
  t.equal(r.code, 1, 'exit 1: a difference was found');
  t.match(r.stderr, /warning: signature mismatch at seq 103: volume vol bytes 0\.\.65536/);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const mm = lines.find((l) => l.event === 'mismatch');
  t.match(mm, { volume: 'vol', offset: 0, length: 65536, seq: 103 }, 'JSON mismatch line');
  t.match(lines.pop(), { event: 'done', result: 'end', signatures: 2, mismatches: 1, appliedSeq: 104 });
  t.equal(readState(img + '.drstate').appliedSeq, 104);
  t.ok(readFileSync(img).subarray(65536, 65636).equals(Buffer.alloc(100, 0x43)), 'the write after it applied');
});
