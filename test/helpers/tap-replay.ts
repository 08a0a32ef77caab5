/**
 * Rebuild volumes from a journal stream alone, independently of the tap: parse it
 * with StreamParser and apply WRITE and ZERO records to zero-filled buffers. Also
 * checks every SIGNATURE record against the bytes rebuilt at that point.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { StreamParser, type StreamItem } from '../../src/format/codec.js';
import type { StreamHeader } from '../../src/format/layout.js';

export interface Replayed {
  header: StreamHeader;
  /** volume name -> bytes after the last record */
  images: Map<string, Buffer>;
  counts: Record<string, number>;
  marks: Array<{ name: string; kind: string; seq: number; id: string }>;
  firstSeq: number;
  lastSeq: number;
  ended: boolean;
  signaturesChecked: number;
  signatureMismatches: number;
  /** error of the stream, if any (a truncated one still replays its valid prefix) */
  error: string | null;
}

/** Replay one or more consecutive streams (e.g. successive runs) into the same images. */
export function replayStreams(streams: Buffer[], start?: Map<string, Buffer>): Replayed {
  const images = start ?? new Map<string, Buffer>();
  const r: Replayed = {
    header: undefined as unknown as StreamHeader, images, counts: {}, marks: [], firstSeq: 0, lastSeq: 0, ended: false,
    signaturesChecked: 0, signatureMismatches: 0, error: null,
  };
  for (const bytes of streams) {
    const p = new StreamParser();
    const items: StreamItem[] = [];
    try {
      p.push(bytes, items);
      p.finish();
    } catch (err) {
      r.error = (err as Error).message;
    }
    r.ended = p.ended;
    const names: string[] = [];
    for (const it of items) {
      r.counts[it.type] = (r.counts[it.type] ?? 0) + 1;
      switch (it.type) {
        case 'header':
          if (!r.header) r.firstSeq = it.firstSeq;
          r.header = it;
          break;
        case 'volume':
          names[it.index] = it.name;
          if (!images.has(it.name)) images.set(it.name, Buffer.alloc(it.size));
          break;
        case 'write':
          it.data.copy(images.get(names[it.volume]!)!, it.offset);
          break;
        case 'zero':
          images.get(names[it.volume]!)!.fill(0, it.offset, it.offset + it.length);
          break;
        case 'mark':
          r.marks.push({ name: it.name, kind: it.kind, seq: it.seq, id: it.id.toString('hex') });
          break;
        case 'signature': {
          const img = images.get(names[it.volume]!)!;
          const d = createHash('sha256').update(img.subarray(it.offset, it.offset + it.length)).digest();
          r.signaturesChecked++;
          if (!d.equals(it.digest)) r.signatureMismatches++;
          break;
        }
        default:
          break;
      }
      if ('seq' in it && it.seq > 0) r.lastSeq = it.seq;
    }
  }
  return r;
}

export function replayFiles(files: string[]): Replayed {
  return replayStreams(files.map((f) => readFileSync(f)));
}
