/**
 * dr-ship receive: the far end. Greets with its last durable seq, reads the
 * sender's line and then the stream, checks every record (StreamParser), appends
 * it to the journal store and acknowledges seqs once they are durable (synced).
 * Anything it cannot use ends the session with an `error` line on stdout (the
 * sender reads it) and the same one-line error on stderr.
 */
import type { Readable, Writable } from 'node:stream';
import { DrError, fromSystemError } from '../errors.js';
import { StreamParser, type StreamItem } from '../format/codec.js';
import type { StreamHeader, VolumeRecord } from '../format/layout.js';
import { JournalStore, type Appender } from '../store/index.js';
import type { Logger } from '../cli/log.js';
import { FrameDecoder } from './compress.js';
import { RecordFramer, type FramedItem } from './framer.js';
import { MAX_LINE, formatAck, formatError, formatHello, parseReply } from './protocol.js';

/** sync (and acknowledge) at least this often while data flows */
const SYNC_BYTES = 32 * 1024 * 1024;
const SYNC_MS = 250;
/** sync this soon after input goes quiet */
const IDLE_MS = 10;

export interface ReceiveResult {
  /** the stream ended with its END trailer (or the sender had nothing to send) */
  complete: boolean;
  firstSeq: number;
  lastSeq: number;
  records: number;
  bytes: number;
}

export async function receive(dir: string, io: { input: Readable; output: Writable; log: Logger }): Promise<ReceiveResult> {
  const { input, output, log } = io;
  const say = (line: string) => {
    try {
      output.write(line);
    } catch {
      /* the sender is gone; the stderr line and exit status remain */
    }
  };
  let appender: Appender | null = null;
  try {
    const store = await JournalStore.open(dir, { create: true, log });
    appender = await store.appender();
    const start = appender.durableSeq;
    say(formatHello({ seq: start, group: store.groupId ? store.groupId.toString('hex') : null, compress: ['brotli'] }));
    const result = await session(appender, input, say, log, start);
    await appender.close();
    appender = null;
    await store.close();
    return result;
  } catch (err) {
    const e = fromSystemError(err, `receiving into ${dir}`);
    say(formatError(e.code, e.message));
    if (appender) {
      try {
        await appender.close();
      } catch {
        /* keep the first error */
      }
    }
    throw e;
  }
}

