/**
 * RPO monitoring. Lag is the age of the oldest record the receiver has not yet
 * acknowledged (zero when caught up). When it exceeds the target: one warning on
 * stderr, one JSON event (with --json), the --on-rpo-breach hook run once; when it
 * comes back under: a recovery line and event. Then the next breach starts over.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../cli/log.js';
import { formatDuration, formatMicros } from '../cli/units.js';

/** Records read from the source and not yet acknowledged, oldest first. */
export class LagTracker {
  private seqs: number[] = [];
  private times: number[] = [];
  private head = 0;
  /** highest seq tracked so far */
  tracked = 0;
  acked = 0;

  track(seq: number, time: number): void {
    if (seq <= this.tracked || seq <= this.acked) return;
    this.tracked = seq;
    this.seqs.push(seq);
    this.times.push(time);
  }

  ack(seq: number): void {
    if (seq > this.acked) this.acked = seq;
    while (this.head < this.seqs.length && this.seqs[this.head]! <= seq) this.head++;
    if (this.head > 4096 && this.head * 2 > this.seqs.length) {
      this.seqs = this.seqs.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }

  get pending(): number {
    return this.seqs.length - this.head;
  }

  oldest(): { seq: number; time: number } | null {
    if (this.head >= this.seqs.length) return null;
    return { seq: this.seqs[this.head]!, time: this.times[this.head]! };
  }

  /** milliseconds */
  lag(nowMicros: number): number {
    const o = this.oldest();
    return o ? Math.max(0, (nowMicros - o.time) / 1000) : 0;
  }
}

export interface RpoState {
  lagMs: number;
  targetMs: number | null;
  ackedSeq: number;
  oldest: { seq: number; time: number } | null;
}

export class RpoMonitor {
  breached = false;
  /** the RPO was exceeded at some time during this run */
  everBreached = false;
  breachCount = 0;
  /** the largest lag seen while breached, ms */
  worstLagMs = 0;
  private hooks = new Set<Promise<void>>();

  constructor(
    private readonly opts: {
      log: Logger;
      hook?: string;
      source: string;
      /** a JSON event line (stderr, with --json) */
      event: (obj: Record<string, unknown>) => void;
    },
  ) {}

  check(s: RpoState): void {
    const over = s.targetMs !== null && s.lagMs > s.targetMs;
    if (over && s.lagMs > this.worstLagMs) this.worstLagMs = s.lagMs;
    if (over && !this.breached) {
      this.breached = true;
      this.everBreached = true;
      this.breachCount++;
      const oldest = s.oldest ? `; oldest unacknowledged record seq ${s.oldest.seq} from ${formatMicros(s.oldest.time)}` : '';
      this.opts.log.warn(`RPO breached: lag ${formatDuration(s.lagMs)} is over the target ${formatDuration(s.targetMs!)} (acknowledged up to seq ${s.ackedSeq}${oldest})`);
      this.opts.event({
        event: 'rpo-breach', lag_ms: Math.round(s.lagMs), rpo_ms: s.targetMs, acked_seq: s.ackedSeq,
        oldest_seq: s.oldest?.seq ?? null, oldest_time: s.oldest ? formatMicros(s.oldest.time) : null, breach: this.breachCount,
      });
      if (this.opts.hook) this.runHook(this.opts.hook, s);
    } else if (!over && this.breached) {
      this.breached = false;
      this.opts.log.info(`RPO recovered: lag ${formatDuration(s.lagMs)}${s.targetMs !== null ? ` is within the target ${formatDuration(s.targetMs)}` : ' (no target in force)'}`);
      this.opts.event({ event: 'rpo-recovered', lag_ms: Math.round(s.lagMs), rpo_ms: s.targetMs, acked_seq: s.ackedSeq, breach: this.breachCount });
    }
  }

  private runHook(cmd: string, s: RpoState): void {
    const env = {
      ...process.env,
      DR_RPO_EVENT: 'breach',
      DR_RPO_LAG_MS: String(Math.round(s.lagMs)),
      DR_RPO_TARGET_MS: String(s.targetMs ?? ''),
      DR_RPO_ACKED_SEQ: String(s.ackedSeq),
      DR_RPO_OLDEST_SEQ: s.oldest ? String(s.oldest.seq) : '',
      DR_RPO_OLDEST_TIME: s.oldest ? formatMicros(s.oldest.time) : '',
      DR_RPO_SOURCE: this.opts.source,
      DR_RPO_BREACH: String(this.breachCount),
    };
    const p = new Promise<void>((resolve) => {
      // The hook is a command line written by the user, run by /bin/sh like a cron entry.
      const child = spawn('/bin/sh', ['-c', cmd], { env, stdio: ['ignore', 2, 2] });
      child.on('error', (err) => {
        this.opts.log.warn(`--on-rpo-breach command could not start: ${err.message}`);
        resolve();
      });
      child.on('exit', (code, sig) => {
        if (code !== 0) this.opts.log.warn(`--on-rpo-breach command exited with ${sig ?? `status ${code}`}`);
        resolve();
      });
    });
    this.hooks.add(p);
    void p.then(() => this.hooks.delete(p));
  }

  /** Wait for hooks still running (before exit). */
  async settle(): Promise<void> {
    await Promise.all([...this.hooks]);
  }
}
