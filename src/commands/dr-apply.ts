/** dr-apply: keep replica images current from a journal stream or a journal store. */
import { openSync } from 'node:fs';
import { runCli, type CommonArgs, type Context } from '../cli/main.js';
import { widenPipe } from '../cli/io.js';
import { createProgress } from '../cli/progress.js';
import { formatBytes, formatDuration, formatMicros } from '../cli/units.js';
import { DrError, EXIT, fromSystemError } from '../errors.js';
import { Applier, describeUntil, parseUntil, STATE_SUFFIX, type TargetSpec } from '../image/apply.js';
import { applyFromJournal, applyFromStream, inputSize, openJournal, type DriveResult, type StreamInput } from '../image/apply-sources.js';
import { createReadStream } from 'node:fs';

interface ApplyArgs extends CommonArgs {
  stream?: string;
  target: string[];
  state?: string;
  until?: string;
  journal?: string;
  follow?: boolean;
  onMismatch: 'fail' | 'warn';
  zero: 'punch' | 'write';
}

const NAMED_TARGET = /^([A-Za-z0-9_][A-Za-z0-9._-]{0,63})=(.+)$/;

export function parseTarget(text: string): TargetSpec {
  const m = NAMED_TARGET.exec(text);
  if (m) return { name: m[1]!, path: m[2]! };
  if (text.length === 0) throw new DrError('DR_USAGE', 'empty --target');
  return { name: null, path: text };
}

export function main(argv: string[]): Promise<number> {
  return runCli('dr-apply', argv, (y, wrap) =>
    y
      .usage(
        '$0 --target IMAGE [options] [< stream]\n' +
          '$0 --target NAME=IMAGE [--target NAME=IMAGE ...] [options] [stream]\n' +
          '$0 --journal DIR --target ... [--follow] [options]\n\n' +
          'Apply a journal stream (or a journal store) to replica images, in order, durably and restartably.',
      )
      .command(
        '$0 [stream]',
        false,
        (c) =>
          c
            .positional('stream', { type: 'string', description: 'journal stream file, or - for standard input (default)' })
            .option('target', {
              alias: 't', type: 'string', array: true, demandOption: 'name the replica image with --target', requiresArg: true,
              description: 'replica image (file or block device); for a group, NAME=IMAGE once per volume. A missing file is created, sparse, at the volume size',
            })
            .option('state', { type: 'string', requiresArg: true, description: `state file recording the last applied seq (default: first volume's IMAGE${STATE_SUFFIX})` })
            .option('until', { type: 'string', requiresArg: true, description: 'stop at POINT: latest, seq:N, mark:NAME or an ISO-8601 time' })
            .option('journal', { alias: 'j', type: 'string', requiresArg: true, description: 'read records from the journal store in DIR instead of a stream' })
            .option('follow', { alias: 'f', type: 'boolean', description: 'with --journal: keep applying new records until SIGINT/SIGTERM' })
            .option('on-mismatch', { choices: ['fail', 'warn'] as const, default: 'fail' as const, description: 'SIGNATURE mismatch: stop with exit 1, or report it and go on' })
            .option('zero', { choices: ['punch', 'write'] as const, default: 'punch' as const, description: 'ZERO ranges of 4 MiB or more: punch holes where possible, or always write zeroes' }),
        wrap<ApplyArgs>((args, ctx) => run(args, ctx)),
      ),
  );
}

