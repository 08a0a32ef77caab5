/**
 * dr-ship receive: the far end. Greets with its last durable seq, reads the
 * sender's line and then the stream, checks every record (StreamParser), appends
 * it to the journal store and acknowledges seqs once they are durable (synced).
 * Anything it cannot use ends the session with an `error` line on stdout (the
 * sender reads it) and the same one-line error on stderr.
 */
import type { Readable, Writable } from 'node:stream';
import { DrError, fromSystemError } from '../errors.js';
import { JournalStore, type Appender } from '../store/index.js';
import { StreamIngest } from '../store/ingest.js';
import { GroupCommit } from '../store/group-commit.js';
import type { Logger } from '../cli/log.js';
import { readAhead } from '../cli/io.js';
import { FrameDecoder } from './compress.js';
import { MAX_LINE, formatAck, formatError, formatHello, parseReply } from './protocol.js';

/** sync (and acknowledge) at least this often while data flows */
const SYNC_BYTES = 32 * 1024 * 1024;
const SYNC_MS = 250;
/** sync this soon after input goes quiet */
const IDLE_MS = 10;
/** input read ahead of the store while it writes (io.ts readAhead) */
const READ_AHEAD = 8 * 1024 * 1024;
/** decoded bytes after which the frame decoder's memory is reused (once they are written) */
const RECYCLE_BYTES = 8 * 1024 * 1024;

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
  let line = [] as Buffer[] | null;
  let lineBytes = 0;
  let decoder = null as FrameDecoder | null;
  let recycledAt = 0;
  const ingest = new StreamIngest(appender, {
    onHeader: (h) => {
      if (h.firstSeq !== start + 1) {
        throw new DrError('DR_SEQ_GAP', `the sender's stream starts at seq ${h.firstSeq}, but this store's last seq is ${start}`);
      }
    },
    onError: (err) => failLater(err),
  });
  const result = (): ReceiveResult => ({
    complete: ingest.ended, firstSeq: start + 1, lastSeq: Math.max(start, ingest.lastSeq), records: ingest.appended + ingest.skipped, bytes: ingest.bytes,
  });

  // Syncs run alongside the input (one at a time), each followed by an ack of what it made
  // durable; one requested while another runs follows it (group-commit.ts), so the last
  // records always get theirs.
  let ackedSeq = start;
  let lastSync = Date.now();
  let syncedBytes = 0;
  /** a failure found while the input loop waits for data: ends the loop (the input is destroyed) */
  let failure: DrError | null = null;
  const failLater = (err: unknown): void => {
    failure ??= fromSystemError(err, 'receiving');
    input.destroy();
  };
  const commits = new GroupCommit(
    () => {
      syncedBytes = ingest.bytes;
      return appender.sync();
    },
    {
      done: () => {
        lastSync = Date.now();
        if (appender.durableSeq > ackedSeq) {
          ackedSeq = appender.durableSeq;
          say(formatAck(ackedSeq));
        }
      },
      failed: (err) => failLater(fromSystemError(err, 'syncing the journal store')),
    },
  );
  const startSync = (): void => {
    if (!failure && ingest.bytes > syncedBytes) commits.request();
  };
  const settle = async (): Promise<void> => {
    await commits.settle();
    if (failure) throw failure;
  };
  // input that goes quiet is made durable (and acknowledged) soon after
  let idleTimer: NodeJS.Timeout | null = null;
  const quiet = (): void => {
    idleTimer = null;
    ingest.flush().then(startSync, failLater);
  };

  const onBytes = async (chunk: Buffer): Promise<void> => {
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
    if (decoder) {
      for (const raw of decoder.push(chunk)) await ingest.push(raw);
      if (decoder.rawBytes - recycledAt >= RECYCLE_BYTES) {
        // nothing refers to the decoded bytes once they are written and the parser holds copies
        await ingest.written();
        ingest.parser.detach();
        decoder.recycle();
        recycledAt = decoder.rawBytes;
      }
    } else await ingest.push(chunk);
  };

  try {
    for await (const chunk of readAhead(input, READ_AHEAD)) {
      if (idleTimer) clearTimeout(idleTimer);
      await onBytes(chunk);
      if (failure) throw failure;
      if (ingest.bytes - syncedBytes >= SYNC_BYTES || (ingest.bytes > syncedBytes && Date.now() - lastSync >= SYNC_MS)) startSync();
      // when the input goes quiet: hand over what is held back, then a sync for it
      idleTimer = setTimeout(quiet, IDLE_MS);
    }
  } catch (err) {
    if (failure) throw failure;
    throw err instanceof DrError ? err : new DrError('DR_IO', `reading standard input: ${(err as Error).message}`);
  } finally {
    if (idleTimer) clearTimeout(idleTimer);
  }
  if (failure) throw failure;
  if (line && lineBytes > 0) throw new DrError('DR_TRUNCATED', 'the sender closed the connection in the middle of its protocol line');
  await ingest.written();
  startSync(); // follows a sync still running (group commit): covers every record
  await settle();
  const r = result();
  if (!r.complete) {
    const nothingSent = ingest.parser.header === null && ingest.parser.pendingBytes === 0 && (!decoder || decoder.pendingBytes === 0);
    if (nothingSent) return { ...r, complete: true }; // the sender had nothing to send
    throw new DrError('DR_TRUNCATED', `the connection closed before the END of the stream; kept seq ${r.firstSeq}..${r.lastSeq} (${r.records} records), the sender resumes after seq ${r.lastSeq}`, { lastGoodSeq: r.lastSeq });
  }
  return r;
}
