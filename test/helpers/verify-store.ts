/** Build a journal store from stream bytes through the store API (as dr-journal would), for dr-verify tests. */
import { JournalStore } from '../../src/store/index.js';
import { StreamParser } from '../../src/format/codec.js';
import type { SequencedRecord, StreamHeader, VolumeRecord } from '../../src/format/layout.js';

export async function appendStreams(dir: string, streams: Buffer[], opts: { segmentSize?: number } = {}): Promise<void> {
  const s = await JournalStore.open(dir, { create: true, segmentSize: opts.segmentSize });
  const a = await s.appender();
  try {
    for (const bytes of streams) {
      const p = new StreamParser();
      const items = p.push(bytes);
      p.finish();
      const header = items.find((i): i is StreamHeader => i.type === 'header')!;
      a.begin(header, items.filter((i): i is VolumeRecord => i.type === 'volume'));
      for (const it of items) {
        if (it.type !== 'header' && it.type !== 'volume' && it.type !== 'end') a.append(it as SequencedRecord);
      }
    }
    await a.sync();
  } finally {
    await a.close();
    await s.close();
  }
}
