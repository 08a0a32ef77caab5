/**
 * The journal side of dr-verify: the identity a SIGNATURE stream needs to be
 * appended to a store (`sign --journal`), a whole-store check (`journal`), and the
 * check of a point-in-time image against an image or a manifest (`restore`),
 * reading the point through the store's PointInTimeReader without writing it out.
 * Built only on the journal store API (src/store/index.ts).
 */
import type { Logger } from '../cli/log.js';
import { openInput } from '../cli/io.js';
import { formatBytes, formatMicros } from '../cli/units.js';
import { createReadStream, statSync } from 'node:fs';
import { DrError, fromSystemError } from '../errors.js';
import { StreamParser } from '../format/codec.js';
import { readIndexExtents, readIndexSummary } from '../store/segment.js';
import { baseFiles } from '../store/base.js';
import { idToString, type VolumeRecord } from '../format/layout.js';
import { closeImage, openImage, readFully } from './device.js';
import { DIGEST_LENGTH, ManifestReader, describeManifest } from './manifest.js';
import { RangeList, type Range } from './ranges.js';
import type { SignIdentity } from './hashes.js';
import { DEFAULT_COMPARE_CHUNK } from './compare.js';
import { hash } from 'node:crypto';

async function store(): Promise<typeof import('../store/index.js')> {
  return import('../store/index.js');
}

function pickVolume(volumes: VolumeRecord[], name: string | undefined, dir: string): VolumeRecord {
  if (volumes.length === 0) throw new DrError('DR_VOLUME_MISMATCH', `journal ${dir} declares no volume yet`);
  if (name === undefined) {
    if (volumes.length > 1) throw new DrError('DR_USAGE', `journal ${dir} has ${volumes.length} volumes (${volumes.map((v) => v.name).join(', ')}): name one with --volume`);
    return volumes[0]!;
  }
  const v = volumes.find((x) => x.name === name);
  if (!v) throw new DrError('DR_VOLUME_MISMATCH', `journal ${dir} has no volume ${JSON.stringify(name)} (it has ${volumes.map((x) => x.name).join(', ')})`);
  return v;
}

/** Group id, next seq and volume declarations of a store, for a stream to be appended to it. */
export async function journalIdentity(dir: string, volume: string | undefined, log: Logger): Promise<SignIdentity> {
  const { JournalStore } = await store();
  const s = await JournalStore.open(dir, { readOnly: true, log });
  try {
    if (!s.groupId) throw new DrError('DR_NO_STORE', `journal ${dir} is empty: it has no group yet, so there is nothing to sign into`);
    const v = pickVolume(s.volumes, volume, dir);
    return {
      groupId: Buffer.from(s.groupId),
      firstSeq: s.lastSeq + 1,
      volumes: s.volumes.map((x) => ({ name: x.name, size: x.size, blockSize: x.blockSize, id: Buffer.from(x.id) })),
      volumeIndex: s.volumes.indexOf(v),
    };
  } finally {
    await s.close();
  }
}

export interface JournalReport {
  ok: boolean;
  dir: string;
  groupId: string | null;
  volumes: Array<{ name: string; size: number; blockSize: number; id: string }>;
  firstSeq: number;
  lastSeq: number;
  records: number;
  byType: Record<string, number>;
  marks: number;
  segments: number;
  baseImages: number;
  problems: Array<{ code: string; message: string }>;
  seconds: number;
}

/**
 * Check a store three ways: (1) every segment file, read as the complete stream it
 * is, through the format's own parser (every checksum, seq and time order, the END
 * trailer's counts and running digest; the open last segment may lack END); (2) each
 * sealed segment's index agrees with what the segment really holds (seq range,
 * record and byte counts, marks, flush points) and its extent table checksum; (3)
 * segments continue one another, and the records the store's reader returns over
 * the whole window are continuous and address declared volumes. Base images: the
 * store records no checksum for them, so only their presence and size are checked.
 */
