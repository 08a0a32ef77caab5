/**
 * One error type for the whole toolkit. Every failure a user can see carries a
 * DR_ code (stable, documented in the man pages) and the exit status it maps to.
 */

/** Exit statuses shared by every command (documented in every man page). */
export const EXIT = {
  OK: 0,
  /** a difference, mismatch or alert was found */
  DIFFERENT: 1,
  /** bad input or usage */
  BAD_INPUT: 2,
  /** I/O or peer failure (also: input truncated) */
  IO: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Every DR_ code and the exit status it produces. */
export const CODES = {
  // usage
  DR_USAGE: EXIT.BAD_INPUT,
  // stream format
  DR_BAD_MAGIC: EXIT.BAD_INPUT,
  DR_UNSUPPORTED_VERSION: EXIT.BAD_INPUT,
  DR_UNSUPPORTED_FEATURE: EXIT.BAD_INPUT,
  DR_BAD_CHECKSUM: EXIT.BAD_INPUT,
  DR_TRUNCATED: EXIT.IO,
  DR_SEQ_ORDER: EXIT.BAD_INPUT,
  DR_TIME_ORDER: EXIT.BAD_INPUT,
  DR_LENGTH_LIMIT: EXIT.BAD_INPUT,
  DR_UNKNOWN_RECORD: EXIT.BAD_INPUT,
  DR_BAD_RECORD: EXIT.BAD_INPUT,
  DR_OUT_OF_RANGE: EXIT.BAD_INPUT,
  DR_TRAILER_MISMATCH: EXIT.BAD_INPUT,
  DR_TRAILING_DATA: EXIT.BAD_INPUT,
  // stores, volumes, points
  DR_GROUP_MISMATCH: EXIT.BAD_INPUT,
  DR_VOLUME_MISMATCH: EXIT.BAD_INPUT,
  DR_SEQ_GAP: EXIT.BAD_INPUT,
  DR_CONFLICT: EXIT.BAD_INPUT,
  DR_NO_STORE: EXIT.BAD_INPUT,
  DR_STORE_CORRUPT: EXIT.BAD_INPUT,
  DR_LOCKED: EXIT.IO,
  DR_BAD_POINT: EXIT.BAD_INPUT,
  DR_OUTSIDE_WINDOW: EXIT.BAD_INPUT,
  DR_EXISTS: EXIT.BAD_INPUT,
  DR_BAD_MANIFEST: EXIT.BAD_INPUT,
  DR_BAD_SCHEDULE: EXIT.BAD_INPUT,
  // verification
  DR_MISMATCH: EXIT.DIFFERENT,
  DR_RPO_BREACH: EXIT.DIFFERENT,
  // environment
  DR_IO: EXIT.IO,
  DR_NO_SPACE: EXIT.IO,
  DR_PEER: EXIT.IO,
  DR_TIMEOUT: EXIT.IO,
  DR_EPIPE: EXIT.IO,
  DR_INTERRUPTED: EXIT.IO,
} as const;

export type DrCode = keyof typeof CODES;

export interface DrErrorDetail {
  /** byte offset in the input where the problem starts */
  offset?: number;
  /** last sequence number that was read (or applied) correctly */
  lastGoodSeq?: number;
  [key: string]: unknown;
}

export class DrError extends Error {
  readonly code: DrCode;
  readonly exitCode: ExitCode;
  readonly detail: DrErrorDetail;

  constructor(code: DrCode, message: string, detail: DrErrorDetail = {}) {
    super(message);
    this.name = 'DrError';
    this.code = code;
    this.exitCode = CODES[code];
    this.detail = detail;
  }
}

/** Map a Node system error (ENOSPC, EACCES, ...) to a DrError naming what failed. */
export function fromSystemError(err: unknown, what: string): DrError {
  if (err instanceof DrError) return err;
  const e = err as NodeJS.ErrnoException;
  const sys = e?.code;
  if (sys === 'ENOSPC' || sys === 'EDQUOT') return new DrError('DR_NO_SPACE', `${what}: no space left on device`);
  if (sys === 'EPIPE') return new DrError('DR_EPIPE', `${what}: broken pipe`);
  const reason = sys ? `${sys.toLowerCase() === sys ? sys : humanErrno(sys)}` : String(e?.message ?? err);
  return new DrError('DR_IO', `${what}: ${reason}`);
}

function humanErrno(code: string): string {
  const names: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    EISDIR: 'is a directory',
    ENOTDIR: 'not a directory',
    EEXIST: 'already exists',
    EIO: 'input/output error',
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset by peer',
    EBADF: 'bad file descriptor',
    EINVAL: 'invalid argument',
    EMFILE: 'too many open files',
  };
  return names[code] ?? code;
}
