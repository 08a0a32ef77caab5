/** Transfer sizes of the archive tier (kept apart from objects.ts so flags can name them without loading the AWS SDK). */
/** granularity of the per-chunk checksums (and of verified ranged reads) */
export const SUM_CHUNK = 1 << 20;
export const DEFAULT_PART_SIZE = 16 << 20;
export const MIN_PART_SIZE = 5 << 20;
export const DEFAULT_CONCURRENCY = 4;
