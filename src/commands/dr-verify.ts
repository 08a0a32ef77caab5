/** dr-verify: prove that streams, journals, replicas and restores are right. */
import { runCli, type CommonArgs, type Context } from '../cli/main.js';
import { openInput } from '../cli/io.js';
import { formatBytes, formatMicros, parseSize } from '../cli/units.js';
import { DrError, EXIT } from '../errors.js';
import { inspectStream, type StreamSummary } from '../format/inspect.js';
import { checkVolumeName, idFromString } from '../format/layout.js';
import { compareImages, compareWithManifest, type CompareReport } from '../image/compare.js';
import { DEFAULT_HASH_CHUNK, DEFAULT_SIGN_CHUNK, newIdentity, signImage, writeHashes, type SignIdentity } from '../image/hashes.js';
import { closeImage, openImage } from '../image/device.js';
import { openStreamOutput } from '../image/output.js';
import { defaultVolumeName } from '../image/scan.js';
import { journalIdentity, verifyJournal, verifyRestore, printJournalReport, printRestoreReport } from '../image/journal-verify.js';

interface CompareArgs extends CommonArgs { a: string; b?: string; againstHashes?: string; chunk?: string; volume?: string }
interface HashesArgs extends CommonArgs { image: string; chunk?: string; volume?: string; output?: string }
interface SignArgs extends CommonArgs {
  image: string; volume?: string; chunk?: string; blockSize?: string; journal?: string; group?: string; firstSeq?: number;
  volumeId?: string; output?: string;
}
interface JournalArgs extends CommonArgs { dir: string }
interface RestoreArgs extends CommonArgs { dir: string; at: string; against?: string; againstHashes?: string; volume?: string; chunk?: string }

/** yargs reads a lone "-" as a positional: keep it as the value of the options that take a file or "-". */
function dashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if ((a === '--against-hashes' || a === '--output' || a === '-o') && argv[i + 1] === '-') {
      out.push(`${a}=-`);
      i++;
    } else out.push(a);
  }
  return out;
}

