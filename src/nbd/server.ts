/**
 * A generic NBD server (fixed newstyle handshake, simple replies) over unix
 * sockets and TCP. What is served is given as NbdExport objects; the server only
 * speaks the protocol: negotiation (GO, INFO, LIST, EXPORT_NAME, ABORT), request
 * parsing, range and size checks, replies and errors. Requests of one connection
 * are executed one after the other, in the order received; several connections
 * and several exports are served at once. A client that breaks the protocol
 * (bad magic) is dropped; the others keep being served.
 */
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import { DrError, fromSystemError } from '../errors.js';
import type { Logger } from '../cli/log.js';
import { ByteQueue } from '../format/byte-queue.js';
import {
  Cmd, CmdFlag, Errno, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT,
  Info, MAX_OPTION_LENGTH, NBD_MAGIC, OPTION_HEADER_SIZE, Opt, REPLY_MAGIC, REQUEST_MAGIC, REQUEST_SIZE, Rep,
  SIMPLE_REPLY_MAGIC, TF, errnoFor,
} from './protocol.js';

/** One export: a range of bytes and what can be done with it. Handlers may be synchronous or return a Promise. */
export interface NbdExport {
  name: string;
  description?: string;
  size: number;
  readOnly: boolean;
  /** block size constraints advertised with NBD_INFO_BLOCK_SIZE (defaults 1 / 4096 / 32 MiB) */
  minBlock?: number;
  preferredBlock?: number;
  maxBlock?: number;
  read(offset: number, length: number): Promise<Buffer> | Buffer;
  /** `data` are slices of the received socket chunks, in order; their lengths add up to the request length */
  write?(offset: number, data: Buffer[], fua: boolean): void | Promise<void>;
  flush?(): void | Promise<void>;
  trim?(offset: number, length: number, fua: boolean): void | Promise<void>;
  zero?(offset: number, length: number, noHole: boolean, fua: boolean): void | Promise<void>;
}

export interface NbdServerOptions {
  exports: NbdExport[];
  log?: Logger;
  /** advertise NBD_FLAG_CAN_MULTI_CONN (a flush on one connection covers writes of all connections) */
  multiConn?: boolean;
}

const DEFAULT_MAX_BLOCK = 32 * 1024 * 1024;
/** replies queued on a socket beyond this: stop executing that client's requests until it drains */
const REPLY_HIGH_WATER = 16 * 1024 * 1024;
/** received bytes queued per connection beyond which it is not read from until they are consumed */
const MAX_QUEUED = 64 * 1024 * 1024;

export class NbdServer {
  private readonly exports: NbdExport[];
  readonly log: Logger | undefined;
  private readonly multiConn: boolean;
  private listeners: net.Server[] = [];
  private conns = new Set<Connection>();
  private closing = false;
  private held = false;
  private holdWaiters: Array<() => void> = [];
  /** requests being executed (asynchronously) across all connections */
  inflight = 0;
  /** connections accepted so far */
  accepted = 0;

  constructor(opts: NbdServerOptions) {
    this.exports = opts.exports;
    this.log = opts.log;
    this.multiConn = opts.multiConn ?? false;
    for (const e of this.exports) {
      if (!Number.isSafeInteger(e.size) || e.size < 0) throw new DrError('DR_USAGE', `export ${e.name}: bad size ${e.size}`);
    }
  }

  findExport(name: string): NbdExport | undefined {
    if (name === '') return this.exports[0];
    return this.exports.find((e) => e.name === name);
  }
  listExports(): readonly NbdExport[] {
    return this.exports;
  }

  transmissionFlags(e: NbdExport): number {
    let f = TF.HAS_FLAGS;
    if (e.readOnly) f |= TF.READ_ONLY;
    if (e.flush) f |= TF.SEND_FLUSH;
    if (!e.readOnly) {
      if (e.write) f |= TF.SEND_FUA;
      if (e.trim) f |= TF.SEND_TRIM;
      if (e.zero) f |= TF.SEND_WRITE_ZEROES;
    }
    if (this.multiConn) f |= TF.CAN_MULTI_CONN;
    return f;
  }

