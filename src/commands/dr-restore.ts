/** dr-restore: any volume of the group as it was at any point of the history window. */
import { runCli, type CommonArgs, type Context } from '../cli/main.js';
import { widenPipe } from '../cli/io.js';
import { createProgress } from '../cli/progress.js';
import { formatBytes, formatDuration, formatMicros, parseSize } from '../cli/units.js';
import { DrError, EXIT } from '../errors.js';
import { JournalStore, type PointInTimeReader } from '../store/index.js';
import { parallelReader } from '../image/restore-workers.js';
import { isArchiveUrl } from '../archive/url.js';
import { gatedReader } from '../archive/gate.js';
import { restoreToFile, restoreToStream, type RestoreOptions } from '../image/restore-file.js';
import { AtomicOutput, checkOutput, endWriter, fileWriter, openSpecialOutput } from '../image/restore-output.js';
import {
  listRestorePoints, resolveRestorePoint, selectOneVolume, selectVolumes, type RestorePoint, type RestorePointList,
} from '../image/restore-point.js';
import { readPlan } from '../image/restore-ranges.js';
import { offloadedReader } from '../image/restore-preads.js';
import { serveRestorePoints } from '../image/restore-serve.js';
import { writeGroupTar } from '../image/restore-tar.js';

interface RestoreArgs extends CommonArgs {
  dir: string;
  at?: string[];
  out?: string;
  volume?: string;
  consistent?: boolean;
  force?: boolean;
  tar?: string;
  list?: boolean;
  limit: number;
  serve?: boolean;
  socket?: string;
  port?: number;
  host: string;
  writable?: boolean;
  overlay?: string;
  buffer: string;
  endpoint?: string;
  region?: string;
  jobs: number;
}

const USAGE = `$0 DIR --at POINT --out FILE|- [--volume NAME] [--consistent] [--force]
  $0 DIR --at POINT --tar [FILE] [--consistent] [--force]
  $0 DIR --list [--json]
  $0 DIR --serve (--socket PATH | --port N [--host ADDR]) --at POINT [--at POINT ...] [--writable]

Rebuild volumes of a journal store as they were at a point of its history window:
as a file, as one tar for the whole group, or served over NBD at once.
DIR may also be s3://BUCKET/PREFIX, a store archived with dr-journal archive.
POINT is latest, seq:N, mark:NAME or an ISO-8601 time (the last record at or before it).`;

/** yargs reads a lone "-" as a positional: keep it as the value of --out and --tar. */
function dashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if ((a === '--out' || a === '--tar') && argv[i + 1] === '-') {
      out.push(`${a}=-`);
      i++;
    } else out.push(a);
  }
  return out;
}

