/**
 * The journal store (src/store): segments, index, base images, marks, the single
 * appender, readers and the point-in-time restore engine. docs/STORE.md has the
 * on-disk layout. Everything other modules need is exported here.
 */
export { JournalStore, type OpenOptions, type MarkEntry, type StoreInfo, type SegmentEntry } from './store.js';
export type { Appender } from './appender.js';
export type { RecordsOptions, CatOptions } from './reader.js';
export type { PointInTimeReader } from './pit.js';
export { prune, type PruneOptions, type PruneResult } from './prune.js';
