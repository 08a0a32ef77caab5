/**
 * Restoring from the bucket alone: openArchivedStore(s3://BUCKET/PREFIX) rebuilds, in a
 * temp directory, a read-only journal store holding what the archive manifest names and
 * opens it with the store's own engine, so resolvePoint(), marks(), pointInTime() and
 * everything built on them work exactly as on a local store. close() removes the temp directory.
 *
 * Given the point to restore, only what it needs is fetched: the index objects of the segments
 * up to it (whole, SHA-256 checked), then - into sparse placeholders of the segment data files
 * and base images - the record ranges resolving the point reads and the byte ranges the
 * point-in-time reader says its volumes are made of (PointInTimeReader.sources), as ranged
 * GETs of whole 1 MiB checksum chunks, every chunk checked against the object's sums
 * (chunk-fetch.ts). Without a point (--list, several points) every object is downloaded whole
 * and SHA-256 checked.
 *
 * listArchivedGroups(s3://BUCKET/[PREFIX]) finds the archived stores (manifests) under a
 * prefix, for `dr-journal ls s3://BUCKET/`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DrError, fromSystemError } from '../errors.js';
import type { Logger } from '../cli/log.js';
import { parseTime } from '../cli/units.js';
import { JournalStore } from '../store/index.js';
import type { SegmentEntry } from '../store/store.js';
import { resolveRestorePoint } from '../image/restore-point.js';
import { ChunkFetcher } from './chunk-fetch.js';
import { gatedReader, setGate } from './gate.js';
import { baseFiles, regionCount, REGION } from '../store/base.js';
import { segmentPaths } from '../store/segment.js';
import { STORE_FORMAT, writeMeta, writeWindow } from '../store/state.js';
import { ObjectStore, type S3Options } from './objects.js';
import { MANIFEST, parseManifest, type ArchiveManifest, type ArchivedObject, type ArchivedSegment } from './manifest.js';
import { formatArchiveUrl, keyOf, parseArchiveUrl, type ArchiveUrl } from './url.js';

export interface OpenArchiveOptions {
  log?: Logger;
  s3?: S3Options;
  signal?: AbortSignal;
  /** the point that will be restored ('latest' | 'seq:N' | 'mark:NAME' | ISO time): fetch only what it needs */
  point?: string;
  /** the point will be moved back to its FLUSH or MARK (dr-restore --consistent) */
  consistent?: boolean;
  /** where to build the temp store (default os.tmpdir()) */
  workDir?: string;
  /** parallel downloads (default 4) */
  concurrency?: number;
  /** bytes received, as they arrive */
  onBytes?: (n: number) => void;
  /** on close(): bytes received, and what the objects the point needs hold (what downloading them whole would cost) */
  onFetched?: (f: { bytes: number; objectBytes: number; requests: number }) => void;
}

export async function readManifest(objects: ObjectStore, url: ArchiveUrl): Promise<ArchiveManifest> {
  const where = `${formatArchiveUrl(url)}`;
  const body = await objects.getBufferIfExists(keyOf(url, MANIFEST));
  if (!body) throw new DrError('DR_NO_STORE', `no archived journal store at ${where} (no ${MANIFEST} there)`);
  return parseManifest(body, `${where}/${MANIFEST}`);
}

/** The segments a point needs (all of them when it is unknown). */
export function segmentsFor(m: ArchiveManifest, where: string, point?: string): ArchivedSegment[] {
  const p = point?.trim();
  let limit = Infinity;
  if (p === undefined || p === 'latest') limit = Infinity;
  else if (/^seq:\d+$/.test(p)) limit = Number(p.slice(4));
  else if (p.startsWith('mark:')) {
    const name = p.slice(5);
    const found = m.segments.flatMap((s) => s.marks).filter((x) => x.name === name).pop();
    if (found) limit = found.seq;
    else if (m.window.foldedMarks.some((x) => x.name === name)) limit = m.window.firstSeq - 1;
    else throw new DrError('DR_BAD_POINT', `no mark named ${JSON.stringify(name)} in ${where}`);
  } else if (/^\d{4}-\d{2}-\d{2}/.test(p)) {
    const t = parseTime(p);
    limit = m.window.firstSeq - 1;
    for (const s of m.segments) if (s.records > 0 && s.firstTime <= t) limit = s.lastSeq;
  } else limit = m.window.firstSeq - 1; // bad syntax: the store reports it
  return m.segments.filter((s) => s.firstSeq <= limit);
}