export function main(argv: string[]): Promise<number> {
  return runCli('dr-restore', dashValues(argv), (y, wrap) =>
    y
      .usage(USAGE)
      .command(
        '$0 <dir>',
        false,
        (c) => c
          .positional('dir', { type: 'string', description: 'the journal store directory, or s3://BUCKET/PREFIX', demandOption: true })
          .option('at', { type: 'string', array: true, description: 'restore point: latest, seq:N, mark:NAME or ISO-8601 time (repeat with --serve)' })
          .option('out', { type: 'string', description: 'write the volume to FILE (sparse), or - for standard output' })
          .option('volume', { type: 'string', description: 'the volume to restore or serve (default: the only one; all with --tar/--serve)' })
          .option('consistent', { type: 'boolean', description: 'move back to the nearest FLUSH or MARK at or before the point' })
          .option('force', { type: 'boolean', description: 'replace an output file that exists' })
          .option('tar', { type: 'string', description: 'write every volume and manifest.json as one tar to FILE (default standard output)' })
          .option('list', { type: 'boolean', description: 'list the restore points: window, marks, flush points' })
          .option('limit', { type: 'number', default: 20, description: 'with --list: show the last N flush points (0: all)' })
          .option('serve', { type: 'boolean', description: 'serve each point as an NBD export until SIGINT/SIGTERM' })
          .option('socket', { type: 'string', description: 'with --serve: listen on this unix socket' })
          .option('port', { type: 'number', description: 'with --serve: listen on this TCP port (0: any free port)' })
          .option('host', { type: 'string', default: '127.0.0.1', description: 'with --serve --port: address to listen on' })
          .option('writable', { type: 'boolean', description: 'with --serve: accept writes into a copy-on-write overlay (the store is never written)' })
          .option('overlay', { type: 'string', description: 'with --writable: directory keeping the overlay files (default: a temporary one, removed at exit)' })
          .option('buffer', { type: 'string', default: '16M', description: 'memory for data being read and written when restoring a file or tar' })
          .option('jobs', { type: 'number', default: 1, description: 'threads reading the journal when restoring a file or tar (1: one read thread for a file of 32 MiB or more, fed by the main block map; more: workers with block maps of their own, only pays with spare cores)' })
          .option('endpoint', { type: 'string', description: 'with an s3:// location: S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS)' })
          .option('region', { type: 'string', description: 'with an s3:// location: S3 region (default: AWS_REGION)' })
          .example('$0 /srv/journal --at mark:before-upgrade --out db.img', 'the volume as of a mark, as a sparse file')
          .example('$0 /srv/journal --at 2026-11-21T10:00:00Z --tar > group.tar', 'every volume at one time, with a manifest')
          .example('$0 /srv/journal --serve --socket /tmp/r.sock --at latest --at seq:1000', 'two points side by side over NBD'),
        wrap<RestoreArgs>(async (args, ctx) => restore(args, ctx)),
      ),
  );
}

async function restore(args: RestoreArgs, ctx: Context): Promise<number> {
  const tarGiven = args.tar !== undefined;
  const modes = [args.out !== undefined && '--out', tarGiven && '--tar', args.list && '--list', args.serve && '--serve'].filter(Boolean);
  if (modes.length !== 1) {
    throw new DrError('DR_USAGE', modes.length === 0
      ? 'say what to do: --out FILE, --tar, --list or --serve (see dr-restore --help)'
      : `${modes.join(' and ')} cannot be used together`);
  }
  const at = args.at ?? [];
  if (!args.list && at.length === 0) throw new DrError('DR_USAGE', `${modes[0]} needs --at POINT (latest, seq:N, mark:NAME or an ISO-8601 time)`);
  if (args.list && at.length > 0) throw new DrError('DR_USAGE', '--list takes no --at');
  if (!args.serve && at.length > 1) throw new DrError('DR_USAGE', 'several --at points are only possible with --serve');
  if (!args.serve) {
    for (const f of ['socket', 'port', 'writable', 'overlay'] as const) {
      if (args[f] !== undefined) throw new DrError('DR_USAGE', `--${f} is only for --serve`);
    }
  }
  if (args.overlay !== undefined && !args.writable) throw new DrError('DR_USAGE', '--overlay is only for --serve --writable');
  if (args.force && !(args.out !== undefined || (tarGiven && args.tar !== '' && args.tar !== '-'))) {
    throw new DrError('DR_USAGE', '--force is only for an output file (--out FILE or --tar FILE)');
  }
  if (args.list && (args.volume !== undefined || args.consistent)) throw new DrError('DR_USAGE', '--list takes no --volume or --consistent');
  const buffer = parseSize(args.buffer, '--buffer');
  if (!Number.isInteger(args.jobs) || args.jobs < 1 || args.jobs > 16) throw new DrError('DR_USAGE', `bad --jobs ${args.jobs}: use 1..16`);
  if (buffer < 64 * 1024) throw new DrError('DR_USAGE', '--buffer must be at least 64K');

  if (!isArchiveUrl(args.dir) && (args.endpoint !== undefined || args.region !== undefined)) {
    throw new DrError('DR_USAGE', '--endpoint and --region are only for an s3:// location');
  }
  const store = isArchiveUrl(args.dir)
    // a store archived by `dr-journal archive`: rebuilt in a temp directory from the bucket alone,
    // fetching only the byte ranges the point needs (everything for --list and several points);
    // loaded only then: the S3 SDK is large
    ? await (await import('../archive/restore.js')).openArchivedStore(args.dir, {
      log: ctx.log, signal: ctx.signal, point: at.length === 1 ? at[0] : undefined, consistent: Boolean(args.consistent),
      s3: { endpoint: args.endpoint, region: args.region },
    })
    : await JournalStore.open(args.dir, { log: ctx.log });
  try {
    if (args.list) return list(store, args, ctx);
    const points = at.map((p) => resolveRestorePoint(store, p, Boolean(args.consistent)));
    for (const p of points) {
      if (p.movedFrom !== undefined && p.movedFrom !== p.seq) {
        const via = p.consistentAt?.kind === 'mark' ? `MARK ${JSON.stringify(p.consistentAt.name)}` : 'FLUSH';
        ctx.log.info(`--consistent: ${p.point} (seq ${p.movedFrom}) moved back to the ${via} at seq ${p.seq}`);
      }
    }
    ctx.handlesStop();
    if (args.serve) return await serve(store, points, args, ctx);
    const rp = readPlan(buffer);
    const plan = { ...rp, readAhead: Math.max(rp.readAhead, args.jobs), signal: ctx.signal };
    if (tarGiven) return await tarGroup(store, points[0]!, args, ctx, plan);
    return await restoreOne(store, points[0]!, args, ctx, plan);
  } finally {
    await store.close();
  }
}