  /** Listen on a unix socket created with mode 0600. A stale socket file is replaced; a live one is refused. */
  async listenUnix(path: string): Promise<void> {
    try {
      const st = await fsp.lstat(path);
      if (!st.isSocket()) throw new DrError('DR_EXISTS', `${path} exists and is not a socket`);
      if (await socketAlive(path)) throw new DrError('DR_EXISTS', `${path}: another server is listening there`);
      await fsp.unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err instanceof DrError ? err : fromSystemError(err, path);
    }
    const srv = this.newListener();
    const old = process.umask(0o177);
    try {
      await listen(srv, { path }, `listen on ${path}`);
    } finally {
      process.umask(old);
    }
    await fsp.chmod(path, 0o600);
    this.listeners.push(srv);
  }

  /** Listen on TCP; returns the port (useful with port 0). */
  async listenTcp(port: number, host = '127.0.0.1'): Promise<number> {
    const srv = this.newListener();
    await listen(srv, { port, host }, `listen on ${host}:${port}`);
    this.listeners.push(srv);
    const addr = srv.address();
    return typeof addr === 'object' && addr ? addr.port : port;
  }

  private newListener(): net.Server {
    const srv = net.createServer({ noDelay: true }, (sock) => {
      if (this.closing) {
        sock.destroy();
        return;
      }
      this.accepted++;
      const c = new Connection(this, sock);
      this.conns.add(c);
      sock.on('close', () => {
        this.conns.delete(c);
        c.closed();
      });
    });
    return srv;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /**
   * Stop starting new requests on every connection and resolve once none is in
   * flight. Handshakes go on; requests wait in their socket buffers until release().
   */
  hold(): Promise<void> {
    this.held = true;
    return this.whenIdle();
  }
  release(): void {
    if (!this.held) return;
    this.held = false;
    for (const c of this.conns) c.pump();
  }
  get isHeld(): boolean {
    return this.held;
  }

  private whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.holdWaiters.push(resolve));
  }
  /** @internal */
  requestDone(): void {
    this.inflight--;
    if (this.inflight === 0) {
      const w = this.holdWaiters;
      this.holdWaiters = [];
      for (const f of w) f();
    }
  }
  /** @internal */
  mayStart(): boolean {
    return !this.held && !this.closing;
  }

  /** Stop accepting, let requests in flight finish, then close every connection. */
  async close(): Promise<void> {
    this.closing = true;
    // net.Server.close() calls back only once every connection is gone: end them first
    const stopped = Promise.all(this.listeners.map((l) => new Promise<void>((r) => l.close(() => r()))));
    this.listeners = [];
    await this.whenIdle();
    const open = [...this.conns];
    await Promise.all(open.map((c) => c.end()));
    await stopped;
  }
}

function listen(srv: net.Server, opts: net.ListenOptions, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (err: Error) => reject(fromSystemError(err, `cannot ${what}`));
    srv.once('error', onErr);
    srv.listen(opts, () => {
      srv.off('error', onErr);
      resolve();
    });
  });
}

function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

type State = 'client-flags' | 'option' | 'transmission' | 'closed';

interface Request {
  flags: number;
  type: number;
  cookie: Buffer;
  offset: number;
  length: number;
}

/** One client: handshake, then requests executed in order. */
class Connection {
  private q = new ByteQueue();
  private state: State = 'client-flags';
  private noZeroes = false;
  private export: NbdExport | null = null;
  private pending: Request | null = null;
  /** bytes of a refused request's payload still to be dropped */
  private skipping = 0;
  private skippedReq: Request | null = null;
  private busy = false;
  private readonly id: number;

  constructor(private readonly srv: NbdServer, private readonly sock: net.Socket) {
    this.id = srv.accepted;
    sock.setNoDelay(true);
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBD_MAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    sock.write(hello);
    sock.on('data', (d: Buffer) => {
      this.q.push(d);
      this.pump();
      // requests keep coming while one waits (a flush, a hold): stop reading past a bound
      if (this.q.length > MAX_QUEUED && !this.sock.isPaused()) this.sock.pause();
    });
    sock.on('drain', () => this.pump());
    sock.on('error', (err) => this.srv.log?.debug(`client ${this.id}: ${err.message}`));
  }

  closed(): void {
    this.state = 'closed';
  }

