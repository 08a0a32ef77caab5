/**
 * Reads of a store rebuilt from the bucket wait for their bytes: openArchivedStore() returns
 * while the ranges the point needs are still being fetched into the placeholders, so a
 * restore runs alongside the download. Its point-in-time readers are gated here: a read asks
 * the reader which file ranges it will pread (sources()), waits until they are in (fetched
 * at once if nobody asked for them yet), then reads.
 *
 * Kept apart from restore.ts (which loads the AWS SDK): dr-restore gates the readers it
 * builds itself (worker threads read the files directly) with gatedReader(), a no-op for a
 * local store.
 */
import type { JournalStore } from '../store/index.js';
import type { PointInTimeReader } from '../store/pit.js';

/** waits until local file bytes [pos, pos+length) are in */
export type Ensure = (file: string, pos: number, length: number) => Promise<void>;

const gates = new WeakMap<JournalStore, Ensure>();

export function setGate(store: JournalStore, ensure: Ensure): void {
  gates.set(store, ensure);
}

/** `reader` with reads that wait for their bytes when `store` is being fetched from the bucket; else `reader` itself. */
export function gatedReader(store: JournalStore, reader: PointInTimeReader): PointInTimeReader {
  const ensure = gates.get(store);
  if (!ensure) return reader;
  // a plain wrapper: the interface's members are the reader's own, only read() waits first
  return {
    seq: reader.seq,
    time: reader.time,
    volumes: reader.volumes,
    read: async (volume, offset, length, into) => {
      // always asked, also once the point's ranges are all in: a reader at another seq may need others
      await Promise.all(reader.sources(volume, offset, length).map((s) => ensure(s.file, s.pos, s.length)));
      return reader.read(volume, offset, length, into);
    },
    allocated: (volume) => reader.allocated(volume),
    sources: (volume, offset, length) => reader.sources(volume, offset, length),
    release: () => reader.release(),
  };
}
