/**
 * The apply engine: keeps replica images current by applying journal records to
 * them in stream order, durably and restartably.
 *
 * Durability and restart (the contract that makes `kill -9` + rerun safe):
 *  - The state file (apply-state.ts) names the last seq whose effects are on disk.
 *    It is rewritten (atomically) only after fdatasync of every target written since
 *    the last checkpoint.
 *  - Checkpoints happen at every FLUSH, MARK and SIGNATURE record, when the input
 *    ends (complete, truncated or refused), when an --until point is reached, on
 *    SIGINT/SIGTERM, and after a second of idle input.
 *  - A rerun skips every record up to the recorded seq and reapplies the rest in
 *    order. Records past the recorded seq that a killed run had already (partly)
 *    written are all rewritten before anything reads them, so the replica ends up
 *    byte for byte the same.
 *  - While writing, a background fdatasync runs every 64 MiB written (writeback.ts):
 *    only a hint that starts the disk early, so a checkpoint's fdatasync finds little
 *    left; it records nothing, and its errors fail the next checkpoint.
 *  - A SIGNATURE is a checkpoint point, so when a rerun reaches one, no record after
 *    it can have been written by an earlier run: the hash check sees exactly the
 *    bytes the journal's writer saw.
 *
 * Execution: apply() does the bookkeeping (order, ranges, --until) synchronously
 * and queues operations (write a run, zero a range, verify a signature,
 * checkpoint); one executor performs them strictly in queue order, writes through
 * Node's thread pool, so the caller decodes (and checksums) the next input while
 * the previous one is written. The queue is bounded by the driver (waitBelow).
 *
 * Writes: consecutive WRITE records that continue each other on the same volume
 * are gathered (up to WRITE_MAX = 512 KiB / 1024 pieces) into one pwritev: fewer system calls,
 * while pieces stay small enough for the kernel's page-cache copy to be cheap
 * (measured: 1 MiB and larger pwritevs cost up to 3x the system time of 512 KiB
 * ones, see writeback.ts; a longer record is written in pieces of that size). Anything else (a
 * write elsewhere, ZERO, FLUSH, ...) writes the gathered run first, so the order
 * of writes to any byte is the stream's order.
 *
 * ZERO: ranges of 4 MiB or more on a regular file are punched out with
 * `fallocate --punch-hole --keep-size` (util-linux; Node has no fallocate(2)); if
 * that is not possible (no fallocate(1), a file system without hole punching, a
 * block device, or --zero=write) zeroes are written. Smaller ranges are always
 * written as zeroes: a process per record would cost more than the bytes.
 */
import { closeSync, fdatasync, ftruncateSync, fsyncSync, linkSync, openSync, readSync, statSync, unlinkSync, writeSync, writev, writevSync, constants as C } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { dirname, resolve, basename, join } from 'node:path';
import { DrError, fromSystemError } from '../errors.js';
import { idToString, type SequencedRecord, type VolumeRecord } from '../format/layout.js';
import type { Logger } from '../cli/log.js';
import { formatBytes, formatMicros, parseTime } from '../cli/units.js';
import { openImage, closeImage } from './device.js';
import { EarlyWriteback, WRITE_MAX } from './writeback.js';
import { readState, writeState, syncDir, StateLock, STATE_FORMAT, STATE_VERSION, type ApplyState } from './apply-state.js';

/** Suffix of the default state file, next to the target of the group's first volume. */
export const STATE_SUFFIX = '.drstate';
const MAX_RUN_BYTES = WRITE_MAX;
const MAX_RUN_PIECES = 1024;
const PUNCH_MIN_BYTES = 4 * 1024 * 1024;
const ZERO_CHUNK = 1024 * 1024;
/** writes of non-overlapping runs performed at once (Node's thread pool has 4 threads) */
const WRITES_IN_FLIGHT = 3;

export interface TargetSpec {
  /** volume name, or null for the single volume of a one-volume stream */
  name: string | null;
  path: string;
}