export function main(argv: string[]): Promise<number> {
  return runCli('dr-verify', dashValues(argv), (y, wrap) =>
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
      .command(
        'compare <a> [b]',
        'Compare two images or devices byte for byte, or one with a hash manifest (--against-hashes)',
        (c) =>
          c
            .positional('a', { type: 'string', demandOption: true, description: 'image file or block device' })
            .positional('b', { type: 'string', description: 'the other image file or block device' })
            .option('against-hashes', { type: 'string', description: 'hash manifest (from dr-verify hashes or dr-tap scan), or - for standard input' })
            .option('chunk', { type: 'string', description: `granularity of the differing ranges (default ${DEFAULT_COMPARE_LABEL}); with --against-hashes it must match the manifest` })
            .option('volume', { type: 'string', description: 'with --against-hashes: refuse a manifest made for another volume name' }),
        wrap<CompareArgs>(async (args, ctx) => {
          const chunk = args.chunk !== undefined ? parseSize(args.chunk, 'chunk size') : undefined;
          let report: CompareReport;
          if (args.againstHashes !== undefined) {
            if (args.b !== undefined) throw new DrError('DR_USAGE', 'give either a second image or --against-hashes, not both (see dr-verify --help)');
            // The image must open before we wait on a manifest from a pipe.
            closeImage(openImage(args.a));
            const input = await openInput(args.againstHashes);
            report = await compareWithManifest(args.a, input.stream, input.name, { chunk, volume: args.volume });
          } else {
            if (args.b === undefined) throw new DrError('DR_USAGE', 'compare needs two images, or one and --against-hashes FILE (see dr-verify --help)');
            if (args.volume !== undefined) throw new DrError('DR_USAGE', '--volume applies only with --against-hashes');
            report = await compareImages(args.a, args.b, { chunk });
          }
          if (ctx.json) ctx.emit(report);
          else printCompare(report, ctx);
          return report.equal ? EXIT.OK : EXIT.DIFFERENT;
        }),
      )
      .command(
        'hashes <image>',
        'Write the hash manifest of an image (SHA-256 per chunk) to standard output',
        (c) =>
          c
            .positional('image', { type: 'string', demandOption: true, description: 'image file or block device' })
            .option('chunk', { type: 'string', description: `chunk size (default ${formatBytes(DEFAULT_HASH_CHUNK)})` })
            .option('volume', { type: 'string', description: 'volume name recorded in the manifest (default: the image file name)' })
            .option('output', { alias: 'o', type: 'string', description: 'write the manifest to this file instead of standard output' }),
        wrap<HashesArgs>(async (args, ctx) => {
          const chunk = args.chunk !== undefined ? parseSize(args.chunk, 'chunk size') : DEFAULT_HASH_CHUNK;
          const volume = args.volume ?? defaultVolumeName(args.image);
          checkVolumeName(volume);
          closeImage(openImage(args.image));
          const output = openStreamOutput(args.output, 'binary hash manifest');
          const s = await writeHashes(args.image, { chunk, volume, out: output.out });
          await output.close();
          if (ctx.json) {
            if (output.stdoutFree) ctx.emit(s);
            else process.stderr.write(JSON.stringify(s) + '\n');
          } else {
            ctx.log.info(`${args.image}: ${s.chunks} chunks of ${formatBytes(chunk)} hashed (${formatBytes(s.size)}) in ${s.seconds.toFixed(2)}s`);
          }
          return EXIT.OK;
        }),
      )
      .command(
        'sign <image>',
        'Write a stream of SIGNATURE records (SHA-256 per chunk) that can be appended to a journal',
        (c) =>
          c
            .positional('image', { type: 'string', demandOption: true, description: 'image file or block device' })
            .option('volume', { type: 'string', description: 'volume name (default: the image file name; with --journal, the journal\'s only volume)' })
            .option('chunk', { type: 'string', description: `bytes per signature (default ${formatBytes(DEFAULT_SIGN_CHUNK)})` })
            .option('journal', { type: 'string', description: 'continue this journal store: its group id, next seq and volume declarations' })
            .option('group', { type: 'string', description: 'group id (32 hex digits; default: a new group)' })
            .option('first-seq', { type: 'number', description: 'seq of the first record (default 1)' })
            .option('volume-id', { type: 'string', description: 'volume id (32 hex digits; default: a new id)' })
            .option('block-size', { type: 'string', description: 'block size declared for the volume (default 4096)' })
            .option('output', { alias: 'o', type: 'string', description: 'write the stream to this file instead of standard output' }),
        wrap<SignArgs>(async (args, ctx) => {
          const chunk = args.chunk !== undefined ? parseSize(args.chunk, 'chunk size') : DEFAULT_SIGN_CHUNK;
          const img = openImage(args.image);
          closeImage(img);
          let identity: SignIdentity;
          if (args.journal !== undefined) {
            if (args.group !== undefined || args.firstSeq !== undefined || args.volumeId !== undefined || args.blockSize !== undefined) {
              throw new DrError('DR_USAGE', '--journal takes the group, seq, volume id and block size from the journal: do not give --group, --first-seq, --volume-id or --block-size with it');
            }
            identity = await journalIdentity(args.journal, args.volume, ctx.log);
          } else {
            if (args.firstSeq !== undefined && (!Number.isSafeInteger(args.firstSeq) || args.firstSeq < 1)) {
              throw new DrError('DR_USAGE', `--first-seq ${args.firstSeq} must be a whole number from 1`);
            }
            const name = args.volume ?? defaultVolumeName(args.image);
            checkVolumeName(name);
            identity = newIdentity(name, img.size, args.blockSize !== undefined ? parseSize(args.blockSize, 'block size') : 4096, {
              groupId: args.group !== undefined ? idFromString(args.group) : undefined,
              firstSeq: args.firstSeq,
              volumeId: args.volumeId !== undefined ? idFromString(args.volumeId) : undefined,
            });
          }
          const output = openStreamOutput(args.output);
          const s = await signImage(args.image, { chunk, identity, out: output.out });
          await output.close();
          if (ctx.json) {
            if (output.stdoutFree) ctx.emit(s);
            else process.stderr.write(JSON.stringify(s) + '\n');
          } else {
            ctx.log.info(`${args.image}: ${s.records} signatures of ${formatBytes(chunk)} for volume ${s.volume}, seq ${s.firstSeq}..${s.lastSeq}, in ${s.seconds.toFixed(2)}s`);
          }
          return EXIT.OK;
        }),
      )
      .command(
        'journal <dir>',
        'Check a journal store: every segment\'s records and checksums, seq continuity, index, base images',
        (c) => c.positional('dir', { type: 'string', demandOption: true, description: 'journal directory' }),
        wrap<JournalArgs>(async (args, ctx) => {
          const report = await verifyJournal(args.dir, ctx.log);
          if (ctx.json) ctx.emit(report);
          else printJournalReport(report);
          return report.ok ? EXIT.OK : EXIT.DIFFERENT;
        }),
      )
      .command(
        'restore <dir>',
        'Check the point-in-time image of a journal against an image or a hash manifest, without writing it out',
        (c) =>
          c
            .positional('dir', { type: 'string', demandOption: true, description: 'journal directory' })
            .option('at', { type: 'string', demandOption: true, description: 'point: latest, seq:N, mark:NAME or an ISO-8601 time' })
            .option('against', { type: 'string', description: 'image file or block device expected to hold that point' })
            .option('against-hashes', { type: 'string', description: 'hash manifest expected to match that point, or - for standard input' })
            .option('volume', { type: 'string', description: 'volume to check (needed when the journal has several)' })
            .option('chunk', { type: 'string', description: `granularity of the differing ranges with --against (default ${DEFAULT_COMPARE_LABEL})` }),
        wrap<RestoreArgs>(async (args, ctx) => {
          if ((args.against === undefined) === (args.againstHashes === undefined)) {
            throw new DrError('DR_USAGE', 'restore needs exactly one of --against IMAGE or --against-hashes FILE (see dr-verify --help)');
          }
          const report = await verifyRestore({
            dir: args.dir, at: args.at, against: args.against, againstHashes: args.againstHashes, volume: args.volume,
            chunk: args.chunk !== undefined ? parseSize(args.chunk, 'chunk size') : undefined, log: ctx.log,
          });
          if (ctx.json) ctx.emit(report);
          else printRestoreReport(report);
          return report.equal ? EXIT.OK : EXIT.DIFFERENT;
        }),
      )
      .demandCommand(1, 'name a command'),
  );
}

