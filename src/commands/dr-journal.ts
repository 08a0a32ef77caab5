/** dr-journal: the durable journal store of a volume group (src/store does the work). */
import { once } from 'node:events';
import { closeSync, createReadStream, fstatSync, openSync } from 'node:fs';
import { runCli, type CommonArgs, type Context } from '../cli/main.js';
import type { Logger } from '../cli/log.js';
import { readAhead, widenPipe } from '../cli/io.js';
import { formatBytes, formatMicros, parseDuration, parseSize, parseTime } from '../cli/units.js';
import { DrError, EXIT, fromSystemError } from '../errors.js';
import { nowMicros } from '../format/codec.js';
import { CheckedFileReader, type CheckedChunk } from '../format/checked-reader.js';
import { MARK_KINDS, idToString, newId, type MarkKind } from '../format/layout.js';
import { JournalStore, prune } from '../store/index.js';
import { StreamIngest } from '../store/ingest.js';
import { GroupCommit } from '../store/group-commit.js';
import { isArchiveUrl } from '../archive/url.js';
import { register as registerArchive, printArchivedGroups } from './journal-archive.js';

type DirArgs = CommonArgs & { dir: string };

function open(args: DirArgs, ctx: Context, create = false, segmentSize?: number): Promise<JournalStore> {
  return JournalStore.open(args.dir, { create, log: ctx.log, segmentSize });
}

