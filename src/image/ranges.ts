/** Differing byte ranges, merged as they arrive in offset order, with a bounded list. */
export interface Range { offset: number; length: number }

export class RangeList {
  readonly kept: Range[] = [];
  /** ranges in all, kept or not */
  count = 0;
  /** bytes covered by all ranges */
  bytes = 0;
  private last: Range | null = null;

  /** keep at most `max` ranges in memory; the rest are only counted */
  constructor(private readonly max = 10_000, private readonly chunk = 1) {}

  /** Add [start, end); merged with the previous range when they touch at chunk granularity. */
  add(start: number, end: number): void {
    const prev = this.last;
    if (prev && Math.floor((prev.offset + prev.length - 1) / this.chunk) + 1 >= Math.floor(start / this.chunk)) {
      const grow = end - (prev.offset + prev.length);
      if (grow > 0) {
        prev.length += grow;
        this.bytes += grow;
      }
      return;
    }
    const r = { offset: start, length: end - start };
    this.count++;
    this.bytes += r.length;
    this.last = r;
    if (this.kept.length < this.max) this.kept.push(r);
  }

  get truncated(): boolean {
    return this.count > this.kept.length;
  }
}
