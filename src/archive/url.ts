/** s3://BUCKET/PREFIX locations of archived journal stores. */
import { DrError } from '../errors.js';

export interface ArchiveUrl {
  bucket: string;
  /** key prefix without leading or trailing slash ('' = the bucket root) */
  prefix: string;
}

export function isArchiveUrl(s: string): boolean {
  return /^s3:\/\//i.test(s);
}

export function parseArchiveUrl(s: string): ArchiveUrl {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/i.exec(s.trim());
  if (!m) throw new DrError('DR_USAGE', `bad archive location ${JSON.stringify(s)}: use s3://BUCKET/PREFIX`);
  const bucket = m[1]!;
  if (!/^[a-z0-9][a-z0-9.\-_]{1,62}$/i.test(bucket)) {
    throw new DrError('DR_USAGE', `bad bucket name ${JSON.stringify(bucket)} in ${s}`);
  }
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((p) => p === '.' || p === '..')) {
    throw new DrError('DR_USAGE', `bad prefix ${JSON.stringify(prefix)} in ${s}: no . or .. parts`);
  }
  return { bucket, prefix };
}

export function formatArchiveUrl(u: ArchiveUrl): string {
  return `s3://${u.bucket}/${u.prefix}`;
}

/** The key of `name` under the prefix. */
export function keyOf(u: ArchiveUrl, name: string): string {
  return u.prefix ? `${u.prefix}/${name}` : name;
}
