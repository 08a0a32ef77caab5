// Hostile and broken journal streams (the catalogue of test/helpers/reliability-streams.ts:
// every DR_ code of docs/FORMAT.md section 8, lengths that overflow, records beyond a
// volume's end, undeclared volume indexes, huge counts, deep garbage after a valid
// prefix, volume names that try to escape a directory) fed to dr-verify stream,
// dr-journal append (to a new store, and to an existing store of the same group that
// each entry continues) and dr-apply. Each must be refused with its documented code,
// one clean error line, the exit status of that code in src/errors.ts CODES (dr-verify
// stream: 2 for any fault, truncation included, as its man page says), within a time
// limit, without writing anywhere but its target; the existing store must stay valid
// and keep everything it held.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { badRefusal, figures, killLeftovers, replay, runBin, seedFor, tempDir } from '../helpers/reliability-common.js';
import { catalogue, prefix } from '../helpers/reliability-streams.js';
import { verifyJournal } from '../helpers/reliability-store.js';
import { JournalStore } from '../../src/store/index.js';

t.teardown(killLeftovers);
t.setTimeout(900_000); // the suite's machine may be busy: the per-step limits catch hangs
const f = figures(t, 'hostile-streams');
const FIRST = 10;
const LIMIT_MS = 30_000;

function listTree(dir: string, base = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, base), { withFileTypes: true })) {
    const rel = base ? `${base}/${e.name}` : e.name;
    out.push(rel);
    if (e.isDirectory()) out.push(...listTree(dir, rel));
  }
  return out;
}

async function storeLast(dir: string): Promise<number> {
  const s = await JournalStore.open(dir, { readOnly: true });
  try {
    return s.lastSeq;
  } finally {
    await s.close();
  }
}

const seed = seedFor('hostile-streams');
const escapes = ['/tmp/abs', join(tmpdir(), 'etc', 'passwd'), join(tmpdir(), 'x')].filter((p) => !existsSync(p));

t.test('malformed streams to dr-verify stream, dr-journal append (new store) and dr-apply', async (t) => {
  const work = tempDir(t, 'drkit-rel-hostile-');
  // streams that start at seq 1: a new store and a new replica can take them
  const list = catalogue(1, seed);
  t.ok(list.length >= 50, `${list.length} malformed streams in the catalogue`);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      const h = list[i];
      if (!h) return;
      const sb = join(work, `e${i}`);
      const cwd = join(sb, 'cwd');
      const tgt = join(sb, 'tgt');
      mkdirSync(cwd, { recursive: true });
      mkdirSync(tgt, { recursive: true });
      const input = join(sb, 'input.drj');
      writeFileSync(input, h.bytes);
      const why = replay('hostile-streams', `entry ${i}: ${h.name}`);
      const runs: Array<[string, string[], number | undefined]> = [
        ['dr-verify', ['stream', input], 2],
        ['dr-journal', ['append', join(sb, 'new'), input], undefined],
        ['dr-apply', [input, '--target', `disk0=${join(tgt, 'disk0.img')}`], undefined],
      ];
      for (const [cmd, args, exit] of runs) {
        const res = await runBin(cmd, args, { timeoutMs: LIMIT_MS, cwd });
        f.malformed++;
        const bad = badRefusal(cmd, res, h.codes, exit);
        t.equal(bad, null, `${cmd} ${args[0] === input ? '' : args[0]}: "${h.name}" refused with ${h.codes.join('/')} (${res.stderr.trim().slice(0, 200)}) ${why}`);
      }
      const stray = listTree(sb).filter((p) => !/^(input\.drj|cwd|tgt|tgt\/disk0\.img(\.drstate)?|new(\/.*)?)$/.test(p));
      t.same(stray, [], `nothing written outside the targets ${why}`);
    }
  };
  await Promise.all([worker(), worker()]);
  for (const p of escapes) t.notOk(existsSync(p), `no file created at ${p} by a hostile volume name`);
});

t.test('malformed streams appended to an existing store: refused, the store valid and whole', async (t) => {
  const work = tempDir(t, 'drkit-rel-hostile-');
  const store = join(work, 'store');
  const b = await runBin('dr-journal', ['append', store], { input: prefix(FIRST) });
  t.equal(b.code, 0, `the store is built ${b.stderr.trim()}`);
  let last = await storeLast(store);
  t.equal(last, FIRST - 1, 'the store holds seqs 1..9');
  const n = catalogue(FIRST, seed).length;
  for (let i = 0; i < n; i++) {
    // each entry continues the store where it is now (a good prefix of an entry may be kept)
    const h = catalogue(last + 1, seed)[i]!;
    const why = replay('hostile-streams', `existing store, entry ${i}: ${h.name}`);
    const res = await runBin('dr-journal', ['append', store], { input: h.bytes, timeoutMs: LIMIT_MS });
    f.malformed++;
    t.equal(badRefusal('dr-journal', res, h.codes), null, `dr-journal append to the store: "${h.name}" refused (${res.stderr.trim().slice(0, 200)}) ${why}`);
    const now = await storeLast(store);
    t.ok(now >= last && now <= last + h.goodRecords, `the store kept seqs ..${last} (now ${now}, at most the ${h.goodRecords} good records added) ${why}`);
    if (now < last) f.lost++;
    last = now;
    f.checks++;
  }
  t.equal(await verifyJournal(store), null, `the store is valid after ${n} malformed appends ${replay('hostile-streams')}`);
  const more = await runBin('dr-journal', ['append', store], { input: prefix(2).subarray(0, 0) });
  t.equal(more.code === 0, false, 'an empty append is refused, not taken for a stream');
  const mk = await runBin('dr-journal', ['mark', store, 'still-appendable']);
  t.equal(mk.code, 0, `the store is still appendable ${mk.stderr.trim()}`);
});
