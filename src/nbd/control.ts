/**
 * The control socket of a running tap (unix socket, mode 0600) and its client.
 * One JSON request per line, one JSON reply per line:
 *
 *   {"op":"hello"}                      -> {ok, group, nextSeq, volumes, holdHintMs}
 *   {"op":"quiesce","timeoutMs":N}      -> {ok, seq}   hold new requests; ok once none is in flight
 *   {"op":"mark","name","kind","id","release":bool} -> {ok, seq, time}  append a MARK (durable when answered)
 *   {"op":"release"}                    -> {ok, heldMs}
 *   {"op":"hint","holdHintMs":N}        -> {ok}        remember a good quiesce timeout
 *
 * A hold ends with release, when its connection closes, or after a safety limit,
 * so a coordinator that dies never leaves the volumes stuck.
 */
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import { DrError, fromSystemError } from '../errors.js';
import { MARK_KINDS, checkMarkName, idFromString, idToString, type MarkKind } from '../format/layout.js';
import type { Logger } from '../cli/log.js';
import type { NbdServer } from './server.js';
import type { Tap } from './tap.js';

export interface ControlReply {
  ok: boolean;
  error?: string;
  code?: string;
  [k: string]: unknown;
}

export class ControlServer {
  private srv: net.Server | null = null;
  private holder: net.Socket | null = null;
  private heldSince = 0;
  private safety: NodeJS.Timeout | null = null;
  holdHintMs = 0;
  /** longest hold so far, for the run summary */
  longestHoldMs = 0;

  constructor(private readonly tap: Tap, private readonly nbd: NbdServer, private readonly log?: Logger) {}

  async listen(path: string): Promise<void> {
    try {
      const st = await fsp.lstat(path);
      if (!st.isSocket()) throw new DrError('DR_EXISTS', `${path} exists and is not a socket`);
      await fsp.unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err instanceof DrError ? err : fromSystemError(err, path);
    }
    const srv = net.createServer((s) => this.serve(s));
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        srv.once('error', (err) => reject(fromSystemError(err, `cannot listen on control socket ${path}`)));
        srv.listen({ path }, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    await fsp.chmod(path, 0o600);
    this.srv = srv;
  }

  async close(): Promise<void> {
    this.endHold();
    const srv = this.srv;
    this.srv = null;
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }

  private serve(sock: net.Socket): void {
    let buf = '';
    let chain = Promise.resolve();
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 65536) {
        sock.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        chain = chain.then(async () => {
          const reply = await this.handle(line, sock).catch((err: unknown) => ({
            ok: false, error: (err as Error).message, code: err instanceof DrError ? err.code : 'DR_IO',
          }));
          if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n');
        });
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      if (this.holder === sock) {
        this.log?.warn('control client went away while holding writes: releasing them');
        this.endHold();
      }
    });
  }

  private async handle(line: string, sock: net.Socket): Promise<ControlReply> {
    let req: Record<string, unknown>;
    try {
      req = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return { ok: false, error: 'request is not JSON', code: 'DR_USAGE' };
    }
    switch (req.op) {
      case 'hello':
        return {
          ok: true,
          group: idToString(this.tap.sink.groupId),
          nextSeq: this.tap.sink.nextSeq,
          volumes: this.tap.volumes.map((v) => v.name),
          holdHintMs: this.holdHintMs,
        };
      case 'quiesce': {
        const timeoutMs = Number(req.timeoutMs ?? 1000);
        if (this.holder && this.holder !== sock) return { ok: false, error: 'another checkpoint is holding this tap', code: 'DR_LOCKED' };
        this.holder = sock;
        this.heldSince = performance.now();
        const limit = Math.min(60_000, Math.max(5_000, timeoutMs * 10));
        this.safety = setTimeout(() => {
          this.log?.warn(`writes held for ${limit}ms without a release: releasing them`);
          this.endHold();
        }, limit);
        this.safety.unref();
        let timer: NodeJS.Timeout | undefined;
        const idle = await Promise.race([
          this.nbd.hold().then(() => true),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), timeoutMs);
          }),
        ]);
        clearTimeout(timer);
        if (!idle) {
          this.endHold();
          return { ok: false, error: `requests still in flight after ${timeoutMs}ms`, code: 'DR_TIMEOUT' };
        }
        return { ok: true, seq: this.tap.sink.nextSeq - 1, confirmMs: performance.now() - this.heldSince };
      }
      case 'mark': {
        const name = String(req.name ?? '');
        checkMarkName(name);
        const kind = String(req.kind ?? 'user') as MarkKind;
        if (!MARK_KINDS.includes(kind)) return { ok: false, error: `bad mark kind ${kind}`, code: 'DR_USAGE' };
        const id = typeof req.id === 'string' ? idFromString(req.id) : undefined;
        const done = this.tap.mark(name, kind, id);
        // The MARK is in the journal order now; writes may go on while it becomes durable.
        const heldMs = req.release && this.holder === sock ? this.endHold() : undefined;
        const r = await done;
        return { ok: true, seq: r.seq, time: r.time, id: idToString(r.id), heldMs };
      }
      case 'release':
        // only the client that holds may release (a coordinator whose hold was refused must not end another's)
        return { ok: true, heldMs: this.holder === sock ? this.endHold() : 0 };
      case 'hint':
        this.holdHintMs = Math.max(0, Number(req.holdHintMs) || 0);
        return { ok: true };
      default:
        return { ok: false, error: `unknown op ${JSON.stringify(req.op)}`, code: 'DR_USAGE' };
    }
  }

  /** Release a hold; returns how long writes were held (ms). */
  private endHold(): number {
    if (this.safety) clearTimeout(this.safety);
    this.safety = null;
    const held = this.holder ? performance.now() - this.heldSince : 0;
    if (this.holder) this.longestHoldMs = Math.max(this.longestHoldMs, held);
    this.holder = null;
    this.nbd.release();
    return held;
  }
}

/** A connection to one tap's control socket. */
export class ControlClient {
  private buf = '';
  private waiting: Array<{ resolve: (r: ControlReply) => void; reject: (e: Error) => void }> = [];
  private error: Error | null = null;

  private constructor(readonly path: string, private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiting.shift();
        try {
          w?.resolve(JSON.parse(line) as ControlReply);
        } catch {
          w?.reject(new DrError('DR_PEER', `control socket ${path} sent a reply that is not JSON`));
        }
      }
    });
    const fail = (e: Error) => {
      this.error = e;
      for (const w of this.waiting.splice(0)) w.reject(e);
    };
    sock.on('error', (err) => fail(fromSystemError(err, `control socket ${path}`)));
    sock.on('close', () => fail(new DrError('DR_PEER', `control socket ${path} closed the connection`)));
  }

  static connect(path: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path });
      s.once('connect', () => resolve(new ControlClient(path, s)));
      s.once('error', (err) => reject(fromSystemError(err, `cannot connect to control socket ${path}`)));
    });
  }

  request(req: Record<string, unknown>): Promise<ControlReply> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(JSON.stringify(req) + '\n');
    });
  }

  close(): void {
    this.sock.end();
  }
}
