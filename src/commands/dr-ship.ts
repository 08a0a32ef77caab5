/** dr-ship: move a journal to the recovery site over any byte pipe (typically ssh). */
import { runCli, type CommonArgs } from '../cli/main.js';
import { widenPipe } from '../cli/io.js';
import { parseDuration, parseSize, formatBytes } from '../cli/units.js';
import { DrError, EXIT } from '../errors.js';
import { Sender } from '../transport/sender.js';
import { StdinSource, StoreSource, type ShipSource } from '../transport/source.js';
import { receive } from '../transport/receiver.js';
import { loadSchedule } from '../transport/schedule.js';

interface SendArgs extends CommonArgs {
  source: string;
  follow?: boolean;
  once?: boolean;
  compress?: boolean;
  rate?: string;
  schedule?: string;
  rpo?: string;
  onRpoBreach?: string;
  timeout: string;
  buffer: string;
  retries?: number;
  statusInterval: string;
  '--'?: Array<string | number>;
  _: Array<string | number>;
}

function parseRate(text: string): number {
  if (/^(unlimited|0)$/i.test(text.trim())) return Infinity;
  const bytes = parseSize(text.replace(/\/s$/i, ''), 'rate');
  if (bytes <= 0) throw new DrError('DR_USAGE', `bad rate ${JSON.stringify(text)}: must be above 0`);
  return bytes;
}

export function main(argv: string[]): Promise<number> {
  return runCli('dr-ship', argv, (y, wrap) =>
    y
      .usage('$0 <command> [options]\n\nShip a journal to the recovery site over ssh (or any command), resuming after breaks.')
      .parserConfiguration({ 'camel-case-expansion': true, 'strip-aliased': true, 'populate--': true })
      .command(
        'send <source>',
        'Stream a journal store (DIR) or a stream on stdin (-) to COMMAND, given after --',
        (c) =>
          c
            .usage('$0 send (DIR|-) [options] -- COMMAND [ARGS...]\n\nRuns COMMAND (no shell), typically `ssh -T host dr-ship receive DIR`, and streams records to it.')
            .positional('source', { type: 'string', description: 'journal store directory, or - for a stream on standard input', demandOption: true })
            .option('follow', { alias: 'f', type: 'boolean', description: 'Keep shipping records as they are appended to DIR' })
            .option('once', { type: 'boolean', description: 'Ship what is there and exit: 0 caught up, 1 RPO breached, 3 peer unreachable' })
            .epilog('With --json: NDJSON status lines and events on stderr. Details, the schedule file format and the protocol: man dr-ship.')
            .option('compress', { alias: 'z', type: 'boolean', description: 'Compress on the wire if the receiver agrees: zero pages dropped, compressible blocks brotli-compressed' })
            .option('rate', { type: 'string', description: 'Rate limit in bytes per second on the wire, e.g. 20M (unlimited by default)' })
            .option('schedule', { type: 'string', description: 'Schedule file: windows with a rate and an RPO each (reloaded on SIGHUP)' })
            .option('rpo', { type: 'string', description: 'RPO target: warn when the oldest unacknowledged record is older, e.g. 5m' })
            .option('on-rpo-breach', { type: 'string', description: 'Command line (run by /bin/sh) run once per RPO breach, details in DR_RPO_* variables' })
            .option('timeout', { type: 'string', default: '30s', description: 'Abandon a connection when no ack arrives for this long while records are outstanding (greeting: at least 10s)' })
            .option('buffer', { type: 'string', default: '64M', description: 'From stdin: unacknowledged bytes kept for resending; when full, stdin is not read' })
            .option('status-interval', { type: 'string', default: '1s', description: 'How often --json status lines are written (and the lag checked on a timer)' })
            .option('retries', { type: 'number', description: 'Consecutive failed connections before giving up (default: 3 with --once, 10 without --follow, unlimited with --follow)' })
            .check((a) => {
              const cmd = (a['--'] as unknown[] | undefined) ?? [];
              if (cmd.length === 0) throw new DrError('DR_USAGE', 'name the transport command after --, e.g. -- ssh -T backup@drsite dr-ship receive /srv/dr/vol1 (see dr-ship send --help)');
              if (a.once && a.follow) throw new DrError('DR_USAGE', '--once and --follow exclude each other');
              return true;
            }),
        wrap<SendArgs>(async (args, ctx) => {
          const command = (args['--'] ?? []).map(String);
          const rate = args.rate !== undefined ? parseRate(args.rate) : Infinity;
          const rpoMs = args.rpo !== undefined ? parseDuration(args.rpo, 'RPO') : null;
          const timeoutMs = parseDuration(args.timeout, 'timeout');
          if (timeoutMs < 100) throw new DrError('DR_USAGE', `--timeout ${args.timeout} is too short (at least 100ms)`);
          const statusMs = parseDuration(args.statusInterval, 'status interval');
          if (statusMs < 10) throw new DrError('DR_USAGE', `--status-interval ${args.statusInterval} is too short (at least 10ms)`);
          const bufferBytes = parseSize(args.buffer, 'buffer');
          if (bufferBytes < 1024 * 1024) throw new DrError('DR_USAGE', `--buffer ${args.buffer} is too small (at least 1M; a record may be 32 MiB)`);
          if (args.schedule) loadSchedule(args.schedule); // refuse a bad schedule before connecting
          const retries = args.retries ?? (args.once ? 3 : args.follow ? Infinity : 10);
          if (!(retries >= 0)) throw new DrError('DR_USAGE', `--retries ${args.retries} must be 0 or more`);
          let source: ShipSource;
          // yargs hands a lone "-" over as an empty string
          if (args.source === '-' || args.source === '') {
            if (args.follow) ctx.log.debug('--follow is implied when reading standard input');
            widenPipe(0);
            source = new StdinSource(process.stdin, bufferBytes);
          } else {
            source = new StoreSource(args.source, Boolean(args.follow), ctx.log);
          }
          ctx.handlesStop();
          const sender = new Sender({
            source, command, follow: Boolean(args.follow), once: Boolean(args.once), compress: Boolean(args.compress),
            rate, rpoMs, scheduleFile: args.schedule ?? null, onRpoBreach: args.onRpoBreach, timeoutMs, statusMs, retries,
            json: ctx.json, log: ctx.log, stop: ctx.signal,
          });
          return sender.run();
        }),
      )
      .command(
        'receive <dir>',
        'The far end: append the incoming stream to the journal store DIR and acknowledge durable seqs',
        (c) => c.positional('dir', { type: 'string', description: 'journal store directory (created if absent)', demandOption: true }),
        wrap<CommonArgs & { dir: string }>(async (args, ctx) => {
          if (!widenPipe(0)) ctx.log.debug('standard input: pipe size left as it is');
          const r = await receive(args.dir, { input: process.stdin, output: process.stdout, log: ctx.log });
          ctx.log.debug(`received seq ${r.firstSeq}..${r.lastSeq} (${r.records} records, ${formatBytes(r.bytes)})`);
          return EXIT.OK;
        }),
      )
      .demandCommand(1, 'name a command'),
  );
}
