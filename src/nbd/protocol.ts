/**
 * Constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md): the fixed
 * newstyle handshake, option requests and replies, transmission flags, commands
 * and error values. Only what this server speaks; all integers are big-endian.
 */

/** "NBDMAGIC" */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle negotiation, also prefixes every option request */
export const IHAVEOPT = 0x49484156454f5054n;
/** option reply magic */
export const REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

// handshake flags (server) and client flags
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;

export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_TOO_BIG: 0x80000009,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** transmission flags */
export const TF = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** error values carried in simple replies */
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export const REQUEST_SIZE = 28;
export const OPTION_HEADER_SIZE = 16;
/** longest option payload this server reads (names are at most 4096 bytes) */
export const MAX_OPTION_LENGTH = 64 * 1024;

/** The NBD error value for a failure thrown by an export (a Node system error, or one carrying `nbdErrno`). */
export function errnoFor(err: unknown): number {
  const e = err as { nbdErrno?: number; code?: string; detail?: { nbdErrno?: number } } | null;
  if (e && typeof e.nbdErrno === 'number') return e.nbdErrno;
  if (e && typeof e.detail?.nbdErrno === 'number') return e.detail.nbdErrno;
  switch (e?.code) {
    case 'ENOSPC': case 'EDQUOT': case 'EFBIG': case 'DR_NO_SPACE': return Errno.ENOSPC;
    case 'EPERM': case 'EROFS': case 'EACCES': return Errno.EPERM;
    case 'EINVAL': return Errno.EINVAL;
    case 'ENOMEM': return Errno.ENOMEM;
    default: return Errno.EIO;
  }
}
