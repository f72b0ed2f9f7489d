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

export function parseMultipartByteranges(body: Buffer, boundary: string): BytePart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: BytePart[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) throw new MultipartError('multipart/byteranges body without its boundary');
  for (;;) {
    pos += delimiter.length;
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return parts; // closing `--boundary--`
    const headersEnd = body.indexOf(CRLF2, pos);
    if (headersEnd < 0) throw new MultipartError('multipart/byteranges part without the end of its headers');
    const headers = body.subarray(pos, headersEnd).toString('latin1').split('\r\n');
    const cr = headers.find((h) => /^content-range\s*:/i.test(h));
    const range = parseContentRange(cr?.slice(cr.indexOf(':') + 1));
    if (!range) throw new MultipartError(`multipart/byteranges part without a valid Content-Range (${JSON.stringify(cr ?? '')})`);
    const dataStart = headersEnd + CRLF2.length;
    const dataEnd = dataStart + (range.end - range.start + 1);
    if (dataEnd > body.length) throw new MultipartError(`multipart/byteranges part ${range.start}-${range.end} is truncated`);
    parts.push({ ...range, data: body.subarray(dataStart, dataEnd) });
    pos = body.indexOf(delimiter, dataEnd);
    if (pos < 0) throw new MultipartError('multipart/byteranges body ends without its closing boundary');
    if (body.subarray(dataEnd, pos).toString('latin1').trim() !== '') throw new MultipartError(`multipart/byteranges part ${range.start}-${range.end} is longer than its Content-Range`);
  }
}