export async function verifyJournal(dir: string, log: Logger): Promise<JournalReport> {
  const t0 = performance.now();
  const { JournalStore } = await store();
  const s = await JournalStore.open(dir, { readOnly: true, log });
  const report: JournalReport = {
    ok: true, dir, groupId: s.groupId ? idToString(s.groupId) : null,
    volumes: s.volumes.map((v) => ({ name: v.name, size: v.size, blockSize: v.blockSize, id: idToString(v.id) })),
    firstSeq: s.firstSeq, lastSeq: s.lastSeq, records: 0, byType: {}, marks: 0, segments: 0, baseImages: 0,
    problems: [], seconds: 0,
  };
  const problem = (code: string, message: string) => {
    report.ok = false;
    if (report.problems.length < 1000) report.problems.push({ code, message });
  };
  try {
    // (1) + (2): each segment file on its own
    let prevLast: number | null = null;
    const segs = s.segments;
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      report.segments++;
      const last = i === segs.length - 1;
      const parsed = await parseSegment(seg.data, last);
      if (parsed.error) {
        problem(parsed.error.code, `segment ${seg.data}: ${parsed.error.message}`);
        continue;
      }
      if (parsed.firstSeq !== seg.firstSeq) problem('DR_STORE_CORRUPT', `segment ${seg.data} starts at seq ${parsed.firstSeq}, its name says ${seg.firstSeq}`);
      if (s.groupId && parsed.groupId && !parsed.groupId.equals(s.groupId)) problem('DR_GROUP_MISMATCH', `segment ${seg.data} belongs to group ${idToString(parsed.groupId)}, the store to ${idToString(s.groupId)}`);
      if (prevLast !== null && parsed.firstSeq !== prevLast + 1) problem('DR_SEQ_GAP', `segment ${seg.data} starts at seq ${parsed.firstSeq}, after a segment ending at ${prevLast}`);
      prevLast = parsed.lastSeq;
      if (!parsed.sealed) continue;
      const idx = readIndexSummary(seg.index);
      if (!idx) {
        problem('DR_STORE_CORRUPT', `index ${seg.index} of a sealed segment is missing or damaged`);
        continue;
      }
      const sum = idx.summary;
      const want: Array<[string, number, number]> = [
        ['first seq', sum.firstSeq, parsed.firstSeq], ['last seq', sum.lastSeq, parsed.lastSeq], ['records', sum.records, parsed.records],
        ['written bytes', sum.writeBytes, parsed.writeBytes], ['zeroed bytes', sum.zeroBytes, parsed.zeroBytes],
        ['marks', sum.marks.length, parsed.marks.length], ['flushes', sum.flushes.length, parsed.flushes.length],
        ['size', sum.size, parsed.bytes],
      ];
      for (const [what, has, real] of want) {
        if (has !== real) problem('DR_STORE_CORRUPT', `index ${seg.index} says ${what} ${has}, the segment holds ${real}`);
      }
      sum.marks.forEach((m, k) => {
        const r = parsed.marks[k];
        if (r && (r.seq !== m.seq || r.name !== m.name)) problem('DR_STORE_CORRUPT', `index ${seg.index} lists mark ${JSON.stringify(m.name)} at seq ${m.seq}, the segment has ${JSON.stringify(r.name)} at ${r.seq}`);
      });
      try {
        readIndexExtents(seg.index, idx);
      } catch (err) {
        if (!(err instanceof DrError)) throw err;
        problem(err.code, err.message);
      }
    }
    if (prevLast !== null && prevLast !== s.lastSeq) problem('DR_SEQ_GAP', `the last segment ends at seq ${prevLast}, the store says ${s.lastSeq}`);

    // (3) the window through the store's reader
    let expect = s.firstSeq;
    let lastTime = 0;
    try {
      for await (const r of s.records({ fromSeq: s.firstSeq, untilSeq: s.lastSeq })) {
        if (r.seq !== expect) {
          problem('DR_SEQ_GAP', `seq ${r.seq} found where ${expect} was expected`);
          expect = r.seq;
        }
        if (r.time < lastTime) problem('DR_TIME_ORDER', `time of seq ${r.seq} goes backwards`);
        lastTime = r.time;
        report.records++;
        report.byType[r.type] = (report.byType[r.type] ?? 0) + 1;
        if (r.type === 'write' || r.type === 'zero' || r.type === 'signature') {
          const v = s.volumes[r.volume];
          const len = r.type === 'write' ? r.data.length : r.length;
          if (!v) problem('DR_BAD_RECORD', `seq ${r.seq} names volume ${r.volume}, which the store does not declare`);
          else if (r.offset + len > v.size) problem('DR_OUT_OF_RANGE', `seq ${r.seq} reaches byte ${r.offset + len}, past the end of ${v.name} (${v.size})`);
        }
        expect++;
      }
    } catch (err) {
      if (!(err instanceof DrError)) throw err;
      problem(err.code, `reading the records: ${err.message}`);
    }
    if (report.ok && expect !== s.lastSeq + 1) problem('DR_SEQ_GAP', `records end at seq ${expect - 1}, the store says its last is ${s.lastSeq}`);
    report.marks = s.marks().length;

    // base images (generation > 0 exists once prune folded records)
    const gen = s.window?.baseGen ?? 0;
    if (gen > 0) {
      s.volumes.forEach((v, i) => {
        const f = baseFiles(s.dir, i, gen);
        try {
          const st = statSync(f.img);
          report.baseImages++;
          if (st.size !== v.size) problem('DR_STORE_CORRUPT', `base image ${f.img} is ${st.size} bytes, volume ${v.name} is ${v.size}`);
        } catch {
          problem('DR_STORE_CORRUPT', `base image ${f.img} of volume ${v.name} (generation ${gen}) is missing`);
        }
      });
    }
  } finally {
    await s.close();
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

interface ParsedSegment {
  error: { code: string; message: string } | null;
  groupId: Buffer | null;
  firstSeq: number;
  lastSeq: number;
  records: number;
  writeBytes: number;
  zeroBytes: number;
  marks: Array<{ seq: number; name: string }>;
  flushes: number[];
  bytes: number;
  sealed: boolean;
}

/** Read a segment file through the stream parser: every check the format defines. */
async function parseSegment(file: string, open: boolean): Promise<ParsedSegment> {
  const p = new StreamParser();
  const r: ParsedSegment = {
    error: null, groupId: null, firstSeq: 0, lastSeq: 0, records: 0, writeBytes: 0, zeroBytes: 0, marks: [], flushes: [], bytes: 0, sealed: false,
  };
  const input = createReadStream(file, { highWaterMark: 1 << 20 });
  try {
    for await (const chunk of input) {
      for (const it of p.push(chunk as Buffer)) {
        if (it.type === 'header') {
          r.groupId = it.groupId;
          r.firstSeq = it.firstSeq;
          r.lastSeq = it.firstSeq - 1;
        } else if (it.type === 'end') r.sealed = true;
        else if (it.type !== 'volume') {
          r.lastSeq = it.seq;
          r.records++;
          if (it.type === 'write') r.writeBytes += it.data.length;
          if (it.type === 'zero') r.zeroBytes += it.length;
          if (it.type === 'mark') r.marks.push({ seq: it.seq, name: it.name });
          if (it.type === 'flush') r.flushes.push(it.seq);
        }
      }
    }
    r.bytes = p.offset;
    if (!open || p.pendingBytes > 0) p.finish();
  } catch (err) {
    if (err instanceof DrError) r.error = { code: err.code, message: err.message };
    else throw fromSystemError(err, `reading segment ${file}`);
  } finally {
    input.destroy();
  }
  return r;
}

export function printJournalReport(r: JournalReport): void {
  const out: string[] = [];
  out.push(`journal:  ${r.dir}`);
  out.push(`group:    ${r.groupId ?? '(none yet)'}`);
  out.push(`volumes:  ${r.volumes.length}${r.volumes.map((v) => `\n  ${v.name} ${formatBytes(v.size)} (block ${v.blockSize}) id ${v.id}`).join('')}`);
  out.push(`window:   seq ${r.firstSeq}..${r.lastSeq}`);
  out.push(`records:  ${r.records}${Object.keys(r.byType).length ? ` (${Object.entries(r.byType).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`);
  out.push(`segments: ${r.segments} (each read as a whole stream: checksums, order, trailer; sealed ones against their index)`);
  out.push(`marks:    ${r.marks}`);
  if (r.baseImages > 0) out.push(`base:     ${r.baseImages} base image(s) present with the volumes' sizes`);
  for (const p of r.problems) out.push(`problem:  ${p.message} (${p.code})`);
  out.push(`result:   ${r.ok ? 'ok' : `${r.problems.length} problem(s)`}`);
  process.stdout.write(out.join('\n') + '\n');
}

export interface RestoreVerifyOptions {
  dir: string;
  at: string;
  against?: string;
  againstHashes?: string;
  volume?: string;
  chunk?: number;
  log: Logger;
}

export interface RestoreReport {
  equal: boolean;
  dir: string;
  point: { spec: string; seq: number; time: string };
  volume: string;
  size: number;
  against: { kind: 'image' | 'hashes'; name: string; size: number };
  sizesDiffer: boolean;
  chunk: number;
  ranges: Range[];
  rangeCount: number;
  differentBytes: number;
  seconds: number;
}

const READ = 4 << 20;

export async function verifyRestore(o: RestoreVerifyOptions): Promise<RestoreReport> {
  const t0 = performance.now();
  const { JournalStore } = await store();
  const s = await JournalStore.open(o.dir, { readOnly: true, log: o.log });
  try {
    const v = pickVolume(s.volumes, o.volume, o.dir);
    const point = s.resolvePoint(o.at);
    const pit = await s.pointInTime(point.seq);
    try {
      const vi = pit.volumes.findIndex((x) => x.name === v.name);
      const vol = pit.volumes[vi];
      if (!vol) throw new DrError('DR_VOLUME_MISMATCH', `volume ${v.name} did not exist yet at seq ${point.seq}`);
      const base = {
        dir: o.dir, point: { spec: o.at, seq: point.seq, time: formatMicros(point.time) }, volume: vol.name, size: vol.size,
      };
      if (o.against !== undefined) {
        const chunk = o.chunk ?? DEFAULT_COMPARE_CHUNK;
        const img = openImage(o.against);
        try {
          const common = Math.min(img.size, vol.size);
          const ranges = new RangeList(10_000, chunk);
          const buf = Buffer.allocUnsafe(READ);
          for (let pos = 0; pos < common; pos += READ) {
            const len = Math.min(READ, common - pos);
            const mine = await pit.read(vi, pos, len);
            const n = readFully(img.fd, buf, len, pos, o.against);
            if (n !== len) throw new DrError('DR_IO', `${o.against} ended at byte ${pos + n} while reading`);
            const theirs = buf.subarray(0, len);
            if (mine.equals(theirs)) continue;
            for (let c = 0; c < len; c += chunk) {
              const e = Math.min(c + chunk, len);
              const a = mine.subarray(c, e);
              const b = theirs.subarray(c, e);
              if (a.equals(b)) continue;
              let f = 0;
              while (a[f] === b[f]) f++;
              let l = a.length - 1;
              while (a[l] === b[l]) l--;
              ranges.add(pos + c + f, pos + c + l + 1);
            }
          }
          const sizesDiffer = img.size !== vol.size;
          return {
            ...base, equal: !sizesDiffer && ranges.count === 0, against: { kind: 'image', name: o.against, size: img.size }, sizesDiffer,
            chunk, ranges: ranges.kept, rangeCount: ranges.count, differentBytes: ranges.bytes, seconds: (performance.now() - t0) / 1000,
          };
        } finally {
          closeImage(img);
        }
      }
      const input = await openInput(o.againstHashes);
      const reader = new ManifestReader(input.stream, input.name);
      const m = await reader.readHeader();
      const where = `manifest ${input.name} (${describeManifest(m)})`;
      if (o.chunk !== undefined && o.chunk !== m.chunkSize) throw new DrError('DR_BAD_MANIFEST', `${where} was made with chunks of ${m.chunkSize} bytes, --chunk says ${o.chunk}`);
      if (m.volumeName && o.volume !== undefined && m.volumeName !== o.volume) {
        throw new DrError('DR_VOLUME_MISMATCH', `${where} is for volume ${JSON.stringify(m.volumeName)}, not ${JSON.stringify(o.volume)}`);
      }
      const chunk = m.chunkSize;
      const common = Math.min(m.volumeSize, vol.size);
      const comparable = m.volumeSize === vol.size ? m.chunkCount : Math.floor(common / chunk);
      const ranges = new RangeList(10_000, chunk);
      const per = Math.max(1, Math.floor(READ / chunk));
      for (let first = 0; first < comparable; first += per) {
        const count = Math.min(per, comparable - first);
        const theirs = await reader.next(count);
        // chunks up to READ bytes: one read for the group; bigger chunks: read in pieces
        const spanStart = first * chunk;
        const span = chunk <= READ ? await pit.read(vi, spanStart, Math.min(count * chunk, vol.size - spanStart)) : null;
        for (let i = 0; i < count; i++) {
          const off = (first + i) * chunk;
          const len = Math.min(chunk, vol.size - off);
          const h = span ? hashRange([span.subarray(off - spanStart, off - spanStart + len)]) : hashRange(await readChunks(pit, vi, off, len));
          if (!h.equals(theirs.subarray(i * DIGEST_LENGTH, (i + 1) * DIGEST_LENGTH))) ranges.add(off, off + len);
        }
      }
      if (comparable * chunk < common) ranges.add(comparable * chunk, common);
      await reader.checkEnd();
      const sizesDiffer = m.volumeSize !== vol.size;
      return {
        ...base, equal: !sizesDiffer && ranges.count === 0, against: { kind: 'hashes', name: input.name, size: m.volumeSize }, sizesDiffer,
        chunk, ranges: ranges.kept, rangeCount: ranges.count, differentBytes: ranges.bytes, seconds: (performance.now() - t0) / 1000,
      };
    } finally {
      await pit.release();
    }
  } finally {
    await s.close();
  }
}

async function readChunks(pit: { read(v: number, o: number, l: number): Promise<Buffer> }, v: number, off: number, len: number): Promise<Buffer[]> {
  const parts: Buffer[] = [];
  for (let p = 0; p < len; p += READ) parts.push(await pit.read(v, off + p, Math.min(READ, len - p)));
  return parts;
}

function hashRange(parts: Buffer[]): Buffer {
  return hash('sha256', parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer') as unknown as Buffer;
}

export function printRestoreReport(r: RestoreReport): void {
  const out: string[] = [];
  out.push(`point:    ${r.point.spec} = seq ${r.point.seq} (${r.point.time}) in ${r.dir}`);
  out.push(`volume:   ${r.volume} ${formatBytes(r.size)}`);
  out.push(`against:  ${r.against.kind === 'image' ? 'image' : 'hash manifest'} ${r.against.name} ${formatBytes(r.against.size)}`);
  if (r.sizesDiffer) out.push(`sizes differ: the point's volume is ${r.size} bytes, ${r.against.name} is ${r.against.size}; compared the common part`);
  if (r.rangeCount > 0) {
    out.push(`differ:   ${r.rangeCount} range(s), ${formatBytes(r.differentBytes)} in all${r.against.kind === 'hashes' ? ` (in chunks of ${formatBytes(r.chunk)})` : ''}`);
    for (const g of r.ranges.slice(0, 50)) out.push(`  at ${formatBytes(g.offset)}: ${formatBytes(g.length)}`);
    if (r.rangeCount > 50) out.push(`  ... and ${r.rangeCount - 50} more (--json lists them with exact offsets)`);
  }
  out.push(`result:   ${r.equal ? 'identical' : 'DIFFERENT'}`);
  process.stdout.write(out.join('\n') + '\n');
}
