/**
 * A raw NBD client for bad-input tests: it speaks the handshake and requests
 * byte by byte as the spec lays them out, so tests can send what real clients
 * never would (bad magic, requests past the end, oversized, unknown commands).
 */
import net from 'node:net';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC = 0x3e889045565a9n;

export class RawNbd {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  closed = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  static connect(path: string): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path });
      s.once('connect', () => resolve(new RawNbd(s)));
      s.once('error', reject);
    });
  }

  /** Read exactly n bytes; rejects if the server closes first. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const t0 = Date.now();
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`connection closed by the server (${this.buf.length}/${n} bytes)`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
      this.wake = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true once the server has closed the connection. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const t0 = Date.now();
    while (!this.closed && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  /** Greeting + client flags (fixed newstyle, no zeroes); returns the handshake flags. */
  async hello(): Promise<number> {
    const g = await this.read(18);
    if (g.readBigUInt64BE(0) !== NBDMAGIC || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
    const f = Buffer.alloc(4);
    f.writeUInt32BE(3, 0);
    this.write(f);
    return g.readUInt16BE(16);
  }

  sendOption(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<{ opt: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { opt: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len) };
  }

  static goData(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((x, i) => b.writeUInt16BE(x, 6 + n.length + 2 * i));
    return b;
  }

  /** Handshake and NBD_OPT_GO: returns export size and transmission flags. */
  async go(name: string): Promise<{ size: number; flags: number }> {
    await this.hello();
    this.sendOption(7, RawNbd.goData(name));
    let size = -1;
    let flags = 0;
    for (;;) {
      const r = await this.optionReply();
      if (r.type === 3 && r.data.readUInt16BE(0) === 0) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      } else if (r.type === 1) break;
      else if (r.type & 0x80000000) throw new Error(`GO refused: ${r.type.toString(16)} ${r.data.toString()}`);
    }
    return { size, flags };
  }

  request(type: number, offset: number, length: number, cookie: number, flags = 0, magic = 0x25609513): Buffer {
    const b = Buffer.alloc(28);
    b.writeUInt32BE(magic, 0);
    b.writeUInt16BE(flags, 4);
    b.writeUInt16BE(type, 6);
    b.writeBigUInt64BE(BigInt(cookie), 8);
    b.writeBigUInt64BE(BigInt(offset), 16);
    b.writeUInt32BE(length, 24);
    return b;
  }

  /** One simple reply: error and cookie (then `dataLength` bytes of read data when the error is 0). */
  async reply(dataLength = 0): Promise<{ error: number; cookie: number; data: Buffer }> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error('bad simple reply magic');
    const error = h.readUInt32BE(4);
    const data = error === 0 && dataLength > 0 ? await this.read(dataLength) : Buffer.alloc(0);
    return { error, cookie: Number(h.readBigUInt64BE(8)), data };
  }

  destroy(): void {
    this.sock.destroy();
  }
}