export function main(argv: string[]): Promise<number> {
  return runCli('dr-journal', argv, (y, wrap) =>
    registerArchive(y, wrap)
      .usage('$0 <command> DIR [options]\n\nThe durable journal store of a volume group: history window, index and bookmarks.')
      .command(
        'append <dir> [file]',
        'Append a journal stream (standard input) to the store, creating it if absent',
        (c) => c
          .positional('dir', { type: 'string', demandOption: true, description: 'store directory' })
          .positional('file', { type: 'string', default: '-', description: 'stream file, or - for standard input' })
          .option('segment-size', { type: 'string', description: 'size of segment files when creating the store (default 64M)' }),
        wrap<DirArgs & { file: string; segmentSize?: string }>(async (args, ctx) => append(args, ctx)),
      )
      .command(
        'cat <dir>',
        'Write the stored records as a valid stream on standard output',
        (c) => c
          .positional('dir', { type: 'string', demandOption: true, description: 'store directory' })
          .option('from', { type: 'number', description: 'first seq to write' })
          .option('since', { type: 'string', description: 'start at the first record at or after this ISO-8601 time' })
          .option('until', { type: 'string', description: 'stop at POINT: latest, seq:N, mark:NAME or an ISO-8601 time' })
          .option('follow', { alias: 'f', type: 'boolean', description: 'keep writing new records as they are made durable (stop with SIGINT/SIGTERM)' }),
        wrap<DirArgs & { from?: number; since?: string; until?: string; follow?: boolean }>(async (args, ctx) => {
          const store = await open(args, ctx);
          if (args.from !== undefined && (!Number.isSafeInteger(args.from) || args.from < 1)) throw new DrError('DR_USAGE', `--from ${args.from}: give a seq >= 1`);
          const untilSeq = args.until !== undefined ? store.resolvePoint(args.until).seq : undefined;
          const sinceTime = args.since !== undefined ? parseTime(args.since) : undefined;
          if (args.follow) ctx.handlesStop();
          widenPipe(1);
          // write by hand (not pipeline): a store error then reaches the user as itself, not as a stdout error;
          // a chunk's read buffer is reused once stdout has taken it
          for await (const c of store.catChunks({ fromSeq: args.from, sinceTime, untilSeq, follow: args.follow, signal: ctx.signal })) {
            if (!process.stdout.write(c.bytes, () => c.release())) await once(process.stdout, 'drain');
          }
          return EXIT.OK;
        }),
      )
      .command(
        'ls <dir>',
        'Show volumes, window, counts, segments and disk use (of s3://BUCKET/PREFIX: the archived groups there)',
        (c) => c.positional('dir', { type: 'string', demandOption: true, description: 'store directory, or s3://BUCKET/[PREFIX]' }),
        wrap<DirArgs>(async (args, ctx) => {
          if (isArchiveUrl(args.dir)) return printArchivedGroups(args.dir, ctx);
          const info = (await open(args, ctx)).info();
          if (ctx.json) {
            ctx.emit(info);
            return EXIT.OK;
          }
          const out: string[] = [];
          out.push(`store:    ${info.dir}`);
          out.push(`group:    ${info.groupId ? idToString(Buffer.from(info.groupId, 'hex')) : '(none yet)'}`);
          out.push(`volumes:  ${info.volumes.length}${info.volumes.map((v) => `\n  ${v.index} ${v.name} ${formatBytes(v.size)} (${v.size} bytes, block ${v.blockSize}) id ${idToString(Buffer.from(v.id, 'hex'))}`).join('')}`);
          out.push(`window:   seq ${info.firstSeq}..${info.lastSeq}${info.firstTime !== null ? ` (${formatMicros(info.firstTime)} .. ${formatMicros(info.lastTime!)})` : ''}`);
          out.push(`records:  ${info.records} (${formatBytes(info.writeBytes)} written, ${formatBytes(info.zeroBytes)} zeroed)`);
          out.push(`base:     generation ${info.baseGeneration}${info.baseTime ? `, as of ${formatMicros(info.baseTime)}` : ''}, ${info.foldedRecords} records folded in`);
          out.push(`segments: ${info.segments.length} (${formatBytes(info.segmentBytes)}, up to ${formatBytes(info.segmentSize)} each)`);
          for (const s of info.segments) out.push(`  ${s.file} seq ${s.firstSeq}..${s.lastSeq} ${s.records} records ${formatBytes(s.bytes)} ${s.sealed ? 'sealed' : 'open'}`);
          out.push(`disk use: ${formatBytes(info.diskBytes)}`);
          process.stdout.write(out.join('\n') + '\n');
          return EXIT.OK;
        }),
      )
      .command(
        'marks <dir>',
        'List bookmarks and flush points in the window',
        (c) => c.positional('dir', { type: 'string', demandOption: true, description: 'store directory' }),
        wrap<DirArgs>(async (args, ctx) => {
          const store = await open(args, ctx);
          const marks = store.marks().map((m) => ({ seq: m.seq, time: m.time, iso: formatMicros(m.time), name: m.name, kind: m.kind, id: idToString(m.id) }));
          const flushes = store.flushPoints().map((f) => ({ ...f, iso: formatMicros(f.time) }));
          const folded = store.foldedMarks().map((m) => ({ seq: m.seq, time: m.time, name: m.name, kind: m.kind }));
          if (ctx.json) {
            ctx.emit({ marks, flushPoints: flushes, foldedMarks: folded });
            return EXIT.OK;
          }
          const out: string[] = [];
          for (const m of marks) out.push(`mark  ${m.seq} ${m.iso} ${m.kind} ${m.name}`);
          for (const f of flushes) out.push(`flush ${f.seq} ${f.iso}`);
          if (out.length) process.stdout.write(out.join('\n') + '\n');
          if (folded.length) ctx.log.info(`${folded.length} older mark(s) were folded into the base by prune: ${folded.map((m) => m.name).join(', ')}`);
          return EXIT.OK;
        }),
      )
      .command(
        'mark <dir> <name>',
        'Append a bookmark (MARK record) and make it durable',
        (c) => c
          .positional('dir', { type: 'string', demandOption: true, description: 'store directory' })
          .positional('name', { type: 'string', demandOption: true, description: 'bookmark name' })
          .option('kind', { choices: MARK_KINDS as unknown as string[], default: 'user', description: 'what the point is consistent for' }),
        wrap<DirArgs & { name: string; kind: MarkKind }>(async (args, ctx) => {
          const store = await open(args, ctx);
          if (!store.groupId) throw new DrError('DR_NO_STORE', `journal store ${store.dir} holds no volume group yet: append a stream first`);
          const app = await store.appender();
          let seq: number;
          let time: number;
          try {
            seq = app.nextSeq;
            time = Math.max(nowMicros(), store.lastTime);
            app.append({ type: 'mark', seq, time, kind: args.kind, id: newId(), name: String(args.name) });
            await app.sync();
          } finally {
            await app.close();
          }
          if (ctx.json) ctx.emit({ seq, time, name: String(args.name), kind: args.kind });
          else process.stdout.write(`${seq}\n`);
          ctx.log.info(`mark ${JSON.stringify(String(args.name))} (${args.kind}) at seq ${seq}, ${formatMicros(time)}`);
          return EXIT.OK;
        }),
      )
      .command(
        'last <dir>',
        'Print the last durable seq (what a sender resumes after)',
        (c) => c.positional('dir', { type: 'string', demandOption: true, description: 'store directory' }),
        wrap<DirArgs>(async (args, ctx) => {
          const store = await open(args, ctx);
          if (ctx.json) ctx.emit({ seq: store.lastSeq, time: store.lastSeq >= store.firstSeq ? store.lastTime : null, firstSeq: store.firstSeq });
          else process.stdout.write(`${store.lastSeq}\n`);
          return EXIT.OK;
        }),
      )
      .command(
        'prune <dir>',
        'Slide the history window: fold older records into the base images and release whole segments',
        (c) => c
          .positional('dir', { type: 'string', demandOption: true, description: 'store directory' })
          .option('keep', { type: 'string', description: 'keep at least this much history, e.g. 7d, 12h (older segments are folded)' })
          .option('keep-size', { type: 'string', description: 'keep at most this many bytes of segments, e.g. 20G' }),
        wrap<DirArgs & { keep?: string; keepSize?: string }>(async (args, ctx) => {
          if (args.keep === undefined && args.keepSize === undefined) throw new DrError('DR_USAGE', 'prune needs --keep DURATION and/or --keep-size SIZE (see dr-journal prune --help)');
          const keepMs = args.keep !== undefined ? parseDuration(args.keep, '--keep') : undefined;
          const keepBytes = args.keepSize !== undefined ? parseSize(args.keepSize, '--keep-size') : undefined;
          const store = await open(args, ctx);
          const r = await prune(store, { keepMs, keepBytes, onStep: (step) => ctx.log.debug(`prune: ${step}`) });
          if (ctx.json) {
            ctx.emit({ ...r, foldedMarks: r.foldedMarks.map((m) => ({ seq: m.seq, time: m.time, name: m.name, kind: m.kind })) });
          } else {
            process.stdout.write(`folded ${r.foldedSegments} segment(s), ${r.foldedRecords} records; released ${formatBytes(r.releasedBytes)}; window now starts at seq ${r.firstSeq}\n`);
            for (const m of r.foldedMarks) process.stdout.write(`folded mark ${m.name} (${m.kind}) at seq ${m.seq}: no longer restorable\n`);
          }
          if (r.keptForReaders.length) ctx.log.warn(`${r.keptForReaders.length} file(s) kept while readers use them; a later prune releases them`);
          if (r.heldForArchive) ctx.log.info(`${r.heldForArchive} segment(s) kept until they are confirmed archived (dr-journal archive)`);
          return EXIT.OK;
        }),
      )
      .demandCommand(1, 'name a command'),
  );
}

