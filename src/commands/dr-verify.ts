/** dr-verify: prove that streams, journals, replicas and restores are right. */
import { runCli, type CommonArgs } from '../cli/main.js';
import { openInput } from '../cli/io.js';
import { formatBytes, formatMicros } from '../cli/units.js';
import { EXIT } from '../errors.js';
import { inspectStream, type StreamSummary } from '../format/inspect.js';

export function main(argv: string[]): Promise<number> {
  return runCli('dr-verify', argv, (y, wrap) =>
    y
      .usage('$0 <command> [options]\n\nProve that streams, journals, replicas and restores are right.')
      .command(
        'stream [file]',
        'Check a whole journal stream (checksums, order, trailer) and summarise it',
        (c) => c.positional('file', { type: 'string', description: 'stream file, or - for standard input', default: '-' }),
        wrap<CommonArgs & { file: string }>(async (args, ctx) => {
          const input = await openInput(args.file);
          const summary = await inspectStream(input.stream);
          if (ctx.json) ctx.emit(summary);
          else printSummary(input.name, summary);
          if (summary.error) {
            // Any fault, truncation included, makes the stream invalid: exit 2.
            ctx.log.error(summary.error.message, summary.error.code);
            return EXIT.BAD_INPUT;
          }
          return EXIT.OK;
        }),
      )
      .demandCommand(1, 'name a command'),
  );
}

function printSummary(name: string, s: StreamSummary): void {
  const out: string[] = [];
  out.push(`stream:   ${name} (${formatBytes(s.streamBytes)} read)`);
  if (s.groupId) out.push(`group:    ${s.groupId}`);
  out.push(`volumes:  ${s.volumes.length}${s.volumes.map((v) => `\n  ${v.index} ${v.name} ${formatBytes(v.size)} (${v.size} bytes, block ${v.blockSize}) id ${v.id}`).join('')}`);
  const counts = Object.entries(s.records).map(([k, v]) => `${k} ${v}`).join(', ');
  out.push(`records:  ${Object.values(s.records).reduce((a, b) => a + b, 0)}${counts ? ` (${counts})` : ''}`);
  if (s.firstSeq !== null) out.push(`seq:      ${s.firstSeq}..${s.lastSeq}`);
  if (s.firstTime !== null) out.push(`time:     ${formatMicros(s.firstTime)} .. ${formatMicros(s.lastTime!)}`);
  out.push(`data:     ${formatBytes(s.writeBytes)} written, ${formatBytes(s.zeroBytes)} zeroed`);
  for (const m of s.marks) out.push(`mark:     ${m.name} (${m.kind}) at seq ${m.seq}, ${formatMicros(m.time)}`);
  out.push(`trailer:  ${s.trailer ? `ok (${s.trailer.recordCount} records, ${s.trailer.byteCount} bytes, digest matches)` : 'missing'}`);
  out.push(`result:   ${s.error ? `INVALID: ${s.error.code}` : 'valid'}`);
  process.stdout.write(out.join('\n') + '\n');
}