/** below this many bytes to restore, worker threads cost more than they save */
const PARALLEL_MIN = 32 * 1024 * 1024;

/** The point's reader; with jobs > 1 its reads run on worker threads (release() releases both). */
async function openReader(store: JournalStore, point: RestorePoint, bytes: number, requested: number): Promise<PointInTimeReader> {
  const jobs = bytes < PARALLEL_MIN ? 1 : requested;
  const main = await store.pointInTime(point.seq);
  if (jobs <= 1) {
    if (bytes < PARALLEL_MIN) return main;
    // the per-block preads on one thread of their own, the block map staying here
    return offloadedReader(main).catch(async (err) => {
      await main.release();
      throw err;
    });
  }
  try {
    const par = await parallelReader(main, store.dir, jobs);
    // a store being fetched from an s3:// archive: the worker threads' reads wait for their bytes too
    return gatedReader(store, {
      ...par,
      release: async () => {
        await par.release();
        await main.release();
      },
    });
  } catch (err) {
    await main.release();
    throw err;
  }
}

function progressFor(ctx: Context, total: number, what: string): { progress: ReturnType<typeof createProgress>; onProgress: (n: number) => void } {
  const progress = createProgress({
    total, enabled: ctx.log.verbosity >= 0 && !ctx.json,
    format: `${what} [{bar}] {percentage}% | {value}/{total} bytes | ETA {eta_formatted}`,
  });
  let last = 0;
  return {
    progress,
    onProgress: (n) => {
      if (n - last >= 8 * 1024 * 1024 || n === total) {
        last = n;
        progress.update(n);
      }
    },
  };
}

/** -v: what the page-cache prefetch before each volume did. */
function logPrefetch(ctx: Context): RestoreOptions['onPrefetch'] {
  return (vol, r) => ctx.log.debug(r.skipped
    ? `${vol.name}: no prefetch: the ${formatBytes(r.needed)} of the journal it needs exceed half the available memory`
    : `${vol.name}: prefetched ${formatBytes(r.bytes)} of the ${formatBytes(r.needed)} of the journal it needs in large reads`
      + `${r.bytes < r.needed ? ' (the rest found in memory)' : ''} in ${formatDuration(r.seconds * 1000)}`);
}