/** A read-only JournalStore rebuilt from the bucket; close() also removes its temp directory. */
export async function openArchivedStore(location: string, opts: OpenArchiveOptions = {}): Promise<JournalStore> {
  const url = parseArchiveUrl(location);
  const objects = new ObjectStore(url.bucket, opts.s3);
  let dir: string | null = null;
  let fetcher: ChunkFetcher | null = null;
  try {
    const m = await readManifest(objects, url);
    const where = formatArchiveUrl(url);
    const segs = segmentsFor(m, where, opts.point);
    try {
      dir = fs.mkdtempSync(path.join(opts.workDir ?? os.tmpdir(), 'drkit-archive-'));
      fs.mkdirSync(path.join(dir, 'segments'));
      fs.mkdirSync(path.join(dir, 'base'));
    } catch (err) {
      throw fromSystemError(err, 'cannot create a temp directory for the archived store');
    }
    const d = dir;
    writeMeta(d, { format: STORE_FORMAT, version: 1, groupId: m.groupId, created: m.created, segmentSize: m.segmentSize, volumes: m.volumes });
    writeWindow(d, { ...m.window, prunedAt: 0 });
    const jobs: Array<() => Promise<void>> = [];
    let received = 0;
    const onBytes = (n: number): void => {
      received += n;
      opts.onBytes?.(n);
    };
    const fetch = (o: ArchivedObject, file: string) => async (): Promise<void> => {
      const n = await objects.download(keyOf(url, o.key), file, o.sha256, { signal: opts.signal, onBytes });
      if (n !== o.size) throw new DrError('DR_BAD_CHECKSUM', `${where}/${o.key} has ${n} bytes, the archive recorded ${o.size}`);
    };
    // with a point: segment data and base images as placeholders, filled with what the point needs
    const ranged = opts.point !== undefined;
    const concurrency = opts.concurrency ?? 4;
    fetcher = new ChunkFetcher(objects, (k) => keyOf(url, k), where, { concurrency, signal: opts.signal, onBytes });
    const chunks = fetcher;
    let wholeBytes = 0;
    for (const s of segs) {
      const p = segmentPaths(d, s.firstSeq);
      if (ranged && s.index) chunks.addSegment(s.data, p.data);
      else {
        jobs.push(fetch(s.data, p.data));
        wholeBytes += s.data.size;
      }
      if (s.index) {
        jobs.push(fetch(s.index, p.index));
        wholeBytes += s.index.size;
      }
    }
    for (const b of m.base) {
      const vol = m.volumes.find((v) => v.index === b.volume);
      if (!vol) throw new DrError('DR_STORE_CORRUPT', `${where}/${MANIFEST} has a base image for volume ${b.volume}, which it does not declare`);
      const f = baseFiles(d, b.volume, m.window.baseGen);
      const map = Buffer.from(b.map, 'base64');
      if (ranged) {
        chunks.addBase(b.data, f.img, vol.size, map);
        fs.writeFileSync(f.map, map);
        continue;
      }
      const packed = `${f.img}.packed`;
      wholeBytes += b.data.size;
      jobs.push(async () => {
        await fetch(b.data, packed)();
        unpackBase(packed, f.img, vol.size, map);
        fs.writeFileSync(f.map, map);
        fs.rmSync(packed);
      });
    }
    await runPool(jobs, concurrency);
    const store = await JournalStore.open(d, { readOnly: true, log: opts.log });
    try {
      // what resolving the point reads is fetched now; what its volumes are made of goes on in the background
      if (ranged) (await planForPoint(store, chunks, opts.point!, Boolean(opts.consistent))).done.catch(() => undefined);
    } catch (err) {
      await store.close();
      throw err;
    }
    if (ranged) {
      setGate(store, (file, pos, length) => chunks.ensure(file, pos, length));
      const pointInTime = store.pointInTime.bind(store);
      store.pointInTime = async (seq) => gatedReader(store, await pointInTime(seq));
    }
    const close = store.close.bind(store);
    store.close = async () => {
      try {
        const report = { bytes: 0, objectBytes: wholeBytes + chunks.objectBytes, requests: 0 };
        await chunks.close();
        objects.destroy();
        report.bytes = received;
        report.requests = chunks.stats.requests + jobs.length;
        opts.onFetched?.(report);
        opts.log?.debug(`fetched ${report.bytes} bytes in ${report.requests} requests; the objects the point needs hold ${report.objectBytes}`);
        await close();
      } finally {
        fs.rmSync(d, { recursive: true, force: true });
      }
    };
    return store;
  } catch (err) {
    await fetcher?.close();
    objects.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** what one sources() call covers at most (bounds the list it returns) */
const SOURCES_SPAN = 16 << 20;

/**
 * Fill the placeholders with what restoring `point` reads: the records that resolving it
 * walks (the first of the window for its description, the point's own record for its time, the
 * records around a time) now, then, queued in volume order, every byte range the
 * point-in-time reader of each volume preads. Returns the background fetch (its failure reaches the reads).
 */
async function planForPoint(store: JournalStore, chunks: ChunkFetcher, point: string, consistent: boolean): Promise<{ done: Promise<void> }> {
  needRecord(store, chunks, store.firstSeq);
  needRecord(store, chunks, store.lastSeq);
  const p = point.trim();
  if (/^seq:\d+$/.test(p)) needRecord(store, chunks, Number(p.slice(4)));
  else if (/^\d{4}-\d{2}-\d{2}/.test(p)) {
    let t: number | null = null;
    try {
      t = parseTime(p);
    } catch {
      /* resolvePoint reports the bad time */
    }
    if (t !== null) needTimeWalk(store, chunks, t);
  }
  await chunks.fetch();
  const at = resolveRestorePoint(store, point, consistent);
  needRecord(store, chunks, at.seq);
  await chunks.fetch();
  const r = await store.pointInTime(at.seq);
  try {
    // allocated() waits for the whole block map; outside its runs a read preads nothing
    for (const [vi] of r.volumes.entries()) {
      for await (const run of r.allocated(vi)) {
        for (let off = run.offset; off < run.offset + run.length; off += SOURCES_SPAN) {
          for (const s of r.sources(vi, off, Math.min(SOURCES_SPAN, run.offset + run.length - off))) chunks.need(s.file, s.pos, s.length);
        }
      }
    }
  } finally {
    await r.release();
  }
  return { done: chunks.fetch() };
}

/** The bytes store.locate(seq) walks: from the sparse index point before it to the next one. */
function needRecord(store: JournalStore, chunks: ChunkFetcher, seq: number): void {
  const seg = store.segmentFor(seq);
  if (seg) needWalk(chunks, seg, ([s]) => s <= seq, 1);
}

/** The bytes store.seqAtTime(t) walks: from the last sparse point at or before t through the record after t. */
function needTimeWalk(store: JournalStore, chunks: ChunkFetcher, t: number): void {
  let seg: SegmentEntry | undefined;
  for (const s of store.segments) {
    if (s.summary.records === 0 || s.summary.lastSeq < store.firstSeq) continue;
    if (s.summary.firstTime <= t) seg = s;
    else break;
  }
  // the walk stops at the first record after t: at the latest the one at the next sparse point, which ends before the one after
  if (seg) needWalk(chunks, seg, ([, time]) => time <= t, 2);
}

/** A record walk of `seg` from its last sparse point that `from` accepts (else its first record) to `points` sparse points on. */
function needWalk(chunks: ChunkFetcher, seg: SegmentEntry, from: (p: [number, number, number]) => boolean, points: number): void {
  const sparse = seg.summary.sparse;
  let k = -1;
  while (k + 1 < sparse.length && from(sparse[k + 1]!)) k++;
  const start = k >= 0 ? sparse[k]![2] : seg.summary.headerEnd;
  const end = sparse[k + points]?.[2] ?? seg.summary.dataEnd;
  chunks.need(seg.data, start, end - start);
}

function unpackBase(packed: string, img: string, size: number, map: Buffer): void {
  const src = fs.openSync(packed, 'r');
  const dst = fs.openSync(img, 'w');
  try {
    fs.ftruncateSync(dst, size);
    const buf = Buffer.allocUnsafe(REGION);
    let pos = 0;
    for (let r = 0; r < regionCount(size); r++) {
      if (((map[r >> 3] ?? 0) & (1 << (r & 7))) === 0) continue;
      const n = Math.min(REGION, size - r * REGION);
      const got = fs.readSync(src, buf, 0, n, pos);
      if (got !== n) throw new DrError('DR_BAD_CHECKSUM', `archived base image ${path.basename(img)} is shorter than its region map says`);
      fs.writeSync(dst, buf, 0, n, r * REGION);
      pos += n;
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}

async function runPool(jobs: Array<() => Promise<void>>, n: number): Promise<void> {
  let i = 0;
  let failed: unknown = null;
  const worker = async (): Promise<void> => {
    while (i < jobs.length && failed === null) {
      const job = jobs[i++]!;
      try {
        await job();
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, jobs.length)) }, worker));
  if (failed !== null) throw failed;
}

export interface ArchivedGroup {
  url: string;
  groupId: string;
  volumes: Array<{ index: number; name: string; size: number }>;
  firstSeq: number;
  lastSeq: number;
  lastTime: number;
  segments: number;
  marks: number;
  bytes: number;
  updated: number;
  source: { host: string; dir: string };
}

/** Every archived store (manifest) under s3://BUCKET/[PREFIX]. */
export async function listArchivedGroups(location: string, opts: { s3?: S3Options } = {}): Promise<ArchivedGroup[]> {
  const url = parseArchiveUrl(location);
  const objects = new ObjectStore(url.bucket, opts.s3);
  try {
    const { keys } = await objects.list(url.prefix ? `${url.prefix}/` : '');
    const manifests = keys.map((k) => k.key).filter((k) => k === MANIFEST || k.endsWith(`/${MANIFEST}`));
    const out: ArchivedGroup[] = [];
    for (const key of manifests) {
      const prefix = key.slice(0, Math.max(0, key.length - MANIFEST.length - 1));
      const where = `s3://${url.bucket}/${prefix}`;
      const m = parseManifest(await objects.getBuffer(key), `s3://${url.bucket}/${key}`);
      let bytes = 0;
      for (const s of m.segments) bytes += s.data.size + (s.index?.size ?? 0);
      for (const b of m.base) bytes += b.data.size;
      out.push({
        url: where, groupId: m.groupId, volumes: m.volumes.map((v) => ({ index: v.index, name: v.name, size: v.size })),
        firstSeq: m.window.firstSeq, lastSeq: m.lastSeq, lastTime: m.lastTime, segments: m.segments.length,
        marks: m.segments.reduce((n, s) => n + s.marks.length, 0), bytes, updated: m.updated, source: m.source,
      });
    }
    return out;
  } finally {
    objects.destroy();
  }
}
