/** Progress bars on stderr, only when stderr is a terminal and not --quiet or --json. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(value: number, payload?: Record<string, unknown>): void;
  setTotal(total: number): void;
  stop(): void;
}

const silent: Progress = { update() {}, setTotal() {}, stop() {} };

/** `payload` gives the first values of the format's {tokens}, so the first frame shows no placeholders. */
export function createProgress(opts: { total: number; format: string; enabled: boolean; payload?: Record<string, unknown> }): Progress {
  if (!opts.enabled || !process.stderr.isTTY) return silent;
  const bar = new cliProgress.SingleBar(
    { format: opts.format, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50, fps: 5 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(opts.total, 0, opts.payload ?? {});
  return {
    update: (v, payload) => bar.update(v, payload),
    setTotal: (t) => bar.setTotal(t),
    stop: () => bar.stop(),
  };
}
