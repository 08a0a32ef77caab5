// dr-restore bad input: one clear line on stderr with the DR_ code, the right exit
// status, and no output file (half-written or otherwise) left behind.
import t from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { StreamWriter } from '../../src/format/codec.js';
import { newId } from '../../src/format/layout.js';
import { BIN, run } from '../helpers/run.js';
import { buildStore, tempDir } from '../helpers/restore-store.js';

type Asserts = { match(found: string, wanted: RegExp): void; equal(found: unknown, wanted: unknown, msg?: string): void };
const oneLine = (t: Asserts, stderr: string, re: RegExp) => {
  t.match(stderr, re);
  t.equal(stderr.trim().split('\n').length, 1, `one line on stderr: ${stderr}`);
};

t.test('points: outside the window, unknown mark, bad syntax, nothing consistent before', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 5401, records: 120, markEvery: 50 });
  const out = path.join(work, 'x.img');
  const cases: Array<[string[], number, RegExp]> = [
    [['--at', `seq:${w.lastSeq + 5}`], 2, new RegExp(`^dr-restore: error: point seq:${w.lastSeq + 5} is outside the window: the window is seq ${w.firstSeq}\\.\\.${w.lastSeq} \\(.+\\) \\(DR_OUTSIDE_WINDOW\\)\\n$`)],
    [['--at', '2001-01-01T00:00:00Z'], 2, /point 2001-01-01T00:00:00Z is before the window: the window is seq \d+\.\.\d+ .*\(DR_OUTSIDE_WINDOW\)/],
    [['--at', 'mark:no-such-mark'], 2, /no mark named "no-such-mark" in .* \(DR_BAD_POINT\)/],
    [['--at', 'yesterday'], 2, /bad point "yesterday": use latest, seq:N, mark:NAME or an ISO-8601 time \(DR_BAD_POINT\)/],
  ];
  for (const [args, code, re] of cases) {
    const r = await run('dr-restore', [dir, ...args, '--volume', 'db', '--out', out]);
    t.equal(r.code, code, args.join(' '));
    oneLine(t, r.stderr, re);
    t.notOk(fs.existsSync(out), 'no output file');
  }
  const firstPlain = w.records.findIndex((r) => r.type === 'flush' || r.type === 'mark');
  t.ok(firstPlain > 0, 'the workload does not start with a flush');
  const c = await run('dr-restore', [dir, '--at', `seq:${w.firstSeq}`, '--consistent', '--volume', 'db', '--out', out]);
  t.equal(c.code, 2);
  oneLine(t, c.stderr, /no FLUSH or MARK at or before seq 1 \(point seq:1\) to move back to with --consistent: the window is .* \(DR_OUTSIDE_WINDOW\)/);
});

t.test('outputs: existing file refused (and kept), --force, directory, missing directory', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 5402, records: 80, markEvery: 40 });
  const out = path.join(work, 'exists.img');
  fs.writeFileSync(out, 'precious');
  const r = await run('dr-restore', [dir, '--at', 'latest', '--volume', 'db', '--out', out]);
  t.equal(r.code, 2);
  oneLine(t, r.stderr, /exists\.img already exists: use --force to replace it \(DR_EXISTS\)/);
  t.equal(fs.readFileSync(out, 'utf8'), 'precious', 'existing file untouched');
  const f = await run('dr-restore', [dir, '--at', 'latest', '--volume', 'db', '--out', out, '--force']);
  t.equal(f.code, 0, f.stderr);
  t.ok(fs.readFileSync(out).equals(w.final[0]!), '--force replaced it with the restore');
  const d = await run('dr-restore', [dir, '--at', 'latest', '--volume', 'db', '--out', work, '--force']);
  t.equal(d.code, 2);
  oneLine(t, d.stderr, /is a directory: name the file to write \(DR_EXISTS\)/);
  const missing = path.join(work, 'no', 'such', 'dir', 'x.img');
  const m = await run('dr-restore', [dir, '--at', 'latest', '--volume', 'db', '--out', missing]);
  t.equal(m.code, 3);
  oneLine(t, m.stderr, /cannot create .*no\/such\/dir\/x\.img .*no such file or directory \(DR_IO\)/);
  t.same(fs.readdirSync(work).filter((n) => n.includes('.tmp')), [], 'no temporary file left');
});

