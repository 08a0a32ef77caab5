/** Read a whole stream and summarise it: what dr-verify stream reports. */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { DrError } from '../errors.js';
import type { StreamItem } from './codec.js';
import { DecoderStream } from './streams.js';
import { idToString, type MarkKind } from './layout.js';

export interface StreamSummary {
  valid: boolean;
  complete: boolean;
  groupId: string | null;
  created: number | null;
  volumes: Array<{ index: number; name: string; size: number; blockSize: number; id: string }>;
  records: Record<string, number>;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTime: number | null;
  lastTime: number | null;
  marks: Array<{ seq: number; time: number; name: string; kind: MarkKind }>;
  writeBytes: number;
  zeroBytes: number;
  streamBytes: number;
  trailer: { recordCount: number; byteCount: number } | null;
  error: { code: string; message: string; offset?: number; lastGoodSeq?: number } | null;
}

export async function inspectStream(input: Readable): Promise<StreamSummary> {
  const s: StreamSummary = {
    valid: false, complete: false, groupId: null, created: null, volumes: [], records: {},
    firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, marks: [], writeBytes: 0, zeroBytes: 0,
    streamBytes: 0, trailer: null, error: null,
  };
  const decoder = new DecoderStream();
  const sink = new Writable({
    objectMode: true,
    highWaterMark: 64,
    write(item: StreamItem, _e, cb) {
      switch (item.type) {
        case 'header':
          s.groupId = idToString(item.groupId);
          s.created = item.created;
          break;
        case 'volume':
          s.volumes.push({ index: item.index, name: item.name, size: item.size, blockSize: item.blockSize, id: idToString(item.id) });
          break;
        case 'end':
          s.trailer = { recordCount: item.recordCount, byteCount: item.byteCount };
          break;
        default:
          s.firstSeq ??= item.seq;
          s.firstTime ??= item.time;
          s.lastSeq = item.seq;
          s.lastTime = item.time;
          if (item.type === 'write') s.writeBytes += item.data.length;
          if (item.type === 'zero') s.zeroBytes += item.length;
          if (item.type === 'mark') s.marks.push({ seq: item.seq, time: item.time, name: item.name, kind: item.kind });
      }
      if (item.type !== 'header') s.records[item.type] = (s.records[item.type] ?? 0) + 1;
      cb();
    },
  });
  try {
    await pipeline(input, decoder, sink);
    s.valid = true;
    s.complete = true;
  } catch (err) {
    if (!(err instanceof DrError)) throw err;
    s.error = { code: err.code, message: err.message, offset: err.detail.offset, lastGoodSeq: err.detail.lastGoodSeq };
  }
  s.streamBytes = decoder.parser.offset;
  return s;
}