export type UntilPoint =
  | { kind: 'latest' }
  | { kind: 'seq'; seq: number }
  | { kind: 'mark'; name: string }
  | { kind: 'time'; time: number; text: string };

/** 'latest' | 'seq:N' | 'mark:NAME' | ISO-8601 time. DR_BAD_POINT for anything else. */
export function parseUntil(text: string): UntilPoint {
  if (text === 'latest') return { kind: 'latest' };
  const seq = /^seq:(\d+)$/.exec(text);
  if (seq) {
    const n = Number(seq[1]);
    if (!Number.isSafeInteger(n)) throw new DrError('DR_BAD_POINT', `bad point ${JSON.stringify(text)}: seq too large`);
    return { kind: 'seq', seq: n };
  }
  if (text.startsWith('mark:')) {
    const name = text.slice(5);
    if (name.length === 0) throw new DrError('DR_BAD_POINT', 'bad point "mark:": name the mark, e.g. mark:before-upgrade');
    return { kind: 'mark', name };
  }
  if (!/^\d{4}-\d\d-\d\d/.test(text)) {
    throw new DrError('DR_BAD_POINT', `bad point ${JSON.stringify(text)}: use latest, seq:N, mark:NAME or an ISO-8601 time`);
  }
  return { kind: 'time', time: parseTime(text), text };
}

export function describeUntil(u: UntilPoint): string {
  switch (u.kind) {
    case 'latest': return 'latest';
    case 'seq': return `seq:${u.seq}`;
    case 'mark': return `mark:${u.name}`;
    case 'time': return u.text;
  }
}

export interface MismatchReport {
  volume: string;
  offset: number;
  length: number;
  seq: number;
  expected: string;
  actual: string;
}

export interface ApplierOptions {
  targets: TargetSpec[];
  /** state file path; default: <target of the first volume>.drstate */
  statePath?: string;
  until: UntilPoint;
  onMismatch: 'fail' | 'warn';
  /** 'punch': punch holes for large ZERO ranges where possible; 'write': always write zeroes */
  zeroMode: 'punch' | 'write';
  log: Logger;
  /** called for each signature mismatch in warn mode */
  mismatch?: (m: MismatchReport) => void;
}

interface Target {
  volume: VolumeRecord;
  path: string;
  fd: number;
  kind: 'file' | 'block';
  /** written since its last fdatasync */
  dirty: boolean;
  /** false once hole punching failed on it: write zeroes from then on */
  canPunch: boolean;
  /** background fdatasyncs while writing, so a checkpoint's own finds little left to write */
  writeback: EarlyWriteback | null;
}

interface Run {
  target: Target;
  start: number;
  end: number;
  pieces: Buffer[];
}

/** Work for the executor, in stream order. */
type Op =
  | { kind: 'write'; run: Run }
  | { kind: 'zero'; target: Target; offset: number; length: number }
  | { kind: 'verify'; target: Target; offset: number; length: number; seq: number; digest: Buffer; prevSeq: number; prevTime: number }
  | { kind: 'checkpoint'; seq: number; time: number }
  | { kind: 'call'; fn: () => void };

function writevAsync(fd: number, pieces: Buffer[], position: number): Promise<number> {
  return new Promise((res, rej) => writev(fd, pieces, position, (err, n) => (err ? rej(err) : res(n))));
}
function fdatasyncAsync(fd: number): Promise<void> {
  return new Promise((res, rej) => fdatasync(fd, (err) => (err ? rej(err) : res())));
}

/** Counters for progress and status lines. */
export interface ApplyCounters {
  /** records applied by this run */
  records: number;
  /** records skipped because an earlier run applied them */
  skipped: number;
  /** bytes written or zeroed by this run */
  bytes: number;
  signaturesChecked: number;
  mismatches: number;
  checkpoints: number;
}

/**
 * Applies records to the targets of one group. begin() checks everything it can
 * before the first byte is written; apply() takes records in seq order.
 */