const DEFAULT_COMPARE_LABEL = '4 KiB';
const MAX_LISTED = 50;

function printCompare(r: CompareReport, ctx: Context): void {
  const out: string[] = [];
  if (r.sizesDiffer) {
    out.push(`sizes differ: ${r.a.name} is ${formatBytes(r.a.size)} (${r.a.size} bytes), ${r.b.name} is ${formatBytes(r.b.size)} (${r.b.size} bytes); compared the first ${formatBytes(r.compared)}`);
  }
  if (r.equal) {
    out.push(`${r.a.name} and ${r.b.name} are identical (${formatBytes(r.compared)} compared in ${r.seconds.toFixed(2)}s)`);
  } else if (r.rangeCount === 0) {
    out.push(`the common ${formatBytes(r.compared)} are identical`);
  } else {
    const unit = r.exact ? '' : ` (in chunks of ${formatBytes(r.chunk)})`;
    out.push(`${r.a.name} and ${r.b.name} differ: ${r.rangeCount} range${r.rangeCount === 1 ? '' : 's'}, ${formatBytes(r.differentBytes)} in all${unit}`);
    for (const g of r.ranges.slice(0, MAX_LISTED)) out.push(`  at ${formatBytes(g.offset)}: ${formatBytes(g.length)}`);
    if (r.rangeCount > MAX_LISTED) out.push(`  ... and ${r.rangeCount - MAX_LISTED} more (--json lists ${r.ranges.length} with exact offsets)`);
  }
  process.stdout.write(out.join('\n') + '\n');
  void ctx;
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