/** pipe input read ahead of the store while it writes */
const READ_AHEAD = 8 * 1024 * 1024;

/**
 * Chunks of the input stream: Buffers, or chunks whose record CRCs were checked ahead
 * (CheckedFileReader). `release`: present when chunk memory is reused; call it, in order,
 * once a chunk's bytes are written and nothing uses them any more.
 */
interface AppendInput {
  chunks: AsyncIterable<Buffer | CheckedChunk>;
  name: string;
  release: (() => void) | null;
  /** end the chunks early (after a failure found between them) */
  stop(): void;
  close(): Promise<void>;
}

/**
 * The input to append. A regular file (the common `< file` case) is read on a worker
 * thread that also checks its CRCs (CheckedFileReader; the main thread reads the first
 * chunks itself while that thread starts, and all of a small file), in 1 MiB chunks into four
 * buffers: one being decoded, one being written to the journal, two read ahead. (On
 * ext4 here, 1 MiB writes cost less system time than 2 or 4 MiB ones: the chunk stays
 * in the CPU cache between the read and the write.) Pipes and terminals are read as a stream.
 */
function openAppendInput(file: string, signal: AbortSignal, log: Logger): AppendInput {
  let fd = 0;
  const name = file === '-' ? 'standard input' : file;
  if (file !== '-') {
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      throw fromSystemError(err, `cannot open ${file}`);
    }
  }
  const closeFd = (): void => {
    if (fd !== 0) closeSync(fd);
  };
  let regular = false;
  try {
    regular = fstatSync(fd).isFile();
  } catch {
    /* not a file: read it as a stream */
  }
  if (!regular) {
    widenPipe(fd);
    const stream = fd === 0 ? process.stdin : createReadStream('', { fd, autoClose: false });
    signal.addEventListener('abort', () => stream.destroy(), { once: true });
    // read ahead (io.ts): a pipe keeps flowing while a write is waited for; a stop ends it quietly
    return { chunks: readAhead(stream, READ_AHEAD), name, release: null, stop: () => stream.destroy(), close: async () => closeFd() };
  }
  const reader = new CheckedFileReader(fd, name, 1 << 20, 4);
  signal.addEventListener('abort', () => void reader.close(), { once: true });
  return {
    chunks: reader.chunks(),
    name,
    release: () => reader.release(),
    stop: () => void reader.close(),
    close: async () => {
      const { mainThreadBytes, readerThread } = reader.readAt;
      log.debug(`${name}: ${formatBytes(mainThreadBytes)} read on the main thread${readerThread ? ', the rest on a reader thread' : ''}`);
      await reader.close();
      closeFd();
    },
  };
}

