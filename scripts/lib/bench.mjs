// Shared by scripts/bench.d/*: run a command (must), and run one under GNU time for its
// wall time, peak memory and CPU time (timed).
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MiB = 1 << 20;

/** Of two timed runs ({ s, ... }; `a` may be null before the first), the quicker one. */
export function faster(a, b) {
  return a === null || b.s < a.s ? b : a;
}

/** The quickest of `rounds` runs of fn() (each returning { s, ... }). */
export function best(rounds, fn) {
  let b = null;
  for (let r = 0; r < rounds; r++) b = faster(b, fn());
  return b;
}

/** Run a command; throw with its stderr unless it exits 0. */
export function must(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status} ${r.stderr ?? ''}`);
  return r;
}

/**
 * Run a command under /usr/bin/time. opts: stdio (default: no stdin, stdout ignored, stderr
 * kept), stdinPath (a file as stdin), env (added to the environment), okStatus (default [0]).
 * Returns { s: wall seconds, peak: peak RSS in MiB, cpu: user+sys seconds, stderr }.
 */
export function timed(cmd, args, opts = {}) {
  const memFile = join(tmpdir(), `drkit-bench-time-${process.pid}.txt`);
  const stdin = opts.stdinPath ? openSync(opts.stdinPath, 'r') : 'ignore';
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', memFile, cmd, ...args], {
    encoding: 'utf8', maxBuffer: 64 * MiB, stdio: opts.stdio ?? [stdin, 'ignore', 'pipe'],
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (typeof stdin === 'number') closeSync(stdin);
  if (!(opts.okStatus ?? [0]).includes(r.status)) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr ?? ''}`);
  const [kb, user, sys] = readFileSync(memFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
  rmSync(memFile, { force: true });
  return { s, peak: Math.round(kb / 1024), cpu: +(user + sys).toFixed(2), stderr: r.stderr ?? '' };
}

/** A stream file written in 8 MiB pieces: put(parts) as the StreamWriter makes them, close(fsync?). */
export function streamFile(path) {
  const fd = openSync(path, 'w');
  const out = [];
  let pending = 0;
  const write = () => {
    writeSync(fd, Buffer.concat(out));
    out.length = 0;
    pending = 0;
  };
  return {
    put(parts) {
      for (const p of parts) {
        out.push(p);
        pending += p.length;
      }
      if (pending >= 8 * MiB) write();
    },
    close(fsync = false) {
      write();
      if (fsync) fsyncSync(fd);
      closeSync(fd);
    },
  };
}

/**
 * Drop `paths` (files, or directories: every file under them) from the page cache
 * (posix_fadvise DONTNEED via dd iflag=nocache): a cold start that both sides of a
 * comparison can be given the same way. Dirty pages are written first (sync).
 */
export function evict(...paths) {
  must('sh', ['-c', 'sync; find "$@" -type f -exec dd of=/dev/null if={} iflag=nocache count=0 status=none \\;', 'evict', ...paths]);
}

/** Read `paths` (files or directories) once, so that they are in the page cache. */
export function warm(...paths) {
  must('sh', ['-c', 'find "$@" -type f -exec cat {} + > /dev/null', 'warm', ...paths]);
}

/** The median of timed runs ({ s, cpu, peak, ... }) by wall time (the lower middle one of an even count). */
export function median(runs) {
  const sorted = [...runs].sort((a, b) => a.s - b.s);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * Fair side-by-side runs: `rounds` rounds of drkit() and peer(), in the order AB, BA, AB, ...
 * (whoever runs second gets the memory the first just freed, so each side gets both places);
 * before every run of either, prepare() (e.g. delete the last output, evict or warm the inputs).
 * Returns { drkit, peer }: arrays of the timed results.
 */
export function alternate(rounds, { prepare = () => undefined, drkit, peer }) {
  const out = { drkit: [], peer: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['drkit', 'peer'] : ['peer', 'drkit'];
    for (const side of order) {
      prepare(side);
      out[side].push(side === 'drkit' ? drkit() : peer());
    }
  }
  return out;
}

/** "1.23 1.31 1.40" (wall seconds of runs, sorted) for a note. */
export function spread(runs) {
  return runs.map((r) => r.s).sort((a, b) => a - b).map((s) => s.toFixed(2)).join(' ');
}

/**
 * Hold back free page reporting for the length of a benchmark run, where the guest kernel
 * has the knob (this VM's page_reporting module). By default the guest hands pages back to
 * the host as soon as they are free (min_free_ms=0); the next write into such a page costs
 * a host page fault, charged as system time. Measured here: `dd bs=64K conv=fsync` of 1 GiB
 * into a new file took 0.33 s of system time right after a 1 GiB file was deleted and
 * 2.2-2.3 s five seconds later; dr-apply of the same bytes 3.7-4.5 s. Which side of a pair
 * ran into returned memory decided the ratio, and the slower side more so. With reporting
 * held (pages must stay free 5 minutes, up to 32 GiB of them), both sides write into
 * memory the guest keeps, as on a machine without a balloon (after touching a few GiB once, so
 * that memory handed back before the run is warm again). Returns { held, restore }:
 * held says whether the knob was set, restore() puts the old values back (also run on exit).
 */
export function holdFreePageReporting() {
  const dir = '/sys/module/page_reporting/parameters';
  const knobs = { min_free_ms: '300000', max_waiting_mib: '32768' };
  const old = {};
  for (const [k, v] of Object.entries(knobs)) {
    try {
      old[k] = readFileSync(join(dir, k), 'utf8').trim();
      writeFileSync(join(dir, k), v);
    } catch {
      delete old[k]; // not this kernel, or not root: measure as the machine is
    }
  }
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    for (const [k, v] of Object.entries(old)) {
      try { writeFileSync(join(dir, k), v); } catch { /* keep going */ }
    }
  };
  process.on('exit', restore);
  const held = Object.keys(old).length > 0;
  // Memory handed back before the hold is still cold: touch some (BENCH_PREFAULT_GIB, default 6)
  // once and free it, so the page cache of the first runs comes from memory the guest keeps too.
  const gib = Number(process.env.BENCH_PREFAULT_GIB ?? 6);
  if (held && gib > 0) {
    spawnSync(process.execPath, ['-e', `const k = []; for (let i = 0; i < ${gib * 2}; i++) k.push(Buffer.alloc(512 * 1024 * 1024, 1));`], { stdio: 'ignore' });
  }
  return { held, restore };
}