t.test('usage: modes, volumes, serve options, missing store', async (t) => {
  const { dir, work } = await buildStore(t, { seed: 5403, records: 40, markEvery: 20 });
  const out = path.join(work, 'u.img');
  const cases: Array<[string[], number, RegExp]> = [
    [[dir, '--at', 'latest'], 2, /say what to do: --out FILE, --tar, --list or --serve .*\(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--out', out, '--tar'], 2, /--out and --tar cannot be used together \(DR_USAGE\)/],
    [[dir, '--out', out], 2, /--out needs --at POINT .*\(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--at', 'seq:3', '--out', out], 2, /several --at points are only possible with --serve \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--out', out], 2, /the group has 2 volumes \(db, logs\): name one with --volume, or use --tar for all of them \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--out', out, '--volume', 'nope'], 2, /no volume named "nope" in .* \(volumes: db, logs\) \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--serve'], 2, /--serve needs exactly one of --socket PATH or --port N \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--out', out, '--volume', 'db', '--writable'], 2, /--writable is only for --serve \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--serve', '--port', '0', '--overlay', work], 2, /--overlay is only for --serve --writable \(DR_USAGE\)/],
    [[dir, '--list', '--at', 'latest'], 2, /--list takes no --at \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--out', out, '--volume', 'db', '--jobs', '0'], 2, /bad --jobs 0: use 1\.\.16 \(DR_USAGE\)/],
    [[dir, '--at', 'latest', '--out', out, '--bogus'], 2, /Unknown argument: bogus .*\(DR_USAGE\)/],
    [[path.join(work, 'nostore'), '--list'], 2, /no journal store at .*nostore \(the directory does not exist\) \(DR_NO_STORE\)/],
  ];
  for (const [args, code, re] of cases) {
    const r = await run('dr-restore', args);
    t.equal(r.code, code, args.slice(1).join(' '));
    oneLine(t, r.stderr, re);
  }
  t.notOk(fs.existsSync(out), 'nothing written');
  const h = await run('dr-restore', ['--help']);
  t.equal(h.code, 0);
  for (const o of ['--at', '--out', '--volume', '--consistent', '--force', '--tar', '--list', '--serve', '--socket', '--port', '--host', '--writable', '--overlay', '--buffer', '--limit', '--jobs']) {
    t.match(h.stdout.toString(), o, `--help mentions ${o}`);
  }
});

t.test('an interrupted restore leaves no file under the name asked for', async (t) => {
  // 128 MiB of data in four 32 MiB writes: long enough to be interrupted while writing
  const work = tempDir(t);
  const dir = path.join(work, 'store');
  const w = new StreamWriter({ groupId: newId(), firstSeq: 1 });
  const parts: Buffer[] = [w.start(), ...w.volume({ name: 'big', size: 128 << 20, blockSize: 4096, id: newId() })];
  const data = Buffer.alloc(32 << 20, 0x5a);
  for (let i = 0; i < 4; i++) parts.push(...w.record({ type: 'write', volume: 0, offset: i * (32 << 20), data }).parts);
  parts.push(...w.end());
  const stream = path.join(work, 's.drj');
  fs.writeFileSync(stream, Buffer.concat(parts));
  const a = await run('dr-journal', ['append', dir, stream]);
  t.equal(a.code, 0, a.stderr);
  fs.rmSync(stream);
  const out = path.join(work, 'big.img');
  const child = spawn(path.join(BIN, 'dr-restore'), [dir, '--at', 'latest', '--out', out, '--buffer', '64K'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // wait until its temporary file is there, then stop it
  const tmp = path.join(work, `.big.img.dr-restore-${child.pid}.tmp`);
  for (let i = 0; i < 6000 && !fs.existsSync(tmp) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 5));
  t.ok(fs.existsSync(tmp), 'the restore writes under a temporary name');
  child.kill('SIGTERM');
  const code = await exited;
  t.equal(code, 3, `exit 3: ${stderr}`);
  t.match(stderr, /interrupted by SIGTERM \(DR_INTERRUPTED\)/);
  t.notOk(fs.existsSync(out), 'no output file');
  t.notOk(fs.existsSync(tmp), 'temporary file removed');
});
