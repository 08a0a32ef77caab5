/**
 * Diagnostics: always on stderr, coloured by chalk's stderr instance (which honours
 * NO_COLOR and FORCE_COLOR), quietened by -q, widened by -v/-vv.
 */
import { chalkStderr } from 'chalk';

export interface Logger {
  /** the command name printed before every line, e.g. "dr-apply" */
  readonly prog: string;
  verbosity: number;
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
  error(msg: string, code?: string): void;
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
      if (this.verbosity >= 0) line(`${prog}: ${chalkStderr.yellow('warning:')} ${msg}`);
    },
    debug(msg) {
      if (this.verbosity >= 1) line(`${prog}: ${chalkStderr.dim(msg)}`);
    },
    error(msg, code) {
      line(`${prog}: ${chalkStderr.red('error:')} ${msg}${code ? ` (${code})` : ''}`);
    },
  };
}
