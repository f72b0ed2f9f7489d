// A one-line progress bar on stderr, drawn only when stderr is a TTY (DESIGN.md: progress on a TTY,
// quiet or JSON when piped). Redraws at most 10 times a second.
export class ProgressBar {
  private done = 0;
  private total = 0;
  private note = '';
  private lastDraw = 0;
  private drawn = false;
  private readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.enabled = stream.isTTY === true;
  }

  setTotal(total: number): void {
    this.total = total;
    this.draw(true);
  }

  add(n: number): void {
    this.done += n;
    this.draw(false);
  }

  setNote(note: string): void {
    this.note = note;
    this.draw(true);
  }

  /** Removes the bar so the next output starts on a clean line. */
  clear(): void {
    if (this.enabled && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  private draw(force: boolean): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = 30;
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const filled = Math.round(frac * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    const line = `${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(this.done)}/${formatBytes(this.total)} ${this.note}`;
    const cols = this.stream.columns ?? 80;
    this.stream.write(`\r\x1b[K${line.slice(0, cols - 1)}`);
    this.drawn = true;
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
