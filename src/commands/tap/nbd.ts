/** dr-tap nbd (serve volumes over NBD, journal every write) and dr-tap mark (a MARK across taps). */
import type { Register } from '../../cli/command.js';
import type { CommonArgs } from '../../cli/main.js';
import { formatDuration, parseDuration, parseSize } from '../../cli/units.js';
import { DrError, EXIT } from '../../errors.js';
import { MARK_KINDS, checkMarkName, type MarkKind } from '../../format/layout.js';
import { crossTapMark } from '../../nbd/checkpoint.js';
import { ControlClient } from '../../nbd/control.js';
import { parseExport, runNbdTap } from '../../nbd/run-tap.js';

interface NbdArgs extends CommonArgs {
  export: string | string[];
  socket?: string;
  port?: number;
  host: string;
  journal?: string;
  state?: string;
  control?: string;
  blockSize?: string;
  signEvery?: string;
  backingSync?: string;
  checkpointEvery?: string;
}

interface MarkArgs extends CommonArgs {
  name: string;
  control: string | string[];
  kind: string;
  timeout?: string;
  attempts: number;
}

export const register: Register = (y, wrap) =>
  y
    .command(
      'nbd',
      'Serve volumes over NBD and journal every write, in order, across all of them',
      (c) =>
        c
          .option('export', { type: 'string', requiresArg: true, demandOption: true, description: 'NAME=PATH: serve the file or block device PATH as export (and volume) NAME; repeat for more' })
          .option('socket', { type: 'string', description: 'listen on this unix socket (created mode 0600)' })
          .option('port', { type: 'number', description: 'listen on this TCP port (0: any free port)' })
          .option('host', { type: 'string', default: '127.0.0.1', description: 'TCP address to bind' })
          .option('journal', { type: 'string', description: 'append to this journal store directory (created if absent) instead of a stream on standard output' })
          .option('state', { type: 'string', description: 'with a stream on standard output: keep group id, next seq and volume ids in FILE across runs' })
          .option('control', { type: 'string', description: 'open a control socket (mode 0600) for dr-tap mark' })
          .option('block-size', { type: 'string', description: 'volume block size in the journal (power of two, 512..1M; default 4096, or the journal\'s)' })
          .option('sign-every', { type: 'string', description: 'every DUR, record a SIGNATURE (sha256) of the next 1 MiB of a volume, rotating through all' })
          .option('backing-sync', { type: 'string', choices: ['flush', 'checkpoint'], description: 'flush: FLUSH/FUA sync the journal and the backing stores; checkpoint (default with --journal): they sync the journal, the backing stores are synced every --checkpoint-every and repaired from the journal after a crash' })
          .option('checkpoint-every', { type: 'string', description: 'with --backing-sync checkpoint: sync the backing stores this often (default 10s)' })
          .conflicts('socket', 'port')
          .check((a) => {
            if (a.socket === undefined && a.port === undefined) throw new DrError('DR_USAGE', 'name --socket PATH or --port N');
            return true;
          }),
      wrap<NbdArgs>(async (args, ctx) => {
        ctx.handlesStop();
        const journalOnStdout = !args.journal;
        return runNbdTap({
          exports: ([] as string[]).concat(args.export).map(parseExport),
          socket: args.socket,
          port: args.port,
          host: args.host,
          journal: args.journal,
          state: args.state,
          control: args.control,
          blockSize: args.blockSize !== undefined ? parseSize(args.blockSize, 'block size') : undefined,
          signEveryMs: args.signEvery !== undefined ? parseDuration(args.signEvery, '--sign-every') : undefined,
          backingSync: args.backingSync as 'flush' | 'checkpoint' | undefined,
          checkpointEveryMs: args.checkpointEvery !== undefined ? parseDuration(args.checkpointEvery, '--checkpoint-every') : undefined,
          log: ctx.log,
          json: ctx.json,
          // with the stream on standard output, JSON goes to standard error
          emit: (obj) => (journalOnStdout ? process.stderr.write(JSON.stringify(obj) + '\n') : ctx.emit(obj)),
          signal: ctx.signal,
        });
      }),
    )
    .command(
      'mark <name>',
      'Record a MARK in the journal of one or more running taps, between writes, and wait until it is durable',
      (c) =>
        c
          .positional('name', { type: 'string', demandOption: true, description: 'mark name (1-255 bytes)' })
          .option('control', { type: 'string', requiresArg: true, demandOption: true, description: 'control socket of a running dr-tap nbd; repeat for a checkpoint across taps' })
          .option('kind', { type: 'string', choices: [...MARK_KINDS], default: 'user', description: 'app: application-consistent (e.g. after fsfreeze -f), crash, or user' })
          .option('timeout', { type: 'string', description: 'how long to wait for every tap to hold its writes (default: the last good value the taps remember, else 1s); doubled on each retry' })
          .option('attempts', { type: 'number', default: 5, description: 'give up after this many attempts' }),
      wrap<MarkArgs>(async (args, ctx) => {
        try {
          checkMarkName(args.name);
        } catch (err) {
          throw new DrError('DR_USAGE', (err as Error).message);
        }
        if (!Number.isInteger(args.attempts) || args.attempts < 1) throw new DrError('DR_USAGE', '--attempts must be a positive integer');
        const timeoutMs = args.timeout !== undefined ? parseDuration(args.timeout, '--timeout') : undefined;
        const clients: ControlClient[] = [];
        try {
          for (const path of ([] as string[]).concat(args.control)) clients.push(await ControlClient.connect(path));
          const r = await crossTapMark(clients, {
            name: args.name, kind: args.kind as MarkKind, timeoutMs, attempts: args.attempts, log: (m) => ctx.log.warn(m),
          });
          if (ctx.json) ctx.emit(r);
          else {
            for (const t of r.taps) process.stdout.write(`mark ${r.name} (${r.kind}) id ${r.id} at seq ${t.seq} in ${t.control}\n`);
            ctx.log.info(`writes held ${formatDuration(r.heldMs)} (all taps confirmed in ${formatDuration(r.confirmMs)}; attempt ${r.attempts}, timeout ${formatDuration(r.timeoutMs)}, next ${formatDuration(r.nextTimeoutMs)})`);
          }
          return EXIT.OK;
        } finally {
          for (const c of clients) c.close();
        }
      }),
    );