async function session(appender: Appender, input: Readable, say: (l: string) => void, log: Logger, start: number): Promise<ReceiveResult> {
  const result: ReceiveResult = { complete: false, firstSeq: start + 1, lastSeq: start, records: 0, bytes: 0 };
  let line: Buffer[] | null = [];
  let lineBytes = 0;
  let decoder: FrameDecoder | null = null;
  const framer = new RecordFramer();
  const parser = new StreamParser();
  const parsed: StreamItem[] = [];
  const framed: FramedItem[] = [];
  let header: StreamHeader | null = null;
  const volumes: VolumeRecord[] = [];
  let begun = false;
    let unsynced = 0;
  let lastSync = Date.now();
  let ackedSeq = start;

  const begin = () => {
    if (begun) return;
    if (!header) throw new DrError('DR_TRUNCATED', 'stream without header');
    appender.begin(header, volumes);
    begun = true;
  };

  const consume = (raw: Buffer) => {
    framer.push(raw, framed);
    // The framer gives each record's raw bytes; the parser checks them and decodes.
    for (const it of framed) {
      if (it.kind === 'header') {
        if (it.header.firstSeq !== start + 1) {
          throw new DrError('DR_SEQ_GAP', `the sender's stream starts at seq ${it.header.firstSeq}, but this store's last seq is ${start}`);
        }
        parser.push(it.bytes, parsed);
      } else {
        for (const p of it.record.parts) parser.push(p, parsed);
      }
      for (const item of parsed) {
        if (item.type === 'header') header = item;
        else if (item.type === 'volume') volumes.push(item);
        else if (item.type === 'end') {
          begin();
          result.complete = true;
        } else if (it.kind === 'record') {
          begin();
          try {
            appender.append(item, it.record.parts);
          } catch (err) {
            throw fromSystemError(err, `appending seq ${item.seq}`);
          }
          result.lastSeq = item.seq;
          result.records++;
          result.bytes += it.record.length;
          unsynced += it.record.length;
        }
      }
      parsed.length = 0;
    }
    framed.length = 0;
  };

  const sync = async () => {
    if (appender.durableSeq >= result.lastSeq && unsynced === 0) return;
    unsynced = 0;
    try {
      await appender.sync();
    } catch (err) {
      throw fromSystemError(err, 'syncing the journal store');
    }
    lastSync = Date.now();
    if (appender.durableSeq > ackedSeq) {
      ackedSeq = appender.durableSeq;
      say(formatAck(ackedSeq));
    }
  };

  const onBytes = (chunk: Buffer) => {
    if (line) {
      const nl = chunk.indexOf(0x0a);
      if (nl < 0) {
        line.push(chunk);
        lineBytes += chunk.length;
        if (lineBytes > MAX_LINE) throw new DrError('DR_BAD_MAGIC', 'not a dr-ship sender: no protocol line on standard input');
        return;
      }
      line.push(chunk.subarray(0, nl));
      const text = Buffer.concat(line).toString('utf8');
      line = null;
      const reply = parseReply(text);
      if (reply.from !== start + 1) throw new DrError('DR_SEQ_GAP', `the sender starts at seq ${reply.from}, but this store's last seq is ${start}`);
      if (reply.compress === 'brotli') decoder = new FrameDecoder();
      log.debug(`sender: ${text.trim()}`);
      chunk = chunk.subarray(nl + 1);
      if (chunk.length === 0) return;
    }
    if (decoder) for (const raw of decoder.push(chunk)) consume(raw);
    else consume(chunk);
  };

  // Input is appended as it arrives; syncs run alongside (one at a time), each
  // followed by an ack of what it made durable.
  await new Promise<void>((resolve, reject) => {
    let syncing = false;
    let ended = false;
    let failed = false;
    let idleTimer: NodeJS.Timeout | null = null;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      if (idleTimer) clearTimeout(idleTimer);
      input.off('data', onData);
      input.pause();
      reject(err);
    };
    const startSync = () => {
      if (syncing || failed) return;
      if (idleTimer) {
        clearTimeout(idleTimer);
        idleTimer = null;
      }
      syncing = true;
      sync().then(() => {
        syncing = false;
        if (ended) finish();
        else if (unsynced >= SYNC_BYTES) startSync();
        else armIdle();
      }, fail);
    };
    const armIdle = () => {
      if (idleTimer || syncing || unsynced === 0) return;
      idleTimer = setTimeout(() => {
        idleTimer = null;
        startSync();
      }, IDLE_MS);
    };
    const finish = () => {
      if (syncing || failed) return;
      syncing = true;
      sync().then(() => {
        if (!result.complete) {
          const nothingSent = framer.header === null && framer.pendingBytes === 0 && (!decoder || decoder.pendingBytes === 0);
          if (line && lineBytes > 0) return fail(new DrError('DR_TRUNCATED', 'the sender closed the connection in the middle of its protocol line'));
          if (nothingSent) {
            result.complete = true; // the sender had nothing to send
            return resolve();
          }
          return fail(
            new DrError('DR_TRUNCATED', `the connection closed before the END of the stream; kept seq ${result.firstSeq}..${result.lastSeq} (${result.records} records), the sender resumes after seq ${result.lastSeq}`, { lastGoodSeq: result.lastSeq }),
          );
        }
        resolve();
      }, fail);
    };
    const onData = (chunk: Buffer) => {
      try {
        onBytes(chunk);
      } catch (err) {
        fail(err);
        return;
      }
      if (unsynced >= SYNC_BYTES || (unsynced > 0 && Date.now() - lastSync >= SYNC_MS)) startSync();
      else armIdle();
    };
    input.on('data', onData);
    input.on('end', () => {
      ended = true;
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = null;
      finish();
    });
    input.on('error', (err) => fail(new DrError('DR_IO', `reading standard input: ${err.message}`)));
  });
  if (!result.complete) throw new DrError('DR_TRUNCATED', 'stream incomplete');
  return result;
}
