// `Content-Range` and `multipart/byteranges` (RFC 9110 §14.4, §14.6), as answers to Range requests.
// Parts are cut by the lengths their own Content-Range headers give, never by searching the
// payload for the boundary (the payload is binary and may contain it).

export interface ContentRange {
  start: number;
  /** Inclusive. */
  end: number;
  /** Undefined when the server sent `*`. */
  total?: number;
}

export interface BytePart extends ContentRange {
  data: Buffer;
}

export class MultipartError extends Error {}

export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const m = value ? /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value) : null;
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) return undefined;
  return m[3] === '*' ? { start, end } : { start, end, total: Number(m[3]) };
}

/** The boundary of a `multipart/byteranges; boundary=…` content type, or undefined for any other type. */
export function byterangesBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/byteranges\s*;/i.test(contentType)) return undefined;
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * Reads a `multipart/byteranges` body as it arrives: each `scan` finds the parts completed by the
 * bytes in so far, so a caller can use the first parts of a large answer before its end.
 */
export class ByterangesScanner {
  private readonly delimiter: Buffer;
  /** Where the next delimiter is looked for: the body's start, then the end of the last part's data. */
  private from = 0;
  /** Whether a part has been read (after one, only whitespace may come before the next delimiter). */
  private afterPart = false;
  private closed = false;
  /** What an ending body would lack, were it to end now. */
  private lacking = 'multipart/byteranges body without its boundary';

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`);
  }

  /** The parts [0, filled) of `body` completes beyond those returned before; throws on a malformed body. */
  scan(body: Buffer, filled: number): BytePart[] {
    const parts: BytePart[] = [];
    const have = body.subarray(0, filled);
    while (!this.closed) {
      const at = have.indexOf(this.delimiter, this.from);
      if (at < 0) return parts;
      if (this.afterPart && have.subarray(this.from, at).toString('latin1').trim() !== '') {
        throw new MultipartError(`multipart/byteranges part ending at ${this.from} is longer than its Content-Range`);
      }
      const pos = at + this.delimiter.length;
      if (pos + 2 > filled) return parts;
      if (have[pos] === 0x2d && have[pos + 1] === 0x2d) {
        this.closed = true; // closing `--boundary--`
        return parts;
      }
      this.lacking = 'multipart/byteranges part without the end of its headers';
      const headersEnd = have.indexOf(CRLF2, pos);
      if (headersEnd < 0) return parts;
      const headers = have.subarray(pos, headersEnd).toString('latin1').split('\r\n');
      const cr = headers.find((h) => /^content-range\s*:/i.test(h));
      const range = parseContentRange(cr?.slice(cr.indexOf(':') + 1));
      if (!range) throw new MultipartError(`multipart/byteranges part without a valid Content-Range (${JSON.stringify(cr ?? '')})`);
      const dataStart = headersEnd + CRLF2.length;
      const dataEnd = dataStart + (range.end - range.start + 1);
      this.lacking = `multipart/byteranges part ${range.start}-${range.end} is truncated`;
      if (dataEnd > filled) return parts;
      parts.push({ ...range, data: body.subarray(dataStart, dataEnd) });
      this.from = dataEnd;
      this.afterPart = true;
      this.lacking = 'multipart/byteranges body ends without its closing boundary';
    }
    return parts;
  }

  /** Throws unless the body has ended with its closing boundary. */
  end(): void {
    if (!this.closed) throw new MultipartError(this.lacking);
  }
}

export function parseMultipartByteranges(body: Buffer, boundary: string): BytePart[] {
  const scanner = new ByterangesScanner(boundary);
  const parts = scanner.scan(body, body.length);
  scanner.end();
  return parts;
}
