/**
 * The shared command-line kit: every dr-* command is built with runCli(). It gives
 * each one the same flags (--help, --version, -q, -v, --json), strict yargs parsing
 * (usage errors exit 2 with a hint), one-line errors `dr-X: error: <what> (DR_CODE)`
 * (stack traces with -vv), quiet non-zero exit on EPIPE, and a clean stop on
 * SIGINT/SIGTERM through an AbortSignal the command watches.
 */
import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
// yargs bundled into one module by the build (scripts/bundle-yargs.mjs): it loads in a sixth of the time
import yargs from '../vendor/yargs.js';
import { DrError, EXIT, fromSystemError } from '../errors.js';
import { createLogger, loadColours, type Logger } from './log.js';

export interface CommonArgs {
  quiet?: boolean;
  verbose?: number;
  json?: boolean;
}

export interface Context {
  log: Logger;
  json: boolean;
  /** aborted on the first SIGINT/SIGTERM: stop taking new work, keep what was acknowledged */
  signal: AbortSignal;
  /** a command that handles the stop signal itself says so here; otherwise a signal ends the process (exit 3) */
  handlesStop(): void;
  /** print one JSON document as a line on stdout (machine output) */
  emit(obj: unknown): void;
  /** the exit status the command set, when it returns */
  exitCode: number;
}

export type Handler<A> = (args: A, ctx: Context) => Promise<number | void>;

let version = '0.0.0';
try {
  version = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
} catch {
  /* running from an unusual layout: keep the default */
}
export const VERSION = version;

/**
 * Run a command line. `build` registers the command's options and subcommands;
 * each handler it registers is wrapped with wrap() so it gets a Context.
 * Resolves to the exit status; never rejects.
 */
export async function runCli(
  prog: string,
  argv: string[],
  build: (y: Argv<CommonArgs>, wrap: <A>(h: Handler<A>) => (args: any) => Promise<void>) => Argv<unknown>,
): Promise<number> {
  await loadColours();
  const log = createLogger(prog);
  const controller = new AbortController();
  let graceful = false;
  let status: number = EXIT.OK;
  let stopping = false;

  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping || !graceful) {
      log.error(`interrupted by ${sig}`, 'DR_INTERRUPTED');
      process.exit(EXIT.IO);
    }
    stopping = true;
    log.debug(`${sig}: finishing what is in flight, then stopping`);
    controller.abort(new DrError('DR_INTERRUPTED', `interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.IO); // reader went away: quietly, non-zero
    log.error(`writing standard output: ${err.message}`, 'DR_IO');
    process.exit(EXIT.IO);
  };
  process.stdout.on('error', onStdoutError);

  const ctx: Context = {
    log,
    json: false,
    signal: controller.signal,
    handlesStop: () => {
      graceful = true;
    },
    emit: (obj) => {
      process.stdout.write(JSON.stringify(obj) + '\n');
    },
    exitCode: EXIT.OK,
  };

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const wrap = <A>(h: Handler<A>) => async (args: any) => {
    const common = args as CommonArgs;
    log.verbosity = common.quiet ? -1 : (common.verbose ?? 0);
    ctx.json = Boolean(common.json);
    const code = await h(args, ctx);
    status = typeof code === 'number' ? code : ctx.exitCode;
  };

  const y = yargs(argv)
    .scriptName(prog)
    .parserConfiguration({ 'camel-case-expansion': true, 'strip-aliased': true })
    .option('quiet', { alias: 'q', type: 'boolean', description: 'Print only errors on stderr', global: true })
    .option('verbose', { alias: 'v', type: 'count', description: 'More detail on stderr (-vv: stack traces)', global: true })
    .option('json', { type: 'boolean', description: 'Machine-readable output (JSON)', global: true })
    .version(VERSION)
    .help()
    .alias('help', 'h')
    .strict()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .completion('completion', 'Print a bash/zsh completion script')
    .fail((msg, err) => {
      if (err) throw err;
      throw new DrError('DR_USAGE', `${msg} (see ${prog} --help)`);
    }) as unknown as Argv<CommonArgs>;

  skipHelpCache(y);
  try {
    await build(y, wrap).parseAsync();
  } catch (err) {
    status = report(log, err);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return status;
}

/** Print an error as one line and return its exit status. */
export function report(log: Logger, err: unknown): number {
  const e = err instanceof DrError ? err : fromSystemError(err, 'unexpected error');
  if (e.code === 'DR_EPIPE') return e.exitCode;
  log.error(e.message, e.code);
  if (log.verbosity >= 2) process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  return e.exitCode;
}

/**
 * Used by bin/ shims: run main, let stdout drain, exit with its status. A command whose
 * work stops without settling its promise (nothing left to run, nothing resolved) would
 * otherwise exit 0 silently: that is reported as an internal error, status 3.
 */
export function exitWith(status: Promise<number>): void {
  let settled = false;
  process.once('beforeExit', () => {
    if (settled) return;
    process.stderr.write('drkit: internal error: the command stopped without finishing (nothing left to wait for)\n');
    process.exit(EXIT.IO);
  });
  status.then(
    (code) => {
      settled = true;
      if (process.stdout.writableLength === 0) process.exit(code);
      process.stdout.write('', () => process.exit(code));
    },
    (err) => {
      settled = true;
      process.stderr.write(`drkit: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(EXIT.IO);
    },
  );
}

/**
 * Before it runs a subcommand's handler, yargs renders that command's whole help text and
 * keeps it, in case a failure inside the handler is to be shown with it. Here a handler
 * never hands a failure back to yargs (wrap() reports it as one line), so the text is never
 * used, and rendering it (cliui, string widths) cost 20-25 ms of every command's start.
 * --help and usage errors are handled before any handler and print as before.
 */
function skipHelpCache(y: Argv<CommonArgs>): void {
  const internal = (y as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }).getInternalMethods?.();
  const usage = internal?.getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined;
}