export class Applier {
  readonly counters: ApplyCounters = { records: 0, skipped: 0, bytes: 0, signaturesChecked: 0, mismatches: 0, checkpoints: 0 };
  statePath = '';
  /** last seq applied (queued or written, maybe not yet durable) */
  appliedSeq = 0;
  appliedTime = 0;
  /** last seq recorded in the state file */
  durableSeq = 0;
  /** newest record time seen on the input (for lag) */
  newestTime = 0;
  /** set when apply() stopped at the --until point */
  reachedUntil = false;
  /** set when a write, read or sync of a target failed: nothing more is recorded as applied */
  broken = false;
  private targets: Target[] = [];
  private state: ApplyState | null = null;
  private lock: StateLock | null = null;
  private run: Run | null = null;
  private zeroes: Buffer | null = null;
  private queue: Op[] = [];
  /** bytes of WRITE data queued and not yet written */
  queuedBytes = 0;
  private executing: Promise<void> | null = null;
  /** set while the executor waits for running writes with nothing queued: call to give it new work */
  private wakeExecutor: (() => void) | null = null;
  private failure: unknown = null;
  private progressWaiters: Array<() => void> = [];
  private started = false;
  private groupHex = '';

  constructor(private readonly opts: ApplierOptions) {}

  /** Checkpoint after an error, unless the error was the targets' own (then nothing more is recorded). */
  async checkpointAfterError(): Promise<void> {
    try {
      await this.checkpoint();
    } catch {
      /* the first error says more */
    }
  }

  /** Operations queued or running. */
  get busy(): boolean {
    return this.executing !== null || this.queue.length > 0;
  }

  private enqueue(op: Op): void {
    if (this.failure !== null) return;
    this.queue.push(op);
    this.wakeExecutor?.();
    if (this.executing === null) {
      this.executing = this.execute().finally(() => {
        this.executing = null;
        this.notify();
      });
    }
  }

  private notify(): void {
    const w = this.progressWaiters;
    this.progressWaiters = [];
    for (const f of w) f();
  }

  /**
   * Perform the queue in order. Up to WRITES_IN_FLIGHT writes run at once when their
   * ranges do not overlap (the bytes end up the same in any completion order, and
   * the next write is already waiting in the thread pool when one ends instead of
   * waiting for the main thread to finish decoding); anything else waits for every
   * write before it, and writes after it wait for it.
   */
  private async execute(): Promise<void> {
    const inFlight = new Set<{ run: Run; done: Promise<void> }>();
    const fail = (err: unknown): void => {
      if (this.failure === null) this.failure = err;
      this.queue.length = 0;
      this.queuedBytes = 0;
    };
    for (;;) {
      if (this.queue.length === 0 || this.failure !== null) {
        if (inFlight.size === 0) break;
        // writes still running: wait for one to end, or for more work queued meanwhile
        const queued = new Promise<void>((resolve) => (this.wakeExecutor = resolve));
        await Promise.race([queued, ...[...inFlight].map((w) => w.done)]);
        this.wakeExecutor = null;
        continue;
      }
      const op = this.queue[0]!;
      if (op.kind === 'write') {
        if (inFlight.size < WRITES_IN_FLIGHT && !overlapsAny(op.run, inFlight)) {
          this.queue.shift();
          const w = {
            run: op.run,
            done: this.writeRun(op.run).then(
              () => { inFlight.delete(w); this.notify(); },
              (err: unknown) => { inFlight.delete(w); fail(err); this.notify(); },
            ),
          };
          inFlight.add(w);
        } else {
          // too many in flight, or it overlaps one: wait for one to end
          await Promise.race([...inFlight].map((w) => w.done));
        }
        continue;
      }
      if (inFlight.size > 0) {
        // an operation after writes: wait for all of them
        await Promise.all([...inFlight].map((w) => w.done));
        continue;
      }
      this.queue.shift();
      try {
        await this.perform(op);
      } catch (err) {
        fail(err);
      }
      this.notify();
    }
  }

