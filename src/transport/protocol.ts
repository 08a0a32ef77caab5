/**
 * The dr-ship wire protocol, version 1: the text lines the two ends exchange
 * (man/dr-ship.1, PROTOCOL, is the specification; this module is its only
 * implementation).
 *
 *   receiver -> sender (receiver's stdout, one line each, UTF-8, '\n' ended):
 *     drship-receive 1 seq=<last durable seq> group=<32 hex|new> compress=<codec,...>
 *     ack <seq>                      every seq up to <seq> is durable on the receiver
 *     error <DR_CODE> <message>      the receiver gives up; it exits after this line
 *   sender -> receiver (receiver's stdin):
 *     drship-send 1 compress=<codec> from=<seq>
 *     then the journal stream bytes (src/format), first seq <seq>, either raw
 *     (compress=none) or in compressed frames (compress.ts).
 *
 * Unknown key=value fields are ignored (a newer peer may add some); an unknown
 * version or line is refused with a clear error.
 */
import { DrError, CODES, type DrCode } from '../errors.js';

export const PROTOCOL_VERSION = 1;
/** a protocol line is never longer than this (an error message is cut to fit) */
export const MAX_LINE = 4096;
export const CODECS = ['brotli', 'none'] as const;
export type Codec = (typeof CODECS)[number];

export interface Hello {
  version: number;
  /** the receiver's last durable seq (0: empty store) */
  seq: number;
  /** the receiver store's group, null while it is new */
  group: string | null;
  /** codecs the receiver can decode, best first */
  compress: Codec[];
}

export interface Reply {
  version: number;
  compress: Codec;
  from: number;
}

export type ReceiverLine =
  | { kind: 'ack'; seq: number }
  | { kind: 'error'; code: DrCode; message: string };

function fields(parts: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq > 0) m.set(p.slice(0, eq), p.slice(eq + 1));
  }
  return m;
}

function seqField(v: string | undefined, what: string): number {
  if (v === undefined || !/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new DrError('DR_PEER', `protocol error: ${what} ${JSON.stringify(v ?? '')} is not a sequence number`);
  }
  return Number(v);
}

function quote(line: string): string {
  return JSON.stringify(line.length > 80 ? line.slice(0, 80) + '...' : line);
}

export function formatHello(h: Omit<Hello, 'version'>): string {
  return `drship-receive ${PROTOCOL_VERSION} seq=${h.seq} group=${h.group ?? 'new'} compress=${h.compress.join(',')}\n`;
}

/** The receiver's first line. Anything else is refused: the peer is not a dr-ship receiver. */
export function parseHello(line: string): Hello {
  const parts = line.trim().split(/\s+/);
  if (parts[0] !== 'drship-receive') {
    throw new DrError('DR_PEER', `the remote command did not greet as "dr-ship receive" (first line ${quote(line)}); is COMMAND right?`);
  }
  const version = Number(parts[1]);
  if (version !== PROTOCOL_VERSION) {
    throw new DrError('DR_UNSUPPORTED_VERSION', `receiver speaks dr-ship protocol ${parts[1] ?? '?'}; this sender speaks ${PROTOCOL_VERSION}`);
  }
  const f = fields(parts.slice(2));
  const group = f.get('group');
  if (group === undefined || (group !== 'new' && !/^[0-9a-f]{32}$/.test(group))) {
    throw new DrError('DR_PEER', `protocol error: bad group ${quote(group ?? '')} in the receiver's greeting`);
  }
  const compress = (f.get('compress') ?? '')
    .split(',')
    .filter((c): c is Codec => (CODECS as readonly string[]).includes(c));
  return { version, seq: seqField(f.get('seq'), 'receiver seq'), group: group === 'new' ? null : group, compress };
}

export function formatReply(r: Omit<Reply, 'version'>): string {
  return `drship-send ${PROTOCOL_VERSION} compress=${r.compress} from=${r.from}\n`;
}

/** The sender's line, read by the receiver. */
export function parseReply(line: string): Reply {
  const parts = line.trim().split(/\s+/);
  if (parts[0] !== 'drship-send') {
    throw new DrError('DR_BAD_MAGIC', `not a dr-ship sender: expected "drship-send ${PROTOCOL_VERSION} ..." on standard input, got ${quote(line)}`);
  }
  const version = Number(parts[1]);
  if (version !== PROTOCOL_VERSION) {
    throw new DrError('DR_UNSUPPORTED_VERSION', `sender speaks dr-ship protocol ${parts[1] ?? '?'}; this receiver speaks ${PROTOCOL_VERSION}`);
  }
  const f = fields(parts.slice(2));
  const c = f.get('compress') ?? 'none';
  if (!(CODECS as readonly string[]).includes(c)) {
    throw new DrError('DR_UNSUPPORTED_FEATURE', `sender asks for compression ${JSON.stringify(c)}, which this receiver does not know (known: ${CODECS.join(', ')})`);
  }
  return { version, compress: c as Codec, from: seqField(f.get('from'), 'sender from') };
}

export function formatAck(seq: number): string {
  return `ack ${seq}\n`;
}

export function formatError(code: DrCode, message: string): string {
  const oneLine = message.replace(/[\r\n]+/g, ' ');
  return `error ${code} ${oneLine.length > MAX_LINE - 64 ? oneLine.slice(0, MAX_LINE - 64) : oneLine}\n`;
}

/** A line the receiver sends after its greeting. */
export function parseReceiverLine(line: string): ReceiverLine {
  const m = /^(\S+)\s*(.*)$/.exec(line.trim());
  if (m && m[1] === 'ack') return { kind: 'ack', seq: seqField(m[2], 'ack') };
  if (m && m[1] === 'error') {
    const e = /^(DR_[A-Z_]+)\s*(.*)$/.exec(m[2] ?? '');
    if (e && e[1]! in CODES) return { kind: 'error', code: e[1] as DrCode, message: e[2] || 'receiver failed' };
    return { kind: 'error', code: 'DR_PEER', message: m[2] || 'receiver failed' };
  }
  throw new DrError('DR_PEER', `protocol error: the receiver sent ${quote(line)}`);
}

/** Errors a new connection cannot cure: the sender stops instead of retrying. */
export function isPermanent(code: DrCode): boolean {
  if (code === 'DR_NO_SPACE') return true;
  const transient: DrCode[] = ['DR_LOCKED', 'DR_TRUNCATED', 'DR_TIMEOUT', 'DR_PEER', 'DR_EPIPE', 'DR_IO', 'DR_INTERRUPTED'];
  if (transient.includes(code)) return false;
  return true;
}
