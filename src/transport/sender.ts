/**
 * dr-ship send: runs COMMAND (no shell), reads the receiver's greeting, resumes
 * after the receiver's last durable seq, streams records, and follows the acks.
 * A broken connection (COMMAND exits, the pipe breaks, no ack within --timeout)
 * is retried with backoff; an error the receiver reports as permanent (another
 * group, disk full, ...) ends the run with that error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import split2 from 'split2';
import { DrError, EXIT, type DrCode } from '../errors.js';
import { nowMicros } from '../format/codec.js';
import type { Logger } from '../cli/log.js';
import { formatBytes, formatDuration } from '../cli/units.js';
import { createProgress, type Progress } from '../cli/progress.js';
import { RecordFramer, WireStreamWriter, type FramedItem, type RawRecord } from './framer.js';
import { WireOutput, type WireCounters } from './output.js';
import { formatReply, isPermanent, parseHello, parseReceiverLine, type Codec, type Hello } from './protocol.js';
import { TokenBucket, sleep } from './rate.js';
import { LagTracker, RpoMonitor } from './rpo.js';
import { loadSchedule, windowAt, type Schedule, type ScheduleWindow } from './schedule.js';
import type { ShipSource } from './source.js';

export interface SendOptions {
  source: ShipSource;
  command: string[];
  follow: boolean;
  once: boolean;
  compress: boolean;
  /** bytes per second; Infinity = unlimited */
  rate: number;
  rpoMs: number | null;
  scheduleFile: string | null;
  onRpoBreach?: string;
  timeoutMs: number;
  /** how often --json status lines (and the progress bar) are written */
  statusMs: number;
  /** consecutive attempts without progress before giving up */
  retries: number;
  json: boolean;
  log: Logger;
  /** aborted on SIGINT/SIGTERM: finish what was sent, then stop */
  stop: AbortSignal;
}

type State = 'connecting' | 'streaming' | 'caught-up' | 'backoff' | 'done' | 'failed';

