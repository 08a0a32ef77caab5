/**
 * A checkpoint across several taps (a consistency group spread over processes or
 * hosts): hold new requests on every tap, and once all have confirmed, write the
 * same MARK (same name and id) in every journal and release them. While any tap
 * holds, no write it receives is acknowledged, so no write acknowledged after a
 * MARK on one tap can have caused a write before the MARK on another.
 *
 * If not every tap confirms within the timeout, all are released, nothing is
 * recorded, and the attempt is retried with twice the timeout. A successful
 * timeout is remembered by the taps (as a hint) and shortened towards what was
 * actually needed, so applications are held as briefly as possible next time.
 */
import { DrError } from '../errors.js';
import { idToString, newId, type MarkKind } from '../format/layout.js';
import type { ControlClient, ControlReply } from './control.js';

export interface CheckpointResult {
  name: string;
  kind: MarkKind;
  id: string;
  attempts: number;
  /** timeout of the successful attempt */
  timeoutMs: number;
  /** the hint left in the taps for the next checkpoint */
  nextTimeoutMs: number;
  /** longest time a tap held its writes (hold to MARK), in ms */
  heldMs: number;
  /** the whole checkpoint, first hold request to the last durable MARK, in ms */
  totalMs: number;
  /** time until every tap confirmed its hold */
  confirmMs: number;
  taps: Array<{ control: string; seq: number; time: number }>;
}

const MIN_TIMEOUT = 50;

export async function crossTapMark(
  taps: ControlClient[],
  opts: { name: string; kind: MarkKind; timeoutMs?: number; attempts: number; log?: (msg: string) => void },
): Promise<CheckpointResult> {
  let timeoutMs = opts.timeoutMs ?? 0;
  if (!timeoutMs) {
    const hellos = await Promise.all(taps.map((t) => t.request({ op: 'hello' })));
    const hint = Math.max(0, ...hellos.map((h) => Number(h.holdHintMs) || 0));
    timeoutMs = hint > 0 ? Math.max(MIN_TIMEOUT, hint) : 1000;
  }
  for (let attempt = 1; attempt <= opts.attempts; attempt++) {
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const replies = await Promise.race([
      Promise.all(taps.map((t) => t.request({ op: 'quiesce', timeoutMs }))),
      new Promise<null>((r) => {
        timer = setTimeout(() => r(null), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    const confirmMs = performance.now() - t0;
    if (replies && replies.every((r) => r.ok)) {
      const id = newId();
      let marks: ControlReply[];
      try {
        marks = await Promise.all(
          taps.map((t) => t.request({ op: 'mark', name: opts.name, kind: opts.kind, id: idToString(id), release: true })),
        );
      } finally {
        await Promise.allSettled(taps.map((t) => t.request({ op: 'release' })));
      }
      // how long each tap held its writes: from its hold to its MARK (it releases right after appending it)
      const heldMs = Math.max(...marks.map((m) => Number(m.heldMs) || 0));
      const bad = marks.find((m) => !m.ok);
      if (bad) throw new DrError((bad.code as 'DR_IO') ?? 'DR_IO', `a tap could not record the mark: ${bad.error}`);
      const nextTimeoutMs = Math.round(Math.max(MIN_TIMEOUT, Math.min(timeoutMs, confirmMs * 4)));
      await Promise.allSettled(taps.map((t) => t.request({ op: 'hint', holdHintMs: nextTimeoutMs })));
      return {
        name: opts.name, kind: opts.kind, id: idToString(id), attempts: attempt, timeoutMs, nextTimeoutMs,
        heldMs, confirmMs, totalMs: performance.now() - t0,
        taps: marks.map((m, i) => ({ control: taps[i]!.path, seq: Number(m.seq), time: Number(m.time) })),
      };
    }
    // Not every tap confirmed: release all, record nothing, try again with more time.
    await Promise.allSettled(taps.map((t) => t.request({ op: 'release' })));
    const why = replies ? replies.filter((r) => !r.ok).map((r) => r.error).join('; ') : `no confirmation within ${timeoutMs}ms`;
    if (attempt < opts.attempts) {
      opts.log?.(`attempt ${attempt}: ${why}; released all, retrying with ${timeoutMs * 2}ms`);
      await new Promise((r) => setTimeout(r, timeoutMs)); // let the taps get on with their writes first
    }
    timeoutMs *= 2;
  }
  throw new DrError('DR_TIMEOUT', `not every tap confirmed its hold in ${opts.attempts} attempts (last timeout ${timeoutMs / 2}ms); nothing was recorded`);
}
