/**
 * Diagnostics: always on stderr, coloured by chalk's stderr instance (which honours
 * NO_COLOR and FORCE_COLOR), quietened by -q, widened by -v/-vv.
 */

export interface Logger {
  /** the command name printed before every line, e.g. "dr-apply" */
  readonly prog: string;
  verbosity: number;
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
  error(msg: string, code?: string): void;
}

type Paint = (s: string) => string;
interface Palette {
  yellow: Paint;
  dim: Paint;
  red: Paint;
}

const uncoloured = (s: string): string => s;
let palette: Palette = { yellow: uncoloured, dim: uncoloured, red: uncoloured };

/**
 * Take the colours from chalk. Chalk colours stderr only when it is a terminal or
 * FORCE_COLOR is set; otherwise it is not even loaded (that saves about 10 ms of every
 * command's start, as in `dr-journal append DIR < file 2> log`).
 */
export async function loadColours(): Promise<void> {
  if (!process.stderr.isTTY && process.env.FORCE_COLOR === undefined) return;
  palette = (await import('chalk')).chalkStderr;
}

export function createLogger(prog: string, verbosity = 0): Logger {
  const line = (s: string) => process.stderr.write(s + '\n');
  return {
    prog,
    verbosity,
    info(msg) {
      if (this.verbosity >= 0) line(`${prog}: ${msg}`);
    },
    warn(msg) {
      if (this.verbosity >= 0) line(`${prog}: ${palette.yellow('warning:')} ${msg}`);
    },
    debug(msg) {
      if (this.verbosity >= 1) line(`${prog}: ${palette.dim(msg)}`);
    },
    error(msg, code) {
      line(`${prog}: ${palette.red('error:')} ${msg}${code ? ` (${code})` : ''}`);
    },
  };
}