async function run(args: ApplyArgs, ctx: Context): Promise<number> {
  const { log } = ctx;
  if (args.follow && !args.journal) throw new DrError('DR_USAGE', '--follow needs --journal DIR');
  if (args.journal && args.stream !== undefined) throw new DrError('DR_USAGE', 'give either a stream or --journal DIR, not both');
  const targets = args.target.map(parseTarget);
  const until = args.until === undefined ? { kind: 'latest' as const } : parseUntil(args.until);
  if (args.follow && until.kind !== 'latest') log.debug(`following until ${describeUntil(until)}`);
  const mismatches: unknown[] = [];
  const applier = new Applier({
    targets, statePath: args.state, until, onMismatch: args.onMismatch, zeroMode: args.zero, log,
    mismatch: (m) => {
      mismatches.push(m);
      if (ctx.json) ctx.emit({ event: 'mismatch', ...m });
    },
  });
  ctx.handlesStop();

  const started = Date.now();
  let total: number | null = null;
  let lastEmit = 0;
  const status = (inputBytes: number, event: string) => {
    const c = applier.counters;
    const elapsed = (Date.now() - started) / 1000;
    const lagMicros = applier.newestTime && applier.appliedTime ? Math.max(0, applier.newestTime - applier.appliedTime) : 0;
    return {
      event,
      appliedSeq: applier.appliedSeq,
      durableSeq: applier.durableSeq,
      appliedTime: applier.appliedTime ? formatMicros(applier.appliedTime) : null,
      newestTime: applier.newestTime ? formatMicros(applier.newestTime) : null,
      lagSeconds: lagMicros / 1e6,
      records: c.records,
      skipped: c.skipped,
      bytes: c.bytes,
      inputBytes,
      signatures: c.signaturesChecked,
      mismatches: c.mismatches,
      elapsedSeconds: Number(elapsed.toFixed(3)),
      bytesPerSecond: elapsed > 0 ? Math.round(c.bytes / elapsed) : 0,
    };
  };

  let input: StreamInput | null = null;
  if (!args.journal) {
    if (args.stream === undefined || args.stream === '-') {
      if (process.stdin.isTTY) throw new DrError('DR_USAGE', 'standard input is a terminal: give a stream file, pipe one in, or use --journal DIR');
      widenPipe(0);
      input = { fd: 0, name: 'standard input', fallback: () => process.stdin };
    } else {
      const path = args.stream;
      let fd: number;
      try {
        fd = openSync(path, 'r');
      } catch (err) {
        throw fromSystemError(err, `cannot open ${path}`);
      }
      input = { fd, name: path, fallback: () => createReadStream('', { fd, autoClose: false }) };
    }
    total = inputSize(input.fd);
  }
  const progress = createProgress({
    total: total ?? 0,
    enabled: !ctx.json && log.verbosity >= 0,
    format: total
      ? 'dr-apply {bar} {percentage}% | {records} records | {bytes} | {rate}/s | lag {lag} | seq {seq}'
      : 'dr-apply | {records} records | {bytes} | {rate}/s | lag {lag} | seq {seq}',
  });
  const tick = (inputBytes: number) => {
    const s = status(inputBytes, 'status');
    progress.update(total ? inputBytes : 0, {
      records: s.records, bytes: formatBytes(s.bytes), rate: formatBytes(s.bytesPerSecond),
      lag: formatDuration(s.lagSeconds * 1000), seq: s.appliedSeq,
    });
    if (ctx.json && Date.now() - lastEmit >= 1000) {
      lastEmit = Date.now();
      ctx.emit(s);
    }
  };

  tick(0);

  let result: DriveResult;
  try {
    if (args.journal) {
      const store = await openJournal(args.journal, log);
      try {
        result = await applyFromJournal(applier, store, { signal: ctx.signal, log, tick, follow: Boolean(args.follow), untilText: args.until });
      } finally {
        await store.close();
      }
    } else {
      result = await applyFromStream(applier, input!, { signal: ctx.signal, log, tick });
    }
  } catch (err) {
    progress.stop();
    if (ctx.json) {
      const e = err instanceof DrError ? err : fromSystemError(err, 'apply');
      ctx.emit({ ...status(0, 'done'), result: 'error', code: e.code, message: e.message });
    }
    throw err;
  } finally {
    applier.close();
  }
  progress.stop();

  const c = applier.counters;
  const secs = (Date.now() - started) / 1000;
  const how = result.stop === 'until' ? `stopped at ${describeUntil(applier.untilPoint)}` : result.stop === 'interrupted' ? 'stopped by a signal' : 'input complete';
  if (ctx.json) ctx.emit({ ...status(result.inputBytes, 'done'), result: result.stop });
  else {
    const skipped = c.skipped ? `, skipped ${c.skipped} already applied` : '';
    const sigs = c.signaturesChecked ? `, ${c.signaturesChecked} signatures checked (${c.mismatches} mismatched)` : '';
    log.info(`applied ${c.records} records (${formatBytes(c.bytes)}) in ${formatDuration(secs * 1000)}${skipped}${sigs}; ${how}; ${applier.describe()}`);
  }
  if (c.mismatches > 0) return EXIT.DIFFERENT;
  if (result.stop === 'interrupted' && !args.follow) {
    log.error(`interrupted before the end of the input; ${applier.describe()}: rerun to continue`, 'DR_INTERRUPTED');
    return EXIT.IO;
  }
  return EXIT.OK;
}
