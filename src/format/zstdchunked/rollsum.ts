// Content-defined chunking of a file's payload exactly as containers/storage's compressor cuts it
// (formats.md §1b.3): the bup/perkeep rolling checksum over a 64-byte window, a cut after a byte
// when the low 16 bits of s2 are all ones, and every run of ≥ 1024 zero bytes a chunk of its own
// ("zeros"), whose bytes are rolled into the checksum without checking for a cut. The checksum
// starts afresh for every file and is not reset at cuts.

const WINDOW = 64;
const CHAR_OFFSET = 31;
const SPLIT_MASK = (1 << 16) - 1;
/** containers/storage `holesThreshold`. */
export const HOLE_THRESHOLD = 1024;

const ZEROS = new Uint8Array(HOLE_THRESHOLD);

/** Receives a file's payload in stream order, split into chunks. */
export interface ChunkSink {
  /** Bytes of a data chunk (one chunk may arrive in several calls). */
  data(bytes: Uint8Array): void;
  /** `count` zero bytes of a zeros chunk (a hole; may arrive in several calls). */
  zeros(count: number): void;
  /** The current chunk ends here (may come with nothing pending: ignore an empty chunk). */
  cut(): void;
}

export class ContentChunker {
  private s1 = WINDOW * CHAR_OFFSET;
  private s2 = WINDOW * (WINDOW - 1) * CHAR_OFFSET;
  private readonly window = new Uint8Array(WINDOW);
  private wofs = 0;
  /** Zero bytes seen but not yet classified (a short run is data, a long one a hole). */
  private pendingZeros = 0;
  private inHole = false;

  constructor(private readonly sink: ChunkSink) {}

  /** Feeds the next payload bytes. Bytes of an unfinished zero run are held back (as a count). */
  push(buf: Uint8Array): void {
    const n = buf.length;
    let dataStart = 0; // start of bytes in buf classified as data but not yet handed to the sink
    let i = 0;
    while (i < n) {
      if (buf[i] === 0) {
        // Zero run: flush data before it, then count the run (it may continue into the next buffer).
        if (i > dataStart) this.sink.data(buf.subarray(dataStart, i));
        let j = i;
        while (j < n && buf[j] === 0) j++;
        this.addZeros(j - i);
        i = j;
        dataStart = i;
        continue;
      }
      if (this.pendingZeros > 0 || this.inHole) {
        this.endZeroRun();
      }
      // Roll data bytes until a cut or a zero byte.
      let s1 = this.s1;
      let s2 = this.s2;
      let wofs = this.wofs;
      const window = this.window;
      for (; i < n; i++) {
        const b = buf[i]!;
        if (b === 0) break;
        const drop = window[wofs]!;
        window[wofs] = b;
        wofs = (wofs + 1) & (WINDOW - 1);
        s1 = (s1 + b - drop) | 0;
        s2 = (s2 + s1 - ((drop + CHAR_OFFSET) << 6)) | 0;
        if ((s2 & SPLIT_MASK) === SPLIT_MASK) {
          i++;
          this.s1 = s1;
          this.s2 = s2;
          this.wofs = wofs;
          this.sink.data(buf.subarray(dataStart, i));
          this.sink.cut();
          dataStart = i;
          break;
        }
      }
      this.s1 = s1;
      this.s2 = s2;
      this.wofs = wofs;
    }
    if (i > dataStart) this.sink.data(buf.subarray(dataStart, i));
  }

  /** Ends the payload: classifies a pending zero run and cuts the last chunk. */
  finish(): void {
    if (this.pendingZeros > 0 || this.inHole) this.endZeroRun();
    this.sink.cut();
  }

  private addZeros(count: number): void {
    if (this.inHole) {
      this.pendingZeros += count;
      return;
    }
    this.pendingZeros += count;
    if (this.pendingZeros >= HOLE_THRESHOLD) {
      // A hole: the data chunk before it ends here.
      this.inHole = true;
      this.sink.cut();
    }
  }

  /** A zero run ended (by a non-zero byte or the end of the payload). */
  private endZeroRun(): void {
    const count = this.pendingZeros;
    this.pendingZeros = 0;
    if (this.inHole) {
      this.inHole = false;
      this.rollZeros(count);
      this.sink.zeros(count);
      this.sink.cut();
      return;
    }
    // A short run is ordinary data: roll each zero and check for a cut after it.
    let from = 0;
    for (let k = 0; k < count; k++) {
      if (this.rollZeroChecked()) {
        this.sink.data(ZEROS.subarray(0, k + 1 - from));
        this.sink.cut();
        from = k + 1;
      }
    }
    if (count > from) this.sink.data(ZEROS.subarray(0, count - from));
  }

  private rollZeroChecked(): boolean {
    const drop = this.window[this.wofs]!;
    this.window[this.wofs] = 0;
    this.wofs = (this.wofs + 1) & (WINDOW - 1);
    this.s1 = (this.s1 - drop) | 0;
    this.s2 = (this.s2 + this.s1 - ((drop + CHAR_OFFSET) << 6)) | 0;
    return (this.s2 & SPLIT_MASK) === SPLIT_MASK;
  }

  /** Rolls `count` zeros without cut checks; once the window is all zeros each step adds a constant. */
  private rollZeros(count: number): void {
    const first = Math.min(count, WINDOW);
    for (let k = 0; k < first; k++) this.rollZeroChecked();
    // With the window all zeros, s1 stays put and s2 grows by s1 - 64*31 per byte (mod 2^32).
    const step = (this.s1 - (CHAR_OFFSET << 6)) | 0;
    for (let rest = count - first; rest > 0; ) {
      const n = Math.min(rest, 1 << 30);
      this.s2 = (this.s2 + Math.imul(step, n)) | 0;
      this.wofs = (this.wofs + n) & (WINDOW - 1);
      rest -= n;
    }
  }
}
