/** dr-tap scan: snapshot mode, the changed blocks of an image since the last scan, as a stream. */
import type { Register } from '../../cli/command.js';
import type { CommonArgs } from '../../cli/main.js';
import { createProgress } from '../../cli/progress.js';
import { parseSize } from '../../cli/units.js';
import { EXIT } from '../../errors.js';
import { describeScan, scanImage } from '../../image/scan.js';
import { openStreamOutput } from '../../image/output.js';

interface ScanArgs extends CommonArgs {
  image: string;
  manifest: string;
  volume?: string;
  blockSize?: string;
  mark?: string;
  output?: string;
}

export const register: Register = (y, wrap) =>
  y.command(
    'scan <image>',
    'Hash every block of an image (file or block device) and stream what changed since the last scan',
    (c) =>
      c
        .positional('image', { type: 'string', demandOption: true, description: 'image file or block device to scan' })
        .option('manifest', { type: 'string', demandOption: true, description: 'hash manifest of the previous scan (created on the first run, replaced after a successful one)' })
        .option('volume', { type: 'string', description: 'volume name (default: the image file name)' })
        .option('block-size', { type: 'string', description: 'block size, first run only (default 4096)' })
        .option('mark', { type: 'string', description: 'end the stream with a MARK of this name (kind user)' })
        .option('output', { alias: 'o', type: 'string', description: 'write the stream to this file instead of standard output' }),
    wrap<ScanArgs>(async (args, ctx) => {
      const output = openStreamOutput(args.output);
      const progress = createProgress({ total: 1, format: 'scan [{bar}] {percentage}% {value}/{total} bytes', enabled: !ctx.json && ctx.log.verbosity >= 0 });
      let total = 0;
      try {
        const summary = await scanImage({
          image: args.image,
          manifest: args.manifest,
          volume: args.volume,
          blockSize: args.blockSize !== undefined ? parseSize(args.blockSize, 'block size') : undefined,
          mark: args.mark,
          out: output.out,
          outFd: output.fd,
          signal: ctx.signal,
          onProgress: (done, size) => {
            if (size !== total) progress.setTotal((total = size));
            progress.update(done);
          },
        });
        progress.stop();
        await output.close();
        if (ctx.json) {
          const line = JSON.stringify(summary);
          if (output.stdoutFree) ctx.emit(summary);
          else process.stderr.write(line + '\n');
        } else ctx.log.info(describeScan(summary));
        return EXIT.OK;
      } finally {
        progress.stop();
      }
    }),
  );