async function restoreOne(store: JournalStore, point: RestorePoint, args: RestoreArgs, ctx: Context, plan: RestoreOptions): Promise<number> {
  const vol = selectOneVolume(store, args.volume);
  const toStdout = args.out === '-';
  if (toStdout && process.stdout.isTTY) throw new DrError('DR_USAGE', 'refusing to write a volume image to a terminal: redirect standard output or use --out FILE');
  if (toStdout && ctx.json) throw new DrError('DR_USAGE', '--json writes to standard output, which --out - uses for the image');
  if (!toStdout) await checkOutput(args.out!, Boolean(args.force)); // refuse before opening anything
  else widenPipe(1);
  const reader = await openReader(store, point, vol.size, args.jobs);
  const { progress, onProgress } = progressFor(ctx, vol.size, vol.name);
  try {
    const opts = { ...plan, onProgress, onPrefetch: logPrefetch(ctx) };
    const stats = toStdout
      ? await restoreToStream(reader, vol, process.stdout, opts)
      : await restoreToFile(reader, vol, args.out!, Boolean(args.force), opts);
    progress.stop();
    const where = toStdout ? 'standard output' : args.out!;
    if (ctx.json) {
      ctx.emit({
        event: 'restored', volume: vol.name, point: point.point, seq: reader.seq, time: reader.time, timeIso: formatMicros(reader.time),
        ...(point.movedFrom !== undefined ? { movedFrom: point.movedFrom } : {}),
        out: where, bytes: stats.bytes, written: stats.written, sparse: stats.sparse, seconds: stats.seconds,
      });
    } else {
      ctx.log.info(`restored ${vol.name} as of ${point.point} (seq ${reader.seq}, ${formatMicros(reader.time)}) to ${where}: `
        + `${formatBytes(stats.bytes)}${stats.sparse > 0 ? `, ${formatBytes(stats.sparse)} left as holes` : ''} in ${formatDuration(stats.seconds * 1000)}`);
    }
    return EXIT.OK;
  } finally {
    progress.stop();
    await reader.release();
  }
}

async function tarGroup(store: JournalStore, point: RestorePoint, args: RestoreArgs, ctx: Context, plan: RestoreOptions): Promise<number> {
  const vols = selectVolumes(store, args.volume);
  const file = args.tar === '' || args.tar === '-' ? null : args.tar!;
  if (file === null && process.stdout.isTTY) throw new DrError('DR_USAGE', 'refusing to write a tar to a terminal: redirect standard output or name a file: --tar FILE');
  if (file === null && ctx.json) throw new DrError('DR_USAGE', '--json writes to standard output, which --tar uses for the tar: name a file with --tar FILE');
  const kind = file === null ? null : await checkOutput(file, Boolean(args.force));
  if (file === null) widenPipe(1);
  const total = vols.reduce((n, v) => n + v.size, 0);
  const reader = await openReader(store, point, total, args.jobs);
  const { progress, onProgress } = progressFor(ctx, total, 'tar');
  const started = process.hrtime.bigint();
  try {
    const opts = { ...plan, onProgress, onPrefetch: logPrefetch(ctx) };
    let manifest;
    if (file === null) {
      manifest = await writeGroupTar(reader, vols, point, store.groupId, process.stdout, opts);
    } else if (kind === 'special') {
      const sp = await openSpecialOutput(file);
      try {
        manifest = await writeGroupTar(reader, vols, point, store.groupId, sp.out, opts);
        await sp.close();
      } catch (err) {
        sp.out.destroy();
        throw err;
      }
    } else {
      const out = await AtomicOutput.create(file);
      const ws = fileWriter(out.fh, file);
      try {
        manifest = await writeGroupTar(reader, vols, point, store.groupId, ws, opts);
        await endWriter(ws);
        await out.commit();
      } catch (err) {
        ws.destroy();
        await out.abort();
        throw err;
      }
    }
    progress.stop();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (ctx.json) ctx.emit({ event: 'restored', tar: file, seconds, manifest });
    else {
      ctx.log.info(`wrote ${vols.length} volume${vols.length === 1 ? '' : 's'} (${formatBytes(total)}) as of ${point.point} `
        + `(seq ${reader.seq}, ${formatMicros(reader.time)}) to ${file ?? 'standard output'} as a tar in ${formatDuration(seconds * 1000)}`);
    }
    return EXIT.OK;
  } finally {
    progress.stop();
    await reader.release();
  }
}

