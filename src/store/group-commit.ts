/**
 * Group commit for a writer that keeps appending while its syncs run: one sync at a time;
 * a request while one runs makes exactly one more run after it, which covers everything
 * appended by then. No request is ever dropped: the last records appended always get a
 * sync that started after they were appended. After a failure nothing more is synced.
 * (dr-journal append syncs at every FLUSH/MARK; dr-ship receive every 32 MiB, 250 ms
 * and when its input goes quiet.)
 */
export class GroupCommit {
  private running: Promise<void> | null = null;
  private again = false;
  private failed = false;

  /** `sync` makes everything appended so far durable; `done` runs after each success, `failed` once. */
  constructor(
    private readonly sync: () => Promise<void>,
    private readonly hooks: { done?: () => void; failed: (err: unknown) => void },
  ) {}

  /** A sync now, or right after the running one. */
  request(): void {
    if (this.failed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.sync().then(
      () => {
        this.running = null;
        this.hooks.done?.();
        if (this.again) {
          this.again = false;
          this.request();
        }
      },
      (err: unknown) => {
        this.running = null;
        this.failed = true;
        this.hooks.failed(err);
      },
    );
  }

  /** Resolves once no sync runs or is due (a failure is reported through hooks.failed). */
  async settle(): Promise<void> {
    while (this.running) await this.running;
  }
}