  end(): Promise<void> {
    return new Promise((resolve) => {
      if (this.state === 'closed' || this.sock.destroyed) return resolve();
      this.state = 'closed';
      this.sock.once('close', () => resolve());
      this.sendReplies();
      this.sock.end();
      setTimeout(() => this.sock.destroy(), 2000).unref();
    });
  }

  private drop(why: string): void {
    this.srv.log?.warn(`client ${this.id}: ${why}; disconnecting it`);
    this.state = 'closed';
    this.sock.destroy();
  }

  /** Consume whatever complete messages are queued. */
  pump(): void {
    this.consume();
    if (this.sock.isPaused() && this.q.length <= MAX_QUEUED / 2 && this.state !== 'closed') this.sock.resume();
  }

  private consume(): void {
    while (!this.busy && this.state !== 'closed') {
      if (this.state === 'client-flags') {
        if (this.q.length < 4) return;
        const flags = this.q.take(4).readUInt32BE(0);
        if (flags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) return this.drop(`unknown client flags 0x${flags.toString(16)}`);
        this.noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
        this.state = 'option';
      } else if (this.state === 'option') {
        if (!this.option()) return;
      } else {
        if (!this.transmission()) return;
      }
    }
  }

  // ------------------------------------------------------------ negotiation

  private optionHeader: { opt: number; length: number } | null = null;

  /** Handle one option if it is complete; false when more bytes are needed. */
  private option(): boolean {
    if (!this.optionHeader) {
      if (this.q.length < OPTION_HEADER_SIZE) return false;
      const h = this.q.take(OPTION_HEADER_SIZE);
      if (h.readBigUInt64BE(0) !== IHAVEOPT) {
        this.drop('bad option magic');
        return false;
      }
      this.optionHeader = { opt: h.readUInt32BE(8), length: h.readUInt32BE(12) };
      if (this.optionHeader.length > MAX_OPTION_LENGTH) {
        this.drop(`option ${this.optionHeader.opt} with ${this.optionHeader.length} bytes of data`);
        return false;
      }
    }
    const { opt, length } = this.optionHeader;
    if (this.q.length < length) return false;
    const data = length > 0 ? this.q.take(length) : Buffer.alloc(0);
    this.optionHeader = null;
    switch (opt) {
      case Opt.EXPORT_NAME: {
        const e = this.srv.findExport(data.toString('utf8'));
        if (!e) {
          this.drop(`unknown export ${JSON.stringify(data.toString('utf8'))} (EXPORT_NAME)`);
          return false;
        }
        const b = Buffer.alloc(this.noZeroes ? 10 : 134);
        b.writeBigUInt64BE(BigInt(e.size), 0);
        b.writeUInt16BE(this.srv.transmissionFlags(e), 8);
        this.sock.write(b);
        this.startTransmission(e);
        return true;
      }
      case Opt.ABORT:
        this.optReply(opt, Rep.ACK);
        this.state = 'closed';
        this.sock.end();
        return false;
      case Opt.LIST:
        if (length !== 0) return this.optError(opt, Rep.ERR_INVALID, 'LIST takes no data');
        for (const e of this.srv.listExports()) {
          const name = Buffer.from(e.name, 'utf8');
          const desc = Buffer.from(e.description ?? '', 'utf8');
          const p = Buffer.alloc(4 + name.length + desc.length);
          p.writeUInt32BE(name.length, 0);
          name.copy(p, 4);
          desc.copy(p, 4 + name.length);
          this.optReply(opt, Rep.SERVER, p);
        }
        this.optReply(opt, Rep.ACK);
        return true;
      case Opt.INFO:
      case Opt.GO:
        return this.infoOrGo(opt, data);
      case Opt.STARTTLS:
        return this.optError(opt, Rep.ERR_UNSUP, 'TLS is not supported by this server');
      default:
        return this.optError(opt, Rep.ERR_UNSUP, `option ${opt} is not supported`);
    }
  }

