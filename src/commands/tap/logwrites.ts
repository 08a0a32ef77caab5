/** dr-tap logwrites: a Linux dm-log-writes log (or qemu blklogwrites log) as a journal stream. */
import type { Register } from '../../cli/command.js';
import type { CommonArgs } from '../../cli/main.js';
import { formatBytes, parseSize } from '../../cli/units.js';
import { DrError, EXIT } from '../../errors.js';
import { checkVolumeName, idFromString } from '../../format/layout.js';
import { convertLog } from '../../image/logwrites.js';
import { openStreamOutput } from '../../image/output.js';

interface LogwritesArgs extends CommonArgs {
  log: string;
  volume: string;
  size?: string;
  group?: string;
  firstSeq?: number;
  volumeId?: string;
  output?: string;
}

export const register: Register = (y, wrap) =>
  y.command(
    'logwrites <log>',
    'Convert a dm-log-writes log (kernel or qemu blklogwrites) into a journal stream',
    (c) =>
      c
        .positional('log', { type: 'string', demandOption: true, description: 'the log file or device' })
        .option('volume', { type: 'string', default: 'disk0', description: 'volume name in the stream' })
        .option('size', { type: 'string', description: 'volume size (default: the furthest byte the log writes)' })
        .option('group', { type: 'string', description: 'group id to continue (32 hex digits; default: a new group)' })
        .option('first-seq', { type: 'number', description: 'seq of the first record (default 1)' })
        .option('volume-id', { type: 'string', description: 'volume id (32 hex digits; default: a new id)' })
        .option('output', { alias: 'o', type: 'string', description: 'write the stream to this file instead of standard output' }),
    wrap<LogwritesArgs>(async (args, ctx) => {
      checkVolumeName(args.volume);
      const groupId = args.group !== undefined ? idFromString(args.group) : undefined;
      const volumeId = args.volumeId !== undefined ? idFromString(args.volumeId) : undefined;
      if (args.firstSeq !== undefined && (!Number.isSafeInteger(args.firstSeq) || args.firstSeq < 1)) {
        throw new DrError('DR_USAGE', `--first-seq ${args.firstSeq} must be a whole number from 1`);
      }
      const output = openStreamOutput(args.output);
      const summary = await convertLog({
        log: args.log,
        volume: args.volume,
        size: args.size !== undefined ? parseSize(args.size, 'volume size') : undefined,
        groupId,
        firstSeq: args.firstSeq,
        volumeId,
        out: output.out,
        signal: ctx.signal,
      });
      await output.close();
      if (ctx.json) {
        if (output.stdoutFree) ctx.emit(summary);
        else process.stderr.write(JSON.stringify(summary) + '\n');
      } else {
        ctx.log.info(
          `${args.log}: ${summary.entries} entries (sector ${summary.sectorSize}): ${summary.writes} writes (${formatBytes(summary.writeBytes)}), ` +
            `${summary.discards} discards, ${summary.flushes} flushes, ${summary.marks} marks; volume ${summary.volume} of ${formatBytes(summary.size)}; ` +
            `seq ${summary.firstSeq}..${summary.lastSeq}`,
        );
      }
      return EXIT.OK;
    }),
  );