async function append(args: DirArgs & { file: string; segmentSize?: string }, ctx: Context): Promise<number> {
  const segmentSize = args.segmentSize !== undefined ? parseSize(args.segmentSize, '--segment-size') : undefined;
  const input = openAppendInput(args.file, ctx.signal, ctx.log);
  try {
    return await appendFrom(input, args, ctx, segmentSize);
  } finally {
    await input.close();
  }
}

async function appendFrom(input: AppendInput, args: DirArgs, ctx: Context, segmentSize: number | undefined): Promise<number> {
  const store = await open(args, ctx, true, segmentSize);
  const app = await store.appender();
  // a stop signal ends the input: what was received is stored and synced, then exit 3
  ctx.handlesStop();
  let failure: unknown = null;
  // Group commit: every FLUSH/MARK is followed by an fdatasync that starts after it was
  // written; while one runs, the input keeps flowing and the next sync covers all that came.
  let syncError: unknown = null;
  const commits = new GroupCommit(() => app.sync(), { failed: (err) => (syncError = err) });
  const ingest = new StreamIngest(app, {
    onPoint: () => commits.request(),
    onError: (err) => {
      syncError ??= err;
      input.stop();
    },
  });
  try {
    let held = false;
    for await (const c of input.chunks) {
      const checked = !Buffer.isBuffer(c);
      await ingest.push(checked ? c.chunk : c, { verifiedEnd: checked ? c.verifiedEnd : undefined, reused: input.release !== null });
      if (held) input.release!(); // the chunk before this one is written
      held = input.release !== null;
      if (syncError) throw syncError;
      if (ctx.signal.aborted) throw new DrError('DR_INTERRUPTED', `interrupted: stored up to seq ${app.nextSeq - 1}`);
    }
    if (syncError) throw syncError;
    await ingest.finish();
    await commits.settle();
    if (syncError) throw syncError;
  } catch (err) {
    // a store failure is the cause of whatever the loop met after it
    failure = syncError ?? err;
  }
  await commits.settle();
  if (ctx.signal.aborted) failure = new DrError('DR_INTERRUPTED', `interrupted: stored up to seq ${app.nextSeq - 1}`);
  try {
    await app.close();
  } catch (err) {
    failure ??= err;
  }
  const durable = app.durableSeq;
  if (failure) {
    if (failure instanceof DrError && failure.code === 'DR_TRUNCATED') {
      throw new DrError('DR_TRUNCATED', `${input.name}: ${failure.message}; stored up to seq ${durable}`, failure.detail);
    }
    throw failure;
  }
  const { appended, skipped, firstAppended } = ingest;
  const summary = { appended, skipped, firstSeq: firstAppended, lastSeq: app.nextSeq - 1, durableSeq: durable };
  if (ctx.json) ctx.emit(summary);
  ctx.log.info(`appended ${appended} record(s)${appended ? ` (seq ${firstAppended}..${app.nextSeq - 1})` : ''}, skipped ${skipped} already stored; durable up to seq ${durable}`);
  return EXIT.OK;
}
