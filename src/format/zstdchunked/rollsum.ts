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

const ZEROS = Buffer.alloc(HOLE_THRESHOLD);

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

  /**
   * Feeds the next payload bytes. A zero run that reaches the end of `buf` is held back (as a count)
   * until its end tells whether it is data or a hole. Data goes to the sink as subarrays of `buf`,
   * one per chunk piece, so the sink sees few calls. Holes are found with a native search for 1024
   * zeros; everything between them is rolled in a tight loop.
   */
  push(input: Uint8Array): void {
    const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.length);
    const n = buf.length;
    let i = 0;
    if (this.pendingZeros > 0 || this.inHole) {
      // A zero run carried over from the previous buffer: see whether it ends here.
      while (i < n && buf[i] === 0) i++;
      if (i === n) {
        this.addZeros(n);
        return;
      }
      const total = this.pendingZeros + i;
      if (this.inHole) {
        // The hole's earlier zeros went out already; these end it.
        this.inHole = false;
        this.hole(i);
      } else if (total >= HOLE_THRESHOLD) {
        this.sink.cut();
        this.pendingZeros = 0;
        this.hole(total);
      } else {
        // A short run: the carried zeros are data, and so is the rest of the run, buf[0, i).
        this.rollCarriedZeros();
        i = 0;
      }
    }
    // Zeros at the end of buf may continue in the next buffer: hold them back.
    let end = n;
    while (end > i && buf[end - 1] === 0) end--;
    let dataStart = i;
    while (i < end) {
      const found = buf.indexOf(ZEROS, i);
      const holeStart = found === -1 || found >= end ? end : found;
      dataStart = this.roll(buf, i, holeStart, dataStart);
      if (holeStart === end) break;
      let holeEnd = holeStart + HOLE_THRESHOLD;
      while (buf[holeEnd] === 0) holeEnd++; // stops before `end`: buf[end - 1] is not zero
      if (holeStart > dataStart) this.sink.data(buf.subarray(dataStart, holeStart));
      this.sink.cut();
      this.hole(holeEnd - holeStart);
      i = dataStart = holeEnd;
    }
    if (end > dataStart) this.sink.data(buf.subarray(dataStart, end));
    if (end < n) this.addZeros(n - end);
  }

  /**
   * Rolls buf[from, to) as data, cutting after every byte where the checksum says so; returns where
   * the data not yet handed to the sink starts. Past the first 64 bytes the byte leaving the window
   * is read from buf itself; the ring keeps the last 64 bytes for the next call.
   */
  private roll(buf: Buffer, from: number, to: number, dataStart: number): number {
    let s1 = this.s1;
    let s2 = this.s2;
    const window = this.window;
    const w0 = this.wofs;
    let w = w0;
    let i = from;
    const head = Math.min(to, from + WINDOW);
    for (; i < head; i++) {
      const b = buf[i]!;
      const drop = window[w]!;
      window[w] = b;
      w = (w + 1) & (WINDOW - 1);
      s1 = (s1 + b - drop) | 0;
      s2 = (s2 + s1 - ((drop + CHAR_OFFSET) << 6)) | 0;
      if ((s2 & SPLIT_MASK) === SPLIT_MASK) {
        this.sink.data(buf.subarray(dataStart, i + 1));
        this.sink.cut();
        dataStart = i + 1;
      }
    }
    for (; i < to; i++) {
      const b = buf[i]!;
      const drop = buf[i - WINDOW]!;
      s1 = (s1 + b - drop) | 0;
      s2 = (s2 + s1 - ((drop + CHAR_OFFSET) << 6)) | 0;
      if ((s2 & SPLIT_MASK) === SPLIT_MASK) {
        this.sink.data(buf.subarray(dataStart, i + 1));
        this.sink.cut();
        dataStart = i + 1;
      }
    }
    // Byte at position p sits in ring slot (w0 + p - from) mod 64.
    for (let p = Math.max(head, to - WINDOW); p < to; p++) window[(w0 + p - from) & (WINDOW - 1)] = buf[p]!;
    this.s1 = s1;
    this.s2 = s2;
    this.wofs = (w0 + (to - from)) & (WINDOW - 1);
    return dataStart;
  }

  /** Ends the payload: classifies a pending zero run and cuts the last chunk. */
  finish(): void {
    if (this.inHole) {
      this.inHole = false; // its zeros went out as they came
    } else if (this.pendingZeros > 0) {
      this.rollCarriedZeros();
    }
    this.sink.cut();
  }

  /**
   * Zeros at the end of a buffer. Inside a hole they go out at once (so a huge hole never piles up
   * in the sink); otherwise they wait until the run is long enough to be a hole, or turns out short.
   */
  private addZeros(count: number): void {
    if (this.inHole) {
      this.holeZeros(count);
      return;
    }
    this.pendingZeros += count;
    if (this.pendingZeros >= HOLE_THRESHOLD) {
      // A hole: the data chunk before it ends here.
      this.sink.cut();
      this.inHole = true;
      const held = this.pendingZeros;
      this.pendingZeros = 0;
      this.holeZeros(held);
    }
  }

  /** Zeros of a hole: rolled into the checksum (no cut checks) and handed out. */
  private holeZeros(count: number): void {
    this.rollZeros(count);
    this.sink.zeros(count);
  }

  /** The rest of a hole (or a whole one), then the cut that ends it. */
  private hole(count: number): void {
    this.holeZeros(count);
    this.sink.cut();
  }

  /** Held-back zeros that turned out to be a short run: data, each rolled with a cut check. */
  private rollCarriedZeros(): void {
    const count = this.pendingZeros;
    this.pendingZeros = 0;
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
