// What a prefetch has sent and not yet seen settle: `idle()` waits for it (tests).
export class InFlight {
  private readonly running = new Set<Promise<void>>();

  /** Adds `work`. Its failure is dropped: a failed fetch is the reader's to see, when (and if) it reads those bytes. */
  track(work: Promise<unknown>): void {
    const p: Promise<void> = work.then(
      () => {},
      () => {},
    ).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Resolves once nothing tracked is running, work tracked while waiting included. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
  }
}