  private infoOrGo(opt: number, data: Buffer): boolean {
    if (data.length < 6) return this.optError(opt, Rep.ERR_INVALID, 'option data too short');
    const nameLen = data.readUInt32BE(0);
    if (4 + nameLen + 2 > data.length) return this.optError(opt, Rep.ERR_INVALID, 'export name length past the option data');
    const name = data.toString('utf8', 4, 4 + nameLen);
    const nInfo = data.readUInt16BE(4 + nameLen);
    if (4 + nameLen + 2 + 2 * nInfo !== data.length) return this.optError(opt, Rep.ERR_INVALID, 'information request count does not match the option data');
    const wanted = new Set<number>();
    for (let i = 0; i < nInfo; i++) wanted.add(data.readUInt16BE(4 + nameLen + 2 + 2 * i));
    const e = this.srv.findExport(name);
    if (!e) return this.optError(opt, Rep.ERR_UNKNOWN, `no export named ${JSON.stringify(name)}`);
    const exp = Buffer.alloc(12);
    exp.writeUInt16BE(Info.EXPORT, 0);
    exp.writeBigUInt64BE(BigInt(e.size), 2);
    exp.writeUInt16BE(this.srv.transmissionFlags(e), 10);
    this.optReply(opt, Rep.INFO, exp);
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(Info.BLOCK_SIZE, 0);
    bs.writeUInt32BE(e.minBlock ?? 1, 2);
    bs.writeUInt32BE(e.preferredBlock ?? 4096, 6);
    bs.writeUInt32BE(e.maxBlock ?? DEFAULT_MAX_BLOCK, 10);
    this.optReply(opt, Rep.INFO, bs);
    if (wanted.has(Info.NAME)) {
      const n = Buffer.from(e.name, 'utf8');
      const p = Buffer.alloc(2 + n.length);
      p.writeUInt16BE(Info.NAME, 0);
      n.copy(p, 2);
      this.optReply(opt, Rep.INFO, p);
    }
    if (wanted.has(Info.DESCRIPTION) && e.description) {
      const d = Buffer.from(e.description, 'utf8');
      const p = Buffer.alloc(2 + d.length);
      p.writeUInt16BE(Info.DESCRIPTION, 0);
      d.copy(p, 2);
      this.optReply(opt, Rep.INFO, p);
    }
    this.optReply(opt, Rep.ACK);
    if (opt === Opt.GO) this.startTransmission(e);
    return true;
  }

  private startTransmission(e: NbdExport): void {
    this.export = e;
    this.state = 'transmission';
    this.srv.log?.debug(`client ${this.id}: serving export ${e.name}`);
  }

