/**
 * dr-journal archive DIR --to s3://BUCKET/PREFIX [--follow]: the archive tier's subcommand
 * (src/archive does the work). Also printArchivedGroups() for `dr-journal ls s3://BUCKET/`.
 */
import type { Register } from '../cli/command.js';
import type { CommonArgs, Context } from '../cli/main.js';
import { formatBytes, formatMicros, parseDuration, parseSize } from '../cli/units.js';
import { DrError, EXIT } from '../errors.js';
import { idToString } from '../format/layout.js';
import { sleep } from '../store/files.js';
// The AWS SDK loads only when an archive command runs (it costs ~0.4 s of start-up).
import type { PassResult } from '../archive/archiver.js';
import type { S3Options } from '../archive/objects.js';
import { DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE } from '../archive/limits.js';
import { formatArchiveUrl, isArchiveUrl, parseArchiveUrl } from '../archive/url.js';

interface ArchiveArgs extends CommonArgs {
  dir: string;
  to: string;
  follow?: boolean;
  interval?: string;
  partSize?: string;
  concurrency?: number;
  endpoint?: string;
  region?: string;
  tail?: boolean;
  verify?: boolean;
}

export function s3Options(args: { partSize?: string; concurrency?: number; endpoint?: string; region?: string }): S3Options {
  return {
    endpoint: args.endpoint,
    region: args.region,
    partSize: args.partSize !== undefined ? parseSize(args.partSize, 'part size') : undefined,
    concurrency: args.concurrency,
  };
}

export const register: Register = (y, wrap) =>
  y.command(
    'archive <dir>',
    'Upload sealed segments, indexes, base images and the open segment\'s durable records to S3-compatible storage',
    (c) => c
      .positional('dir', { type: 'string', demandOption: true, description: 'store directory' })
      .option('to', { type: 'string', demandOption: true, description: 'archive location s3://BUCKET/PREFIX (the bucket is created if absent)' })
      .option('follow', { alias: 'f', type: 'boolean', description: 'keep archiving as the store grows (stop with SIGINT/SIGTERM)' })
      .option('interval', { type: 'string', default: '10s', description: 'with --follow: time between passes' })
      .option('tail', { type: 'boolean', default: true, description: 'also upload the durable records of the open segment (--no-tail: sealed segments only)' })
      .option('verify', { type: 'boolean', description: 'also check the archived copies of the segments still stored locally and upload again any that differ' })
      .option('part-size', { type: 'string', description: `multipart part size, >= 5M (default ${formatBytes(DEFAULT_PART_SIZE)}); smaller objects go up in one PUT` })
      .option('concurrency', { type: 'number', description: `parts in flight at once (default ${DEFAULT_CONCURRENCY})` })
      .option('endpoint', { type: 'string', description: 'S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS)' })
      .option('region', { type: 'string', description: 'region (default: AWS_REGION, else us-east-1)' }),
    wrap<ArchiveArgs>(async (args, ctx) => archive(args, ctx)),
  );

async function archive(args: ArchiveArgs, ctx: Context): Promise<number> {
  const url = parseArchiveUrl(args.to);
  const interval = parseDuration(args.interval ?? '10s', 'interval');
  const { Archiver } = await import('../archive/archiver.js');
  const archiver = new Archiver(args.dir, url, { s3: s3Options(args), log: ctx.log, signal: ctx.signal, tail: args.tail !== false, verify: Boolean(args.verify) });
  const report = (r: PassResult): void => {
    if (ctx.json) ctx.emit({ event: 'archived', url: formatArchiveUrl(url), ...r });
    else if (r.manifestWritten || r.uploadedObjects > 0) {
      ctx.log.info(`archived to ${formatArchiveUrl(url)}: ${r.uploadedObjects} objects (${formatBytes(r.uploadedBytes)}) uploaded, ${r.skippedObjects} already there; seq up to ${r.lastSeq} (sealed up to ${r.sealedThrough}), ${r.segments} segments`);
    } else ctx.log.debug(`nothing new to archive (seq up to ${r.lastSeq})`);
  };
  try {
    if (!args.follow) {
      report(await archiver.pass());
      return EXIT.OK;
    }
    ctx.handlesStop();
    while (!ctx.signal.aborted) {
      try {
        report(await archiver.pass());
      } catch (err) {
        if (ctx.signal.aborted) break;
        // a peer hiccup in follow mode: say so and try again next pass
        if (err instanceof DrError && (err.code === 'DR_PEER' || err.code === 'DR_TIMEOUT')) ctx.log.warn(err.message);
        else throw err;
      }
      await sleep(interval, ctx.signal);
    }
    return EXIT.OK;
  } finally {
    archiver.close();
  }
}

/** `dr-journal ls s3://BUCKET/[PREFIX]`: the archived groups under a prefix. */
export async function printArchivedGroups(location: string, ctx: Context, s3: S3Options = {}): Promise<number> {
  if (!isArchiveUrl(location)) throw new DrError('DR_USAGE', `${location} is not an s3:// location`);
  const { listArchivedGroups } = await import('../archive/restore.js');
  const groups = await listArchivedGroups(location, { s3 });
  if (ctx.json) {
    for (const g of groups) ctx.emit(g);
    return EXIT.OK;
  }
  if (groups.length === 0) {
    ctx.log.info(`no archived journal stores under ${location}`);
    return EXIT.OK;
  }
  const out: string[] = [];
  for (const g of groups) {
    out.push(`${g.url}`);
    out.push(`  group:    ${idToString(Buffer.from(g.groupId, 'hex'))}`);
    out.push(`  volumes:  ${g.volumes.map((v) => `${v.name} (${formatBytes(v.size)})`).join(', ')}`);
    out.push(`  window:   seq ${g.firstSeq}..${g.lastSeq}${g.lastTime ? `, last record ${formatMicros(g.lastTime)}` : ''}`);
    out.push(`  archived: ${g.segments} segments, ${g.marks} marks, ${formatBytes(g.bytes)}, updated ${formatMicros(g.updated)} from ${g.source.host}:${g.source.dir}`);
  }
  process.stdout.write(out.join('\n') + '\n');
  return EXIT.OK;
}