type Outcome =
  | { kind: 'done' }
  | { kind: 'broken'; error: DrError; progressed: boolean }
  | { kind: 'fatal'; error: DrError };

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export class Sender {
  private state: State = 'connecting';
  private readonly lag = new LagTracker();
  private readonly rpo: RpoMonitor;
  private readonly bucket: TokenBucket;
  private schedule: Schedule | null = null;
  private window: ScheduleWindow | null = null;
  private counters: WireCounters = { streamBytes: 0, wireBytes: 0 };
  private sentSeq = 0;
  private connections = 0;
  private progress: Progress | null = null;
  private lastStatus = { at: performance.now(), wire: 0, stream: 0 };
  private rateNow = 0;
  private codec: Codec = 'none';
  /** the highest seq known to exist in the source (progress total) */
  private knownSeq = 0;

  constructor(private readonly o: SendOptions) {
    this.bucket = new TokenBucket(o.rate);
    this.rpo = new RpoMonitor({ log: o.log, hook: o.onRpoBreach, source: o.source.name, event: (e) => this.event(e) });
    o.source.onRecord = (seq, time) => {
      this.lag.track(seq, time);
      this.checkRpo();
    };
    if (o.scheduleFile) this.schedule = loadSchedule(o.scheduleFile);
  }

  /** JSON lines go to stderr (stdout stays free for data). */
  private event(obj: Record<string, unknown>): void {
    if (this.o.json) process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...obj }) + '\n');
  }

  /** SIGHUP: read the schedule file again; a bad file keeps the old schedule. */
  reloadSchedule(): void {
    if (!this.o.scheduleFile) return;
    try {
      this.schedule = loadSchedule(this.o.scheduleFile);
      this.o.log.info(`schedule ${this.o.scheduleFile} reloaded (${this.schedule.windows.length} windows)`);
      this.event({ event: 'schedule-reloaded', file: this.o.scheduleFile, windows: this.schedule.windows.length });
      this.applySchedule();
    } catch (err) {
      const e = err as DrError;
      this.o.log.warn(`${e.message} (${e.code}); keeping the schedule in force`);
    }
  }

  private applySchedule(): void {
    const w = this.schedule ? windowAt(this.schedule, new Date()) : null;
    if (w !== this.window) {
      this.window = w;
      if (this.schedule) {
        this.o.log.debug(w ? `schedule line ${w.line} in force: rate ${rateText(w.rate)}, RPO ${w.rpo === null ? 'none' : formatDuration(w.rpo)}` : 'no schedule window in force: using --rate/--rpo');
      }
    }
    this.bucket.setRate(w ? w.rate : this.o.rate);
  }

  private get rpoTarget(): number | null {
    return this.window ? this.window.rpo : this.o.rpoMs;
  }

  /** Cheap: called on every record read and every ack, so a breach is seen at once. */
  private checkRpo(): number {
    const lagMs = this.lag.lag(nowMicros());
    this.rpo.check({ lagMs, targetMs: this.rpoTarget, ackedSeq: this.lag.acked, oldest: this.lag.oldest() });
    return lagMs;
  }

  private tick(): void {
    this.applySchedule();
    const now = performance.now();
    const dt = (now - this.lastStatus.at) / 1000;
    if (dt > 0) this.rateNow = (this.counters.wireBytes - this.lastStatus.wire) / dt;
    this.lastStatus = { at: now, wire: this.counters.wireBytes, stream: this.counters.streamBytes };
    if (this.state === 'streaming' && this.lag.pending === 0) this.state = 'caught-up';
    else if (this.state === 'caught-up' && this.lag.pending > 0) this.state = 'streaming';
    const lagMs = this.checkRpo();
    this.event({
      event: 'status', state: this.state, lag_ms: Math.round(lagMs), rpo_ms: this.rpoTarget, acked_seq: this.lag.acked,
      sent_seq: this.sentSeq, read_seq: this.lag.tracked, bytes: this.counters.streamBytes, wire_bytes: this.counters.wireBytes,
      rate_bps: Math.round(this.rateNow), rate_limit_bps: Number.isFinite(this.bucket.limit) && this.bucket.limit > 0 ? this.bucket.limit : null,
      compress: this.codec, connections: this.connections,
    });
    if (this.progress) {
      this.progress.setTotal(Math.max(1, this.lag.tracked, this.knownSeq));
      this.progress.update(this.lag.acked, { state: this.state, lag: formatDuration(lagMs), rate: `${formatBytes(this.rateNow)}/s` });
    }
  }

  async run(): Promise<number> {
    const { log } = this.o;
    this.applySchedule();
    if (!this.o.json && log.verbosity >= 0) {
      this.progress = createProgress({ total: 1, enabled: true, format: 'dr-ship [{bar}] seq {value}/{total} | {state} | lag {lag} | {rate}' });
      this.progress.update(0, { state: this.state, lag: '0ms', rate: '0 B/s' });
    }
    const timer = setInterval(() => this.tick(), this.o.statusMs);
    const onHup = () => this.reloadSchedule();
    // Without a schedule, SIGHUP keeps its usual meaning (hang-up ends the process).
    if (this.o.scheduleFile) process.on('SIGHUP', onHup);
    let failures = 0;
    let backoff = BACKOFF_FIRST_MS;
    let lastError: DrError | null = null;
    let breach: DrError | null = null;
    try {
      for (;;) {
        // (a finished connection breaks out below: here a stop can only come from a backoff)
        if (this.o.stop.aborted && this.connections > 0) {
          throw new DrError('DR_INTERRUPTED', `stopped while the connection was down (acknowledged up to seq ${this.lag.acked})`);
        }
        this.connections++;
        this.state = 'connecting';
        const outcome = await this.connect();
        if (outcome.kind === 'done') break;
        if (outcome.kind === 'fatal') throw outcome.error;
        lastError = outcome.error;
        if (outcome.progressed) {
          failures = 0;
          backoff = BACKOFF_FIRST_MS;
        }
        failures++;
        if (this.o.stop.aborted) throw new DrError('DR_INTERRUPTED', `stopped while the connection was down (acknowledged up to seq ${this.lag.acked})`);
        if (failures > this.o.retries) {
          const code: DrCode = lastError.exitCode === EXIT.IO ? lastError.code : 'DR_PEER';
          throw new DrError(code, `peer unreachable after ${failures} attempts: ${lastError.message}`);
        }
        this.state = 'backoff';
        log.warn(`${outcome.error.message} (${outcome.error.code}); reconnecting in ${formatDuration(backoff)} (acknowledged up to seq ${this.lag.acked})`);
        this.event({ event: 'disconnected', code: outcome.error.code, message: outcome.error.message, retry_in_ms: backoff, acked_seq: this.lag.acked });
        await sleep(backoff, this.o.stop);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
      if (this.o.stop.aborted && !this.o.source.complete) {
        throw new DrError('DR_INTERRUPTED', `stopped by a signal: acknowledged up to seq ${this.lag.acked}; the rest of ${this.o.source.name} was not read`);
      }
      const inputError = this.o.source.inputError;
      this.state = 'done';
      this.tick();
      this.progress?.stop();
      this.progress = null;
      this.event({ event: 'done', acked_seq: this.lag.acked, bytes: this.counters.streamBytes, wire_bytes: this.counters.wireBytes, connections: this.connections, rpo_breaches: this.rpo.breachCount });
      if (inputError) throw inputError;
      log.debug(`done: acknowledged up to seq ${this.lag.acked}, ${formatBytes(this.counters.streamBytes)} of stream in ${formatBytes(this.counters.wireBytes)} on the wire, ${this.connections} connection(s)`);
      if (this.o.once && this.rpo.everBreached) {
        // not a failure: the run is done (status "done" above); the exit status says the RPO was missed
        breach = new DrError('DR_RPO_BREACH', `the RPO target was exceeded during this run (${this.rpo.breachCount} breach${this.rpo.breachCount > 1 ? 'es' : ''}, lag up to ${formatDuration(this.rpo.worstLagMs)}); everything was shipped, acknowledged up to seq ${this.lag.acked}`);
      }
    } catch (err) {
      this.state = 'failed';
      this.tick();
      throw err;
    } finally {
      this.progress?.stop();
      clearInterval(timer);
      process.off('SIGHUP', onHup);
      await this.rpo.settle();
      await this.o.source.close();
    }
    if (breach) throw breach;
    return EXIT.OK;
  }

  /** One connection: greet, negotiate, stream, wait for acks. */
  private async connect(): Promise<Outcome> {
    const { log, command, timeoutMs } = this.o;
    const conn = new AbortController();
    let failure: DrError | null = null;
    let fatal = false;
    let progressed = false;
    const fail = (e: DrError, permanent = false) => {
      if (conn.signal.aborted) return;
      failure = e;
      fatal = permanent;
      conn.abort(e);
    };
    let child: ChildProcess;
    try {
      child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      return { kind: 'fatal', error: new DrError('DR_USAGE', `cannot run ${command[0]}: ${(err as Error).message}`) };
    }
    const stderrTail: string[] = [];
    const exited = new Promise<string>((resolve) => {
      child.on('exit', (code, sig) => resolve(sig ? `killed by ${sig}` : `exit status ${code}`));
      child.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'EACCES') fail(new DrError('DR_USAGE', `cannot run ${command[0]}: ${err.code === 'ENOENT' ? 'no such command' : 'permission denied'}`), true);
        resolve(`failed to start (${err.code ?? err.message})`);
      });
    });
    child.stdin!.on('error', () => {
      /* EPIPE and friends: the exit or the missing acks tell what happened */
    });
    child.stderr!.pipe(split2()).on('data', (l: string) => {
      stderrTail.push(l);
      if (stderrTail.length > 5) stderrTail.shift();
      log.debug(`peer: ${l}`);
    });
    const tail = () => {
      const last = stderrTail.filter((l) => l.trim() !== '').at(-1);
      return last ? `: ${last.trim()}` : '';
    };

    // Lines from the receiver: the greeting first, then acks (or an error).
    let hello: Hello | null = null;
    let helloResolve: (h: Hello) => void = () => {};
    const helloP = new Promise<Hello>((r) => (helloResolve = r));
    let lastAckAt = performance.now();
    let waiters: Array<() => void> = [];
    const wake = () => {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    };
    conn.signal.addEventListener('abort', wake);
    const lines = child.stdout!.pipe(split2());
    lines.on('data', (l: string) => {
      if (conn.signal.aborted) return;
      try {
        if (!hello) {
          hello = parseHello(l);
          helloResolve(hello);
          return;
        }
        const m = parseReceiverLine(l);
        if (m.kind === 'ack') {
          if (m.seq > this.lag.acked) {
            progressed = true;
            this.lag.ack(m.seq);
            this.o.source.acked(m.seq);
            this.checkRpo();
          }
          lastAckAt = performance.now();
          wake();
        } else {
          const e = new DrError(m.code, `receiver: ${m.message}`);
          fail(e, isPermanent(m.code));
        }
      } catch (err) {
        fail(err as DrError, (err as DrError).code === 'DR_UNSUPPORTED_VERSION');
      }
    });
    lines.on('end', () => {
      void exited.then((how) => fail(new DrError('DR_PEER', `${hello ? 'connection closed' : 'the remote command ended before greeting'} (${command[0]} ${how})${tail()}`)));
    });

    // Watchdog: no greeting, or no ack while records are unacknowledged, for --timeout.
    const started = performance.now();
    // ssh's handshake and the remote program's start-up get at least 10 s
    const greetMs = Math.max(timeoutMs, 10_000);
    const watchdog = setInterval(() => {
      const now = performance.now();
      if (!hello && now - started > greetMs) fail(new DrError('DR_TIMEOUT', `no greeting from the receiver within ${formatDuration(greetMs)}`));
      else if (hello && this.sentSeq > this.lag.acked && now - lastAckAt > timeoutMs) {
        fail(new DrError('DR_TIMEOUT', `the receiver acknowledged nothing for ${formatDuration(now - lastAckAt)} with seq ${this.lag.acked + 1}..${this.sentSeq} outstanding`));
      }
    }, Math.min(250, Math.max(50, timeoutMs / 4)));

    const finish = async (outcome: Outcome): Promise<Outcome> => {
      clearInterval(watchdog);
      if (outcome.kind !== 'done') {
        child.stdin!.destroy();
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      }
      // Give COMMAND a moment to exit by itself, then make sure it is gone.
      const t = setTimeout(() => child.kill('SIGKILL'), outcome.kind === 'done' ? timeoutMs : 2000);
      await exited;
      clearTimeout(t);
      return outcome;
    };
    const broken = (): Outcome => (fatal ? { kind: 'fatal', error: failure! } : { kind: 'broken', error: failure!, progressed });

    const h = await Promise.race([helloP, new Promise<null>((r) => conn.signal.addEventListener('abort', () => r(null)))]);
    if (!h) return finish(broken());
    this.state = 'streaming';
    const wantCodec: Codec = this.o.compress && h.compress.includes('brotli') ? 'brotli' : 'none';
    if (this.o.compress && wantCodec === 'none' && this.connections === 1) log.warn('the receiver offers no compression; sending uncompressed');
    this.codec = wantCodec;
    const from = h.seq + 1;
    if (h.seq > this.lag.acked) {
      this.lag.ack(h.seq);
      this.o.source.acked(h.seq);
    }
    log.debug(`connected (${this.connections}): receiver at seq ${h.seq}, group ${h.group ?? 'new'}, compression ${wantCodec}`);
    this.event({ event: 'connected', receiver_seq: h.seq, compress: wantCodec, connection: this.connections });
    child.stdin!.write(formatReply({ compress: wantCodec, from }));

    // Stop (SIGINT/SIGTERM) ends the source's records; the stream is then closed properly.
    const readSignal = AbortSignal.any([conn.signal, this.o.stop]);
    let read;
    try {
      read = await this.o.source.open(from, readSignal);
    } catch (err) {
      const e = err instanceof DrError ? err : new DrError('DR_IO', `reading ${this.o.source.name}: ${(err as Error).message}`);
      fail(e, true);
      return finish(broken());
    }
    if (conn.signal.aborted) return finish(broken());
    this.sentSeq = Math.max(this.sentSeq, h.seq);
    if (read) {
      const out = new WireOutput(child.stdin!, wantCodec, this.bucket, conn.signal, this.counters);
      const IDLE = Symbol('idle');
      /** The next item; when none is ready at once, first send what is batched so the receiver can store and ack it. */
      const nextOf = async <T>(it: AsyncIterator<T>): Promise<IteratorResult<T>> => {
        const next = it.next();
        const r = await Promise.race([next, new Promise<typeof IDLE>((res) => setImmediate(() => res(IDLE)))]);
        if (r !== IDLE) return r;
        await out.flush();
        return next;
      };
      try {
        if (read.kind === 'store') this.knownSeq = Math.max(this.knownSeq, read.lastSeq);
        const writer = new WireStreamWriter({ ...read.header, firstSeq: from });
        try {
          await out.write([writer.start()]);
          for (const v of read.volumes) await out.write(writer.add(v));
          if (read.kind === 'store') {
            // The sealed segments: large slices, as stored.
            for (;;) {
              const slice = await read.sealed.next();
              if (!slice || conn.signal.aborted) {
                slice?.release();
                break;
              }
              for (const r of slice.records) this.lag.track(r.seq, r.time);
              writer.addSlice(slice.records, slice.bytes.length);
              this.checkRpo();
              if (this.sentSeq <= this.lag.acked) lastAckAt = performance.now();
              await out.writeSlice(slice.bytes, slice.release);
              this.sentSeq = slice.records[slice.records.length - 1]!.seq;
            }
            // The rest, record by record from the store's reader (its header, VOLUMEs and END are its own).
            const framer = new RecordFramer();
            const items: FramedItem[] = [];
            const it = conn.signal.aborted ? null : read.rest()[Symbol.asyncIterator]();
            let ended = false;
            while (it) {
              const r = await nextOf(it);
              if (r.done || conn.signal.aborted) break;
              framer.push(r.value, items);
              let last = 0;
              for (const item of items) {
                if (item.kind === 'record') {
                  last = item.record.seq;
                  this.lag.track(item.record.seq, item.record.time);
                  if (this.sentSeq <= this.lag.acked) lastAckAt = performance.now();
                  await out.write(writer.add(item.record));
                } else if (item.kind === 'end') ended = true;
              }
              items.length = 0;
              if (last) {
                this.checkRpo();
                this.sentSeq = last;
              }
            }
            if (!conn.signal.aborted && !ended) throw new DrError('DR_TRUNCATED', `the stream read from ${this.o.source.name} ended without its END trailer`);
          } else {
            const it = read.records[Symbol.asyncIterator]();
            for (;;) {
              const r = await nextOf(it);
              if (r.done || conn.signal.aborted) break;
              const rec: RawRecord = r.value;
              if (this.sentSeq <= this.lag.acked) lastAckAt = performance.now();
              await out.write(writer.add(rec));
              this.sentSeq = rec.seq;
            }
          }
          if (!conn.signal.aborted) {
            await out.write(writer.end());
            await out.flush();
          }
        } finally {
          if (read.kind === 'store') await read.close();
        }
      } catch (err) {
        fail(err instanceof DrError ? err : new DrError('DR_IO', `reading ${this.o.source.name}: ${(err as Error).message}`), err instanceof DrError && isPermanent(err.code));
      }
      if (conn.signal.aborted) return finish(broken());
      // Everything sent: wait for the last ack.
      while (this.lag.acked < this.sentSeq && !conn.signal.aborted) {
        await new Promise<void>((r) => waiters.push(r));
      }
      if (conn.signal.aborted) return finish(broken());
    }
    child.stdin!.end();
    // The receiver exits after the END (or after an empty session); wait for it.
    const how = await Promise.race([exited, sleep(timeoutMs).then(() => 'still running')]);
    if (how !== 'exit status 0' && !conn.signal.aborted) log.debug(`the remote command ended with ${how} after the last ack`);
    return finish({ kind: 'done' });
  }
}

function rateText(r: number): string {
  return Number.isFinite(r) ? `${formatBytes(r)}/s` : 'unlimited';
}
