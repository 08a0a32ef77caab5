/**
 * The golden vectors: each is a description of a stream, and test/fixtures/NAME.drj
 * holds its bytes. golden.test.ts checks the encoder reproduces them byte for byte
 * (DRKIT_WRITE_FIXTURES=1 rewrites them, for a deliberate format change only).
 */
import { StreamWriter, type RecordInput } from '../../src/format/codec.js';

export interface GoldenVolume { name: string; size: number; blockSize: number; id: string }
export interface Golden {
  name: string;
  groupId: string;
  firstSeq: number;
  created: number;
  volumes: GoldenVolume[];
  records: RecordInput[];
  /** write the END trailer (a complete stream) */
  end: boolean;
  endTime?: number;
}

const hex = (s: string) => Buffer.from(s, 'hex');
const T0 = 1_795_000_000_000_000; // 2026-11-19T... in microseconds

export const GOLDEN: Golden[] = [
  {
    name: 'empty',
    groupId: '00112233445566778899aabbccddeeff',
    firstSeq: 1,
    created: T0,
    volumes: [],
    records: [],
    end: true,
    endTime: T0,
  },
  {
    name: 'small',
    groupId: '0123456789abcdef0123456789abcdef',
    firstSeq: 1,
    created: T0,
    volumes: [{ name: 'disk0', size: 1 << 20, blockSize: 4096, id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }],
    records: [
      { type: 'write', volume: 0, offset: 4096, data: Buffer.from('drkit!\n\0'), time: T0 + 1 },
      { type: 'zero', volume: 0, offset: 8192, length: 4096, discard: true, time: T0 + 2 },
      { type: 'flush', time: T0 + 3 },
      { type: 'mark', kind: 'app', name: 'v1', id: hex('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'), time: T0 + 4 },
      { type: 'heartbeat', time: T0 + 5 },
    ],
    end: true,
    endTime: T0 + 6,
  },
  {
    name: 'group',
    groupId: 'fedcba9876543210fedcba9876543210',
    firstSeq: 1000,
    created: T0,
    volumes: [
      { name: 'db', size: 64 * 1024, blockSize: 512, id: '11111111111111111111111111111111' },
      { name: 'logs', size: 128 * 1024, blockSize: 4096, id: '22222222222222222222222222222222' },
    ],
    records: [
      { type: 'write', volume: 0, offset: 0, data: Buffer.alloc(512, 0x41), time: T0 + 10 },
      { type: 'write', volume: 1, offset: 131071, data: Buffer.from([0x7f]), fua: true, time: T0 + 10 },
      { type: 'zero', volume: 1, offset: 0, length: 65536, time: T0 + 11 },
      { type: 'flush', time: T0 + 12 },
      { type: 'mark', kind: 'crash', name: 'hourly 10:00', id: hex('33333333333333333333333333333333'), time: T0 + 13 },
      { type: 'write', volume: 0, offset: 65024, data: Buffer.alloc(512, 0x42), time: T0 + 20 },
      {
        type: 'signature', volume: 0, offset: 0, length: 512, algorithm: 'sha256',
        digest: hex('32beecb58a128af8248504600bd203dcc676adf41045300485655e6b8780a01d'), time: T0 + 21,
      },
      { type: 'mark', kind: 'user', name: 'före-upgrade', id: hex('44444444444444444444444444444444'), time: T0 + 22 },
    ],
    end: true,
    endTime: T0 + 23,
  },
  {
    name: 'ignorable',
    groupId: '0123456789abcdef0123456789abcdef',
    firstSeq: 7,
    created: T0,
    volumes: [{ name: 'disk0', size: 1 << 20, blockSize: 4096, id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }],
    records: [
      { type: 'unknown', code: 0x8042, flags: 0, payload: Buffer.from('a future optional record'), time: T0 + 1 },
      { type: 'write', volume: 0, offset: 0, data: Buffer.from('after the unknown record'), time: T0 + 2 },
    ],
    end: true,
    endTime: T0 + 3,
  },
  {
    name: 'live',
    groupId: '0123456789abcdef0123456789abcdef',
    firstSeq: 1,
    created: T0,
    volumes: [{ name: 'disk0', size: 1 << 20, blockSize: 4096, id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }],
    records: [{ type: 'write', volume: 0, offset: 512, data: Buffer.from('no trailer yet'), time: T0 + 1 }],
    end: false,
  },
];

export function encodeGolden(g: Golden): Buffer {
  const w = new StreamWriter({ groupId: hex(g.groupId), firstSeq: g.firstSeq, created: g.created });
  const parts: Buffer[] = [w.start()];
  for (const v of g.volumes) parts.push(...w.volume({ name: v.name, size: v.size, blockSize: v.blockSize, id: hex(v.id) }));
  for (const r of g.records) parts.push(...w.record(r).parts);
  if (g.end) parts.push(...w.end(g.endTime));
  return Buffer.concat(parts);
}