async function serve(store: JournalStore, points: RestorePoint[], args: RestoreArgs, ctx: Context): Promise<number> {
  if ((args.socket === undefined) === (args.port === undefined)) throw new DrError('DR_USAGE', '--serve needs exactly one of --socket PATH or --port N');
  if (args.port !== undefined && (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535)) {
    throw new DrError('DR_USAGE', `bad --port ${args.port}: use 0..65535`);
  }
  const vols = selectVolumes(store, args.volume);
  await serveRestorePoints(store, points, vols, {
    socket: args.socket,
    port: args.port,
    host: args.host,
    writable: Boolean(args.writable),
    overlayDir: args.overlay,
    log: ctx.log,
    signal: ctx.signal,
    onReady: (info) => {
      for (const e of info.exports) {
        if (ctx.json) ctx.emit({ event: 'serving', ...e, timeIso: formatMicros(e.time) });
        else process.stdout.write(`${e.uri}\n`);
        ctx.log.info(`serving ${e.volume} as of ${e.point} (seq ${e.seq}, ${formatMicros(e.time)}) as export ${JSON.stringify(e.name)}`
          + `${e.writable ? `, writes to ${e.overlay}` : ', read-only'}`);
      }
      ctx.log.info(`listening on ${info.socket ?? `${info.host}:${info.port}`}; stop with Ctrl-C (SIGINT) or SIGTERM`);
    },
  });
  if (ctx.json) ctx.emit({ event: 'stopped' });
  else ctx.log.info('stopped');
  return EXIT.OK;
}

function list(store: JournalStore, args: RestoreArgs, ctx: Context): number {
  if (!Number.isInteger(args.limit) || args.limit < 0) throw new DrError('DR_USAGE', `bad --limit ${args.limit}: use 0 (all) or more`);
  const l = listRestorePoints(store, args.limit);
  if (ctx.json) ctx.emit(l);
  else process.stdout.write(formatList(l));
  return EXIT.OK;
}

function formatList(l: RestorePointList): string {
  const out: string[] = [];
  const w = l.window;
  out.push(`store:    ${l.store}`);
  if (l.group) out.push(`group:    ${l.group}`);
  out.push(`volumes:  ${l.volumes.map((v) => `${v.name} (${formatBytes(v.size)})`).join(', ') || 'none'}`);
  if (w.records === 0) out.push(`window:   empty${w.baseSeq > 0 ? `; seq:${w.baseSeq} restores the base images` : ''}`);
  else {
    out.push(`window:   seq ${w.firstSeq}..${w.lastSeq} (${w.records} records), ${formatMicros(w.firstTime!)} .. ${formatMicros(w.lastTime!)}`);
    out.push(`          every point in it is crash-consistent; restorable as latest, seq:N or a time`);
    if (w.baseSeq > 0) out.push(`          seq:${w.baseSeq} restores the base images (older history was pruned)`);
  }
  out.push(`marks:    ${l.marks.length}`);
  for (const m of l.marks) {
    out.push(`  seq ${String(m.seq).padStart(10)}  ${formatMicros(m.time)}  ${m.kind.padEnd(5)} ${m.consistency}-consistent  ${m.point}`);
  }
  const f = l.flushPoints;
  out.push(`flushes:  ${f.count}${f.shown.length < f.count ? ` (the last ${f.shown.length} shown; --limit 0 for all)` : ''}`);
  for (const p of f.shown) out.push(`  seq ${String(p.seq).padStart(10)}  ${formatMicros(p.time)}  flush crash-consistent  ${p.point}`);
  return out.join('\n') + '\n';
}