  /** Wait until at most `bytes` of write data are queued (all done if 0); throws the executor's failure. */
  async waitBelow(bytes: number): Promise<void> {
    while (this.executing !== null && (bytes === 0 || this.queuedBytes > bytes)) {
      await new Promise<void>((res) => this.progressWaiters.push(res));
    }
    if (this.failure !== null) throw this.failure;
  }

  /** Run `fn` once everything queued before it is done (e.g. give read buffers back). */
  afterQueued(fn: () => void): void {
    if (this.busy) this.enqueue({ kind: 'call', fn });
    else fn();
  }

  /** Everything but writes (those run in execute(), several at a time). */
  private async perform(op: Exclude<Op, { kind: 'write' }>): Promise<void> {
    switch (op.kind) {
      case 'zero':
        this.zeroRange(op.target, op.offset, op.length);
        return;
      case 'verify':
        await this.verify(op);
        return;
      case 'checkpoint':
        await this.makeDurable(op.seq, op.time);
        return;
      case 'call':
        op.fn();
        return;
    }
  }

  get untilPoint(): UntilPoint {
    return this.opts.until;
  }

  /** Stop after `seq` (an --until point resolved by a journal store). */
  limitToSeq(seq: number): void {
    this.opts.until = { kind: 'seq', seq };
  }

  get begun(): boolean {
    return this.started;
  }

  get volumes(): VolumeRecord[] {
    return this.targets.map((t) => t.volume);
  }

