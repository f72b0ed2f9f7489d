// A blob in a registry as a BlobSource: random access by HTTP Range (formats.md §1c.4).
//
// - Size: HEAD, or when HEAD fails (some blob stores refuse it) a `bytes=0-0` GET's Content-Range.
// - `read`: one `Range: bytes=a-b` GET; the answer must be 206 with exactly that Content-Range.
//   A 200 (the server ignored Range) is accepted only when the whole body can be checked against
//   the blob digest: the read asks for the whole blob, or the blob is at most `smallBlobBytes`
//   (then the body is verified and sliced). For a larger blob a 200 is an error, never a silent
//   full download.
// - `readRanges`: the ranges are merged and sent as one multi-range request (multipart/byteranges).
//   A 200, 400 or 501 answer switches this blob to single ranges for good, fetched in parallel.
// - Redirects: the first GET follows them; a redirect to another host (object storage, CDN) is
//   remembered and later reads go there directly, without Authorization. A 401/403 from that host
//   (an expired presigned URL) re-resolves the redirect through the registry once.
// - Integrity: bytes of a range cannot be checked here (only a whole-blob answer is hashed against
//   the digest); readers verify what they read (TOC digest, chunk digests) and answer EIO.
// - `stats.requests` counts HTTP requests (every attempt and redirect hop), `stats.bytes` the
//   response body bytes received (multipart framing included); a mount reports both.
import type { Readable } from 'node:stream';
import { sha256, type Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import { discard, type RegistryClient, type RegistryRequest, type RegistryResponse } from '../registry/client.js';
import { header } from '../registry/headers.js';
import { RegistryError, TransientError, type RegistryContext } from '../registry/errors.js';
import { byterangesBoundary, ByterangesScanner, MultipartError, parseContentRange, type BytePart } from '../registry/multipart.js';
import { checkRange, type BlobSource, type ByteRange, type OnData, type OnRange } from './source.js';

export interface RegistryBlobOptions {
  /** Blobs up to this size may answer a Range request with 200: the body is verified, then sliced (default 1 MiB). */
  smallBlobBytes?: number;
  /** Ranges per multi-range request (default 64); more are split over several requests. */
  maxRangesPerRequest?: number;
  /**
   * Take the blob's size from its descriptor instead of asking the registry (a HEAD: one round
   * trip per layer before a mount can start). Safe for range reads: every 206 answer's
   * Content-Range total is checked against the size, so a wrong descriptor fails the first read.
   */
  sizeFromDescriptor?: boolean;
}

export interface RegistryBlobStats {
  /** HTTP requests made, every attempt and redirect hop included. */
  requests: number;
  /** Response body bytes received. */
  bytes: number;
}

interface Span {
  start: number;
  /** Exclusive. */
  end: number;
}

export class RegistryBlob implements BlobSource {
  readonly description: string;
  readonly stats: RegistryBlobStats = { requests: 0, bytes: 0 };
  /** Where reads go after a redirect to another host; cleared when that host refuses. */
  private location?: URL;
  private multiRange: 'unknown' | 'yes' | 'no' = 'unknown';
  private readonly smallBlobBytes: number;
  private readonly maxRangesPerRequest: number;

  private constructor(
    private readonly client: RegistryClient,
    readonly repository: string,
    readonly digest: Digest,
    readonly size: number,
    opts: RegistryBlobOptions,
  ) {
    this.description = `${client.domain}/${repository}@${digest}`;
    this.smallBlobBytes = opts.smallBlobBytes ?? 1 << 20;
    this.maxRangesPerRequest = opts.maxRangesPerRequest ?? 64;
  }

  /**
   * Opens `desc.digest` in `repository`: learns its size (HEAD, else a one-byte GET) and checks it
   * against `desc.size`. Rejects with RegistryNotFoundError when the registry does not have it.
   */
  static async open(client: RegistryClient, repository: string, desc: Pick<Descriptor, 'digest' | 'size'>, opts: RegistryBlobOptions = {}): Promise<RegistryBlob> {
    if (opts.sizeFromDescriptor && Number.isSafeInteger(desc.size) && desc.size >= 0) return new RegistryBlob(client, repository, desc.digest, desc.size, opts);
    const counter = { requests: 0 };
    const ctx = client.context(repository, `blob ${desc.digest}`);
    let size: number | undefined;
    try {
      const res = await client.fetch({ method: 'HEAD', repository, path: `blobs/${desc.digest}`, object: `blob ${desc.digest}`, counter });
      await res.body.dump();
      const len = Number(header(res.headers, 'content-length'));
      if (Number.isSafeInteger(len) && len >= 0) size = len;
    } catch (err) {
      if (!(err instanceof RegistryError) || err.status === 404 || err.status === undefined) throw err;
    }
    if (size === undefined) {
      const res = await client.fetch({ method: 'GET', repository, path: `blobs/${desc.digest}`, object: `blob ${desc.digest}`, headers: { range: 'bytes=0-0', 'accept-encoding': 'identity' }, expect: [206, 200], counter });
      const cr = parseContentRange(header(res.headers, 'content-range'));
      const len = Number(header(res.headers, 'content-length'));
      await res.body.dump().catch(() => undefined);
      size = res.status === 206 ? cr?.total : Number.isSafeInteger(len) ? len : undefined;
      if (size === undefined) throw new RegistryError(ctx, 'cannot learn the blob size: HEAD failed and the ranged GET gave no total length');
    }
    if (Number.isSafeInteger(desc.size) && desc.size >= 0 && size !== desc.size) {
      throw new RegistryError(ctx, `blob size ${size} does not match the descriptor's size ${desc.size}`);
    }
    const blob = new RegistryBlob(client, repository, desc.digest, size, opts);
    blob.stats.requests += counter.requests;
    return blob;
  }

  private get ctx(): RegistryContext {
    return this.client.context(this.repository, `blob ${this.digest}`);
  }

  async read(offset: number, length: number, onData?: OnData): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    return this.get(`bytes=${offset}-${offset + length - 1}`, (res) => this.singleRange(res, offset, length, onData));
  }

  async readRanges(ranges: readonly ByteRange[], onRange?: OnRange): Promise<Buffer[]> {
    for (const r of ranges) checkRange(this, r.offset, r.length);
    // `onRange` hears of each range once, also when a registry refusing multi-range sends it down the single-range path.
    const told = new Set<number>();
    const tell = (i: number, data: Buffer) => {
      if (!onRange || told.has(i)) return;
      told.add(i);
      onRange(i, data);
    };
    const single = (r: ByteRange, i: number) => this.read(r.offset, r.length).then((b) => (tell(i, b), b));
    const wanted = ranges.filter((r) => r.length > 0);
    if (wanted.length <= 1 || this.multiRange === 'no') return Promise.all(ranges.map(single));
    ranges.forEach((r, i) => r.length === 0 && tell(i, Buffer.alloc(0)));
    const spans = mergeSpans(wanted);
    // Each range lies in one span: it is told of once its span is in.
    const spanOf = ranges.map((r) => spans.findIndex((s) => s.start <= r.offset && r.offset + r.length <= s.end));
    const sliceOf = (r: ByteRange, span: Span, data: Buffer) => (r.length === 0 ? Buffer.alloc(0) : data.subarray(r.offset - span.start, r.offset - span.start + r.length));
    const spanArrived = (at: number, data: Buffer) => ranges.forEach((r, i) => spanOf[i] === at && tell(i, sliceOf(r, spans[at]!, data)));
    if (spans.length === 1) {
      const s = spans[0]!;
      const data = await this.read(s.start, s.end - s.start);
      spanArrived(0, data);
      return ranges.map((r) => sliceOf(r, s, data));
    }
    const batches: Array<Promise<Array<Buffer | undefined>>> = [];
    for (let i = 0; i < spans.length; i += this.maxRangesPerRequest) {
      const first = i;
      batches.push(this.multi(spans.slice(i, i + this.maxRangesPerRequest), (at, data) => spanArrived(first + at, data)));
    }
    const fetched = (await Promise.all(batches)).flat();
    if (fetched.some((f) => f === undefined)) return Promise.all(ranges.map(single));
    return ranges.map((r, i) => sliceOf(r, spans[spanOf[i]!]!, fetched[spanOf[i]!]!));
  }

  /**
   * One multi-range request, telling `onSpan` of each span as soon as its bytes are in; undefined
   * entries when the registry turned out not to support it.
   */
  private async multi(spans: Span[], onSpan: (at: number, data: Buffer) => void): Promise<Array<Buffer | undefined>> {
    const range = `bytes=${spans.map((s) => `${s.start}-${s.end - 1}`).join(',')}`;
    const total = spans.reduce((n, s) => n + s.end - s.start, 0);
    const result = await this.get(
      range,
      async (res) => {
        if (res.status === 400 || res.status === 501 || res.status === 200) {
          discard(res.body);
          this.multiRange = 'no';
          return undefined;
        }
        const got: Array<Buffer | undefined> = spans.map(() => undefined);
        const boundary = byterangesBoundary(header(res.headers, 'content-type'));
        if (boundary === undefined) {
          // The server merged everything into one range: it must cover every span.
          const cr = parseContentRange(header(res.headers, 'content-range'));
          if (!cr || cr.start > spans[0]!.start || cr.end + 1 < spans[spans.length - 1]!.end) {
            throw new RegistryError(this.ctx, `multi-range request answered with a single range ${header(res.headers, 'content-range')} that does not cover ${range}`);
          }
          await this.body(res, cr.end - cr.start + 1, false, (data, filled) => {
            spans.forEach((span, at) => {
              if (got[at] === undefined && span.end - cr.start <= filled) onSpan(at, (got[at] = data.subarray(span.start - cr.start, span.end - cr.start)));
            });
          });
          return got;
        }
        const scanner = new ByterangesScanner(boundary);
        const partsIn = (parts: BytePart[]) => {
          for (const p of parts) {
            if (p.total !== undefined && p.total !== this.size) continue;
            spans.forEach((span, at) => {
              if (got[at] === undefined && p.start <= span.start && span.end - 1 <= p.end) onSpan(at, (got[at] = p.data.subarray(span.start - p.start, span.end - p.start)));
            });
          }
        };
        try {
          // Framing is small: a few headers per part.
          const body = await this.body(res, total + 512 * spans.length + 4096, true, (data, filled) => partsIn(scanner.scan(data, filled)));
          partsIn(scanner.scan(body, body.length));
          scanner.end();
        } catch (err) {
          if (err instanceof MultipartError) throw new TransientError(err.message);
          throw err;
        }
        this.multiRange = 'yes';
        const lacking = spans.findIndex((_, at) => got[at] === undefined);
        if (lacking >= 0) throw new RegistryError(this.ctx, `multi-range answer lacks bytes ${spans[lacking]!.start}-${spans[lacking]!.end - 1}`);
        return got;
      },
      [206, 200, 400, 501],
    );
    return result ?? spans.map(() => undefined);
  }

  /** A ranged GET, through the remembered redirect target when there is one. */
  private async get<T>(range: string, consume: (res: RegistryResponse) => Promise<T>, expect = [206, 200]): Promise<T> {
    const base: RegistryRequest = {
      method: 'GET',
      repository: this.repository,
      object: `blob ${this.digest}`,
      headers: { range, 'accept-encoding': 'identity' },
      expect,
      counter: this.stats,
    };
    const location = this.location;
    if (location) {
      try {
        return await this.client.fetch({ ...base, url: location.href }, consume);
      } catch (err) {
        // A presigned URL that expired: resolve the redirect again, once.
        if (!(err instanceof RegistryError) || (err.status !== 403 && err.status !== 401)) throw err;
        if (this.location === location) this.location = undefined;
      }
    }
    return this.client.fetch({ ...base, path: `blobs/${this.digest}` }, async (res) => {
      if (res.url.origin !== this.client.baseUrl.origin) this.location = res.url;
      return consume(res);
    });
  }

  private async singleRange(res: RegistryResponse, offset: number, length: number, onData?: OnData): Promise<Buffer> {
    const encoding = header(res.headers, 'content-encoding');
    if (encoding && encoding !== 'identity') throw new RegistryError(this.ctx, `answered a Range request with Content-Encoding ${encoding}`);
    if (res.status === 206) {
      const cr = parseContentRange(header(res.headers, 'content-range'));
      if (!cr || cr.start !== offset || cr.end !== offset + length - 1 || (cr.total !== undefined && cr.total !== this.size)) {
        discard(res.body);
        throw new RegistryError(this.ctx, `asked for bytes ${offset}-${offset + length - 1}/${this.size}, got Content-Range ${JSON.stringify(header(res.headers, 'content-range') ?? '')}`);
      }
      return this.body(res, length, false, onData);
    }
    // 200: the Range header was ignored and the whole blob is coming.
    if (length !== this.size && this.size > this.smallBlobBytes) {
      discard(res.body);
      throw new RegistryError(this.ctx, `answered a Range request for ${length} bytes at ${offset} with 200 and the whole ${this.size}-byte blob (range requests unsupported?); refusing to download it all`, 200);
    }
    const whole = await this.body(res, this.size);
    const actual = sha256(whole);
    if (actual !== this.digest) throw new RegistryError(this.ctx, `blob body hashes to ${actual}`);
    return whole.subarray(offset, offset + length);
  }

  /** Reads a body of exactly `length` bytes (at most `length` when `upTo`), telling `onData` as it fills. */
  private async body(res: RegistryResponse, length: number, upTo = false, onData?: OnData): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let n = 0;
    for await (const chunk of res.body as Readable as AsyncIterable<Buffer>) {
      this.stats.bytes += chunk.length;
      if (n + chunk.length > length) {
        discard(res.body);
        throw new RegistryError(this.ctx, `response body longer than the ${length} bytes asked for`);
      }
      chunk.copy(buf, n);
      n += chunk.length;
      onData?.(buf, n);
    }
    if (upTo) return buf.subarray(0, n);
    if (n !== length) throw new TransientError(`short response body: ${n} of ${length} bytes`);
    return buf;
  }

  async close(): Promise<void> {}
}

/** Sorted, with overlapping and touching ranges merged. */
function mergeSpans(ranges: readonly ByteRange[]): Span[] {
  const sorted = ranges.map((r) => ({ start: r.offset, end: r.offset + r.length })).sort((a, b) => a.start - b.start);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}