  private optReply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(REPLY_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data.length, 16);
    this.sock.write(data.length ? Buffer.concat([h, data]) : h);
  }

  private optError(opt: number, type: number, message: string): true {
    this.optReply(opt, type, Buffer.from(message, 'utf8'));
    return true;
  }

  // ------------------------------------------------------------ transmission

  /** Execute one request if it is complete; false when more bytes are needed or the connection must wait. */
  private transmission(): boolean {
    if (this.skipping > 0) {
      const n = Math.min(this.skipping, this.q.length);
      this.q.drop(n);
      this.skipping -= n;
      if (this.skipping > 0) return false;
      const r = this.skippedReq!;
      this.skippedReq = null;
      this.reply(r, Errno.EINVAL);
      return true;
    }
    if (this.sock.writableLength > REPLY_HIGH_WATER) return false;
    if (!this.pending) {
      if (this.q.length < REQUEST_SIZE) return false;
      if (!this.srv.mayStart()) return false;
      const h = this.q.take(REQUEST_SIZE);
      if (h.readUInt32BE(0) !== REQUEST_MAGIC) {
        this.drop(`bad request magic 0x${h.readUInt32BE(0).toString(16)}`);
        return false;
      }
      const req: Request = {
        flags: h.readUInt16BE(4),
        type: h.readUInt16BE(6),
        cookie: Buffer.from(h.subarray(8, 16)),
        offset: Number(h.readBigUInt64BE(16)),
        length: h.readUInt32BE(24),
      };
      const e = this.export!;
      if (req.type === Cmd.WRITE && req.length > (e.maxBlock ?? DEFAULT_MAX_BLOCK)) {
        // Refuse without reading the payload as requests: drop its bytes, then reply.
        this.srv.log?.debug(`client ${this.id}: write of ${req.length} bytes is over the maximum request size`);
        this.skipping = req.length;
        this.skippedReq = req;
        return true;
      }
      this.pending = req;
    }
    const req = this.pending;
    if (req.type === Cmd.WRITE && this.q.length < req.length) return false;
    if (!this.srv.mayStart()) return false;
    this.pending = null;
    this.execute(req);
    return true;
  }

  private execute(req: Request): void {
    const e = this.export!;
    const end = req.offset + req.length;
    const fua = (req.flags & CmdFlag.FUA) !== 0;
    const data = req.type === Cmd.WRITE && req.length > 0 ? this.q.takeParts(req.length) : [];
    let result: void | Buffer | Promise<void | Buffer> = undefined;
    const check = (): number => {
      switch (req.type) {
        case Cmd.READ:
          if (req.length > (e.maxBlock ?? DEFAULT_MAX_BLOCK)) return Errno.EINVAL;
          return end > e.size ? Errno.EINVAL : 0;
        case Cmd.WRITE:
          if (e.readOnly || !e.write) return Errno.EPERM;
          return end > e.size ? Errno.ENOSPC : 0;
        case Cmd.WRITE_ZEROES:
          if (e.readOnly || !e.zero) return e.readOnly ? Errno.EPERM : Errno.EINVAL;
          return end > e.size ? Errno.ENOSPC : 0;
        case Cmd.TRIM:
          if (e.readOnly || !e.trim) return e.readOnly ? Errno.EPERM : Errno.EINVAL;
          return end > e.size ? Errno.EINVAL : 0;
        case Cmd.FLUSH:
          return 0;
        case Cmd.DISC:
          return 0;
        default:
          return Errno.EINVAL;
      }
    };
    const bad = check();
    if (bad) {
      this.srv.log?.debug(`client ${this.id}: request type ${req.type} ${req.offset}+${req.length}: error ${bad}`);
      this.reply(req, bad);
      return;
    }
    try {
      switch (req.type) {
        case Cmd.DISC:
          this.state = 'closed';
          this.sendReplies();
          this.sock.end();
          return;
        case Cmd.READ:
          result = req.length === 0 ? Buffer.alloc(0) : e.read(req.offset, req.length);
          break;
        case Cmd.WRITE:
          if (req.length > 0) result = e.write!(req.offset, data, fua);
          break;
        case Cmd.FLUSH:
          if (e.flush) result = e.flush();
          break;
        case Cmd.TRIM:
          if (req.length > 0) result = e.trim!(req.offset, req.length, fua);
          break;
        case Cmd.WRITE_ZEROES:
          if (req.length > 0) result = e.zero!(req.offset, req.length, (req.flags & CmdFlag.NO_HOLE) !== 0, fua);
          break;
      }
    } catch (err) {
      this.failed(req, err);
      return;
    }
    if (result instanceof Promise) {
      this.busy = true;
      this.srv.inflight++;
      result.then(
        (v) => this.finish(req, v),
        (err) => this.finish(req, undefined, err),
      );
    } else {
      this.reply(req, 0, (result as Buffer | undefined) ?? undefined);
    }
  }

  private finish(req: Request, v: void | Buffer, err?: unknown): void {
    this.busy = false;
    if (err !== undefined) this.failed(req, err);
    else this.reply(req, 0, v ?? undefined);
    this.srv.requestDone();
    this.pump();
  }

  private failed(req: Request, err: unknown): void {
    const errno = errnoFor(err);
    this.srv.log?.warn(`client ${this.id}: request type ${req.type} at ${req.offset}+${req.length} failed: ${(err as Error)?.message ?? err}`);
    this.reply(req, errno);
  }

  private replies: Buffer[] = [];

  /**
   * Queue a simple reply. Replies queued during one turn of the event loop leave
   * together (one writev), not one small write each.
   */
  private reply(req: Request, error: number, data?: Buffer): void {
    if (this.state === 'closed' && this.sock.destroyed) return;
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    req.cookie.copy(h, 8);
    if (this.replies.length === 0) setImmediate(() => this.sendReplies());
    this.replies.push(h);
    if (error === 0 && data && data.length > 0) this.replies.push(data);
  }

  private sendReplies(): void {
    const out = this.replies;
    this.replies = [];
    if (this.sock.destroyed || out.length === 0) return;
    if (out.length === 1) {
      this.sock.write(out[0]!);
      return;
    }
    this.sock.cork();
    for (const b of out) this.sock.write(b);
    this.sock.uncork();
  }
}