  /**
   * Match the stream's volumes to the targets, read (or create) the state, check
   * group, volumes, sizes and seq continuity, then open (or create) the targets.
   */
  begin(groupId: Buffer, firstSeq: number, volumes: VolumeRecord[]): void {
    const { log } = this.opts;
    const group = idToString(groupId);
    this.groupHex = group;
    const paths = this.matchTargets(volumes);
    const first = paths[0]!;
    if (this.opts.statePath) this.statePath = resolve(this.opts.statePath);
    else {
      if (isBlockDevice(first)) {
        throw new DrError('DR_USAGE', `target ${first} is a block device: give --state FILE to say where the replica's state is kept`);
      }
      this.statePath = first + STATE_SUFFIX;
    }
    this.lock = StateLock.acquire(this.statePath);
    try {
      this.state = readState(this.statePath);
      const state = this.state;
      // --- checks: nothing is created or written until all pass
      if (state) {
        if (state.group !== group) {
          throw new DrError('DR_GROUP_MISMATCH', `stream is from group ${group} but the replica (${this.statePath}) belongs to group ${state.group}`);
        }
        for (const v of volumes) {
          const sv = state.volumes.find((s) => s.name === v.name);
          if (!sv) continue;
          if (sv.id !== idToString(v.id) || sv.size !== v.size) {
            throw new DrError('DR_VOLUME_MISMATCH', `volume ${v.name} in the stream (id ${idToString(v.id)}, ${v.size} bytes) is not the one the replica holds (id ${sv.id}, ${sv.size} bytes; ${this.statePath})`);
          }
        }
        if (firstSeq > state.appliedSeq + 1) {
          throw new DrError('DR_SEQ_GAP', `stream starts at seq ${firstSeq} but the replica has applied up to seq ${state.appliedSeq}: records ${state.appliedSeq + 1}..${firstSeq - 1} are missing`, { lastGoodSeq: state.appliedSeq });
        }
      }
      const applied = state ? state.appliedSeq : firstSeq - 1;
      const until = this.opts.until;
      if (until.kind === 'seq' && until.seq < applied) {
        throw new DrError('DR_BAD_POINT', `the replica is already at seq ${applied}, past seq:${until.seq} (a replica cannot go back: use dr-restore)`);
      }
      const plans = volumes.map((v, i) => {
        const path = paths[i]!;
        const sv = state?.volumes.find((s) => s.name === v.name);
        if (sv && sv.target !== path) {
          throw new DrError('DR_USAGE', `the replica's volume ${v.name} is ${sv.target} (${this.statePath}), not ${path}`);
        }
        const size = targetSize(path);
        if (size === null) {
          if (sv) throw new DrError('DR_USAGE', `target ${path} does not exist, but ${this.statePath} says seq ${applied} was applied to it: restore it, or remove the state file to start a new replica`);
          return { v, path, create: true };
        }
        if (size < v.size) {
          throw new DrError('DR_VOLUME_MISMATCH', `target ${path} is ${size} bytes (${formatBytes(size)}), smaller than volume ${v.name} (${v.size} bytes, ${formatBytes(v.size)})`);
        }
        return { v, path, create: false };
      });
      if (!state && firstSeq > 1 && plans.some((p) => p.create)) {
        const missing = plans.filter((p) => p.create).map((p) => p.path).join(', ');
        throw new DrError('DR_SEQ_GAP', `the input starts at seq ${firstSeq}, so a new replica needs its volumes as of seq ${firstSeq - 1}, but ${missing} does not exist: seed it first (e.g. dr-restore --at seq:${firstSeq - 1}) or apply from seq 1`);
      }
      // --- open or create the targets
      for (const p of plans) {
        if (p.create) {
          createSparse(p.path, p.v.size);
          log.info(`created ${p.path} (${formatBytes(p.v.size)}, sparse) for volume ${p.v.name}`);
        }
        const h = openImage(p.path, 'r+');
        this.targets.push({
          volume: p.v, path: p.path, fd: h.fd, kind: h.kind, dirty: false, canPunch: h.kind === 'file' && this.opts.zeroMode === 'punch',
          writeback: EarlyWriteback.open(p.path),
        });
      }
      this.appliedSeq = applied;
      this.durableSeq = applied;
      this.appliedTime = state?.appliedTime ?? 0;
      this.started = true;
      const known = new Set(state?.volumes.map((s) => s.name));
      if (!state || volumes.some((v) => !known.has(v.name))) this.recordState(applied, this.appliedTime);
      if (state) log.debug(`replica at seq ${applied} (${this.statePath})`);
      else log.debug(`new replica state ${this.statePath}, starting after seq ${applied}`);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private matchTargets(volumes: VolumeRecord[]): string[] {
    const specs = this.opts.targets;
    if (volumes.length === 0) throw new DrError('DR_VOLUME_MISMATCH', 'the stream declares no volumes: nothing to apply');
    const names = volumes.map((v) => v.name).join(', ');
    const unnamed = specs.filter((s) => s.name === null);
    let paths: string[];
    if (unnamed.length > 0) {
      if (specs.length > 1) throw new DrError('DR_USAGE', 'with several --target options, name each volume: --target NAME=IMAGE');
      if (volumes.length > 1) throw new DrError('DR_USAGE', `the stream has ${volumes.length} volumes (${names}): give --target NAME=IMAGE for each`);
      paths = [resolve(unnamed[0]!.path)];
    } else {
      const seen = new Set<string>();
      for (const s of specs) {
        if (seen.has(s.name!)) throw new DrError('DR_USAGE', `volume ${s.name} has two --target options`);
        seen.add(s.name!);
        if (!volumes.some((v) => v.name === s.name)) {
          throw new DrError('DR_VOLUME_MISMATCH', `no volume named ${s.name} in the stream (it has: ${names})`);
        }
      }
      paths = volumes.map((v) => {
        const s = specs.find((x) => x.name === v.name);
        if (!s) throw new DrError('DR_USAGE', `volume ${v.name} of the stream has no target: add --target ${v.name}=IMAGE`);
        return resolve(s.path);
      });
    }
    const dup = paths.find((p, i) => paths.indexOf(p) !== i);
    if (dup) throw new DrError('DR_USAGE', `${dup} is the target of two volumes`);
    return paths;
  }

  /**
   * Apply one record (seq order). Returns false when the --until point is reached
   * (the record that shows it is then not applied, unless it is the point itself).
   */
  apply(rec: SequencedRecord): boolean {
    if (rec.time > this.newestTime) this.newestTime = rec.time;
    const until = this.opts.until;
    if (until.kind === 'seq' && rec.seq > until.seq) return this.stopAtUntil();
    if (until.kind === 'time' && rec.time > until.time) {
      if (rec.seq <= this.appliedSeq) this.pastPoint();
      return this.stopAtUntil();
    }
    if (rec.seq <= this.appliedSeq) {
      this.counters.skipped++;
      if (until.kind === 'mark' && rec.type === 'mark' && rec.name === until.name) {
        if (rec.seq < this.appliedSeq) this.pastPoint();
        return this.stopAtUntil();
      }
      if (until.kind === 'seq' && rec.seq === until.seq) return this.stopAtUntil();
      return true;
    }
    if (rec.seq !== this.appliedSeq + 1) {
      throw new DrError('DR_SEQ_GAP', `seq ${rec.seq} follows ${this.appliedSeq} (records ${this.appliedSeq + 1}..${rec.seq - 1} are missing)`, { lastGoodSeq: this.appliedSeq });
    }
    let checkpoint = false;
    switch (rec.type) {
      case 'write': {
        const t = this.target(rec.volume, rec.offset, rec.data.length, rec.seq, 'write');
        this.queueWrite(t, rec.offset, rec.data);
        this.counters.bytes += rec.data.length;
        break;
      }
      case 'zero': {
        const t = this.target(rec.volume, rec.offset, rec.length, rec.seq, 'zero range');
        this.flushRun();
        this.enqueue({ kind: 'zero', target: t, offset: rec.offset, length: rec.length });
        this.counters.bytes += rec.length;
        break;
      }
      case 'signature': {
        const t = this.target(rec.volume, rec.offset, rec.length, rec.seq, 'signature range');
        this.flushRun();
        this.enqueue({ kind: 'verify', target: t, offset: rec.offset, length: rec.length, seq: rec.seq, digest: rec.digest, prevSeq: this.appliedSeq, prevTime: this.appliedTime });
        checkpoint = true;
        break;
      }
      case 'flush':
      case 'mark':
        checkpoint = true;
        break;
      case 'heartbeat':
      case 'unknown':
        break;
    }
    this.appliedSeq = rec.seq;
    this.appliedTime = rec.time;
    this.counters.records++;
    if (checkpoint) {
      this.flushRun();
      this.enqueue({ kind: 'checkpoint', seq: rec.seq, time: rec.time });
    }
    if (until.kind === 'mark' && rec.type === 'mark' && rec.name === until.name) return this.stopAtUntil();
    if (until.kind === 'seq' && rec.seq === until.seq) return this.stopAtUntil();
    return true;
  }

  private stopAtUntil(): false {
    this.reachedUntil = true;
    return false;
  }

  private pastPoint(): never {
    throw new DrError('DR_BAD_POINT', `the replica is already at seq ${this.appliedSeq}, past ${describeUntil(this.opts.until)} (a replica cannot go back: use dr-restore)`);
  }

  private target(volume: number, offset: number, length: number, seq: number, what: string): Target {
    const t = this.targets[volume];
    if (!t) throw new DrError('DR_BAD_RECORD', `${what} of seq ${seq} names volume ${volume}, which the stream never declared`, { lastGoodSeq: this.appliedSeq });
    if (offset + length > t.volume.size) {
      throw new DrError('DR_OUT_OF_RANGE', `${what} ${offset}+${length} of seq ${seq} is past the end of volume ${t.volume.name} (${t.volume.size} bytes)`, { lastGoodSeq: this.appliedSeq });
    }
    return t;
  }

  private queueWrite(t: Target, offset: number, data: Buffer): void {
    let run = this.run;
    if (run && (run.target !== t || run.end !== offset || run.pieces.length >= MAX_RUN_PIECES)) {
      this.flushRun();
      run = null;
    }
    if (!run) run = this.run = { target: t, start: offset, end: offset, pieces: [] };
    run.pieces.push(data);
    run.end += data.length;
    this.queuedBytes += data.length;
    if (run.end - run.start >= MAX_RUN_BYTES) this.flushRun();
  }

  /** Queue the gathered run of writes. */
  flushRun(): void {
    const run = this.run;
    if (!run) return;
    this.run = null;
    this.enqueue({ kind: 'write', run });
  }

  /** Write a run (pwritevs of at most WRITE_MAX bytes). */
  private async writeRun(run: Run): Promise<void> {
    const t = run.target;
    t.dirty = true;
    let pos = run.start;
    let pieces = run.pieces;
    try {
      while (pieces.length > 0) {
        let n = await writevAsync(t.fd, upTo(pieces, WRITE_MAX), pos);
        pos += n;
        // drop what was written; keep the rest of a partly written piece
        let i = 0;
        while (i < pieces.length && n >= pieces[i]!.length) n -= pieces[i++]!.length;
        pieces = pieces.slice(i);
        if (n > 0) pieces[0] = pieces[0]!.subarray(n);
      }
      t.writeback?.wrote(run.end - run.start);
    } catch (err) {
      this.broken = true;
      throw fromSystemError(err, `writing ${t.path} at byte ${pos}`);
    } finally {
      this.queuedBytes -= run.end - run.start;
    }
  }

  private zeroRange(t: Target, offset: number, length: number): void {
    t.dirty = true;
    if (t.canPunch && length >= PUNCH_MIN_BYTES) {
      const r = spawnSync('fallocate', ['--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), t.path], { stdio: ['ignore', 'ignore', 'pipe'] });
      if (r.status === 0) return;
      t.canPunch = false;
      this.opts.log.debug(`cannot punch holes in ${t.path} (${r.error ? r.error.message : r.stderr.toString().trim()}): writing zeroes instead`);
    }
    if (!this.zeroes) this.zeroes = Buffer.alloc(ZERO_CHUNK);
    const z = this.zeroes;
    let pos = offset;
    const end = offset + length;
    try {
      while (pos < end) {
        const left = end - pos;
        let n: number;
        if (left <= z.length) n = writeSync(t.fd, z, 0, left, pos);
        else {
          const pieces: Buffer[] = [];
          for (let k = 0; k < 64 && (k + 1) * z.length <= left; k++) pieces.push(z);
          n = writevSync(t.fd, pieces, pos);
        }
        pos += n;
      }
      t.writeback?.wrote(length);
    } catch (err) {
      this.broken = true;
      throw fromSystemError(err, `zeroing ${t.path} at byte ${pos}`);
    }
  }

  private async verify(op: Extract<Op, { kind: 'verify' }>): Promise<void> {
    const { target: t, offset, length, seq, digest } = op;
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(length, 4 * 1024 * 1024));
    let pos = offset;
    const end = offset + length;
    try {
      while (pos < end) {
        const want = Math.min(buf.length, end - pos);
        const n = readSync(t.fd, buf, 0, want, pos);
        if (n === 0) throw new DrError('DR_IO', `reading ${t.path} at byte ${pos}: unexpected end of file`);
        hash.update(buf.subarray(0, n));
        pos += n;
      }
    } catch (err) {
      this.broken = true;
      throw fromSystemError(err, `reading ${t.path} at byte ${pos}`);
    }
    this.counters.signaturesChecked++;
    const actual = hash.digest();
    if (actual.equals(digest)) return;
    this.counters.mismatches++;
    const m: MismatchReport = { volume: t.volume.name, offset, length, seq, expected: digest.toString('hex'), actual: actual.toString('hex') };
    const what = `signature mismatch at seq ${seq}: volume ${t.volume.name} bytes ${offset}..${end} (${length} bytes) hash to sha256 ${m.actual.slice(0, 16)}..., the journal says ${m.expected.slice(0, 16)}...`;
    if (this.opts.onMismatch === 'warn') {
      this.opts.log.warn(what);
      this.opts.mismatch?.(m);
      return;
    }
    // Everything before the signature stays applied and recorded.
    await this.makeDurable(op.prevSeq, op.prevTime);
    this.appliedSeq = op.prevSeq;
    this.appliedTime = op.prevTime;
    throw new DrError('DR_MISMATCH', what, { lastGoodSeq: op.prevSeq, mismatch: m });
  }

  /**
   * Make everything applied so far durable and recorded: queue the gathered writes
   * and a checkpoint, and wait for them.
   */
  async checkpoint(): Promise<void> {
    if (!this.started || this.broken) return;
    if (this.failure === null) {
      this.flushRun();
      this.enqueue({ kind: 'checkpoint', seq: this.appliedSeq, time: this.appliedTime });
    }
    await this.waitBelow(0);
  }

  /** fdatasync every target written since the last time, then record `seq` in the state file. */
  private async makeDurable(seq: number, time: number): Promise<void> {
    for (const t of this.targets) {
      if (!t.dirty) continue;
      try {
        await t.writeback?.settle();
        await fdatasyncAsync(t.fd);
      } catch (err) {
        this.broken = true;
        throw fromSystemError(err, `fdatasync of ${t.path}`);
      }
      t.dirty = false;
    }
    if (seq !== this.durableSeq) {
      this.recordState(seq, time);
      this.counters.checkpoints++;
    }
  }

  private recordState(seq: number, time: number): void {
    const prev = this.state;
    const volumes = [...(prev?.volumes ?? [])];
    for (const t of this.targets) {
      if (volumes.some((v) => v.name === t.volume.name)) continue;
      volumes.push({ name: t.volume.name, id: idToString(t.volume.id), size: t.volume.size, target: t.path });
    }
    const group = prev?.group ?? this.groupHex;
    const next: ApplyState = {
      format: STATE_FORMAT, version: STATE_VERSION, group, appliedSeq: seq, appliedTime: time,
      volumes, updated: new Date().toISOString(),
    };
    writeState(this.statePath, next);
    this.state = next;
    this.durableSeq = seq;
  }

  /** Release the targets and the lock (after checkpoint() when the run went well). */
  close(): void {
    for (const t of this.targets) {
      t.writeback?.close();
      closeImage({ path: t.path, fd: t.fd, size: 0, kind: t.kind });
    }
    this.targets = [];
    this.lock?.release();
    this.lock = null;
  }

  /** One line saying where the replica stands. */
  describe(): string {
    const at = this.appliedTime ? ` (${formatMicros(this.appliedTime)})` : '';
    return `replica at seq ${this.durableSeq}${at}`;
  }
}

/** The first `max` bytes of `pieces` (all of them when they are no longer). */
function upTo(pieces: Buffer[], max: number): Buffer[] {
  let n = 0;
  for (let i = 0; i < pieces.length; i++) {
    const len = pieces[i]!.length;
    if (n + len > max) return n === max ? pieces.slice(0, i) : [...pieces.slice(0, i), pieces[i]!.subarray(0, max - n)];
    n += len;
  }
  return pieces;
}

/** Does `run` touch a byte that one of the writes in flight touches? */
function overlapsAny(run: Run, inFlight: Set<{ run: Run }>): boolean {
  for (const w of inFlight) if (w.run.target === run.target && w.run.start < run.end && run.start < w.run.end) return true;
  return false;
}

function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

/** Size of an existing target, null if it does not exist. */
function targetSize(path: string): number | null {
  try {
    statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, `cannot open target ${path}`);
  }
  const h = openImage(path, 'r');
  closeImage(h);
  return h.size;
}

/**
 * Create a sparse file of `size` bytes at `path`, atomically: a temp file is sized
 * and synced, then hard-linked into place (never over an existing file).
 */
function createSparse(path: string, size: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.new-${process.pid}`);
  let fd = -1;
  try {
    fd = openSync(tmp, C.O_RDWR | C.O_CREAT | C.O_TRUNC, 0o644);
    ftruncateSync(fd, size);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    linkSync(tmp, path);
    syncDir(dirname(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new DrError('DR_EXISTS', `target ${path} appeared while dr-apply was creating it`);
    throw fromSystemError(err, `cannot create target ${path}`);
  } finally {
    if (fd >= 0) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* linked and removed, or never made */
    }
  }
}
