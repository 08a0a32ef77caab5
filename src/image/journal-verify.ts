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
import { DrError } from '../errors.js';
import { idToString, type SequencedRecord, type VolumeRecord } from '../format/layout.js';
import { closeImage, openImage, readFully } from './device.js';
import { DIGEST_LENGTH, ManifestReader, describeManifest } from './manifest.js';
import { RangeList, type Range } from './ranges.js';
import type { SignIdentity } from './hashes.js';
import { DEFAULT_COMPARE_CHUNK } from './compare.js';
import { hash } from 'node:crypto';

// The parts of the journal store API (store-contract) used here.
interface StoreReader {
  groupId: Buffer | null;
  volumes: VolumeRecord[];
  firstSeq: number;
  lastSeq: number;
  close(): Promise<void>;
  records(opts?: { fromSeq?: number; untilSeq?: number }): AsyncIterable<SequencedRecord>;
  resolvePoint(point: string): { seq: number; time: number };
  marks(): Array<{ seq: number; time: number; name: string }>;
  pointInTime(seq: number): Promise<{
    volumes: VolumeRecord[];
    read(volume: number, offset: number, length: number): Promise<Buffer>;
    release(): Promise<void>;
  }>;
}
interface StoreModule {
  JournalStore: { open(dir: string, opts?: { readOnly?: boolean; log?: Logger }): Promise<StoreReader> };
}
const STORE_MODULE = '../store/index.js';
async function store(): Promise<StoreModule> {
  return (await import(STORE_MODULE)) as StoreModule;
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
  signatures: { checked: number; skipped: number };
  problems: Array<{ code: string; message: string }>;
  seconds: number;
}

/**
 * Read every record of the window in order (the store's reader checks each record's
 * checksums), checking seq continuity, time order and that every record addresses a
 * declared volume inside its size; then compare marks with the records read.
 */
export async function verifyJournal(dir: string, log: Logger): Promise<JournalReport> {
  const t0 = performance.now();
  const { JournalStore } = await store();
  const s = await JournalStore.open(dir, { readOnly: true, log });
  const report: JournalReport = {
    ok: true, dir, groupId: s.groupId ? idToString(s.groupId) : null,
    volumes: s.volumes.map((v) => ({ name: v.name, size: v.size, blockSize: v.blockSize, id: idToString(v.id) })),
    firstSeq: s.firstSeq, lastSeq: s.lastSeq, records: 0, byType: {}, marks: 0, signatures: { checked: 0, skipped: 0 },
    problems: [], seconds: 0,
  };
  const problem = (code: string, message: string) => {
    report.ok = false;
    if (report.problems.length < 1000) report.problems.push({ code, message });
  };
  try {
    let expect = s.firstSeq;
    let lastTime = 0;
    const markSeqs = new Set<number>();
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
        if (r.type === 'mark') markSeqs.add(r.seq);
        expect++;
      }
    } catch (err) {
      if (!(err instanceof DrError)) throw err;
      problem(err.code, `reading the records: ${err.message}`);
    }
    if (report.ok && expect !== s.lastSeq + 1) problem('DR_SEQ_GAP', `records end at seq ${expect - 1}, the store says its last is ${s.lastSeq}`);
    const marks = s.marks();
    report.marks = marks.length;
    for (const m of marks) {
      if (m.seq >= s.firstSeq && !markSeqs.has(m.seq)) problem('DR_STORE_CORRUPT', `the index lists mark ${JSON.stringify(m.name)} at seq ${m.seq}, but that record is not a mark`);
    }
    for (const seq of markSeqs) {
      if (!marks.some((m) => m.seq === seq)) problem('DR_STORE_CORRUPT', `mark at seq ${seq} is missing from the index`);
    }
  } finally {
    await s.close();
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

export function printJournalReport(r: JournalReport): void {
  const out: string[] = [];
  out.push(`journal:  ${r.dir}`);
  out.push(`group:    ${r.groupId ?? '(none yet)'}`);
  out.push(`volumes:  ${r.volumes.length}${r.volumes.map((v) => `\n  ${v.name} ${formatBytes(v.size)} (block ${v.blockSize}) id ${v.id}`).join('')}`);
  out.push(`window:   seq ${r.firstSeq}..${r.lastSeq}`);
  out.push(`records:  ${r.records}${Object.keys(r.byType).length ? ` (${Object.entries(r.byType).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`);
  out.push(`marks:    ${r.marks}`);
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
        for (let i = 0; i < count; i++) {
          const off = (first + i) * chunk;
          const len = Math.min(chunk, vol.size - off);
          const h = hashRange(await readChunks(pit, vi, off, len));
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
