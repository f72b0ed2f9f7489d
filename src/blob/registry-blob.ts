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
import { byterangesBoundary, MultipartError, parseContentRange, parseMultipartByteranges } from '../registry/multipart.js';
import { checkRange, type BlobSource, type ByteRange, type OnData } from './source.js';

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

  async readRanges(ranges: readonly ByteRange[]): Promise<Buffer[]> {
    for (const r of ranges) checkRange(this, r.offset, r.length);
    const wanted = ranges.filter((r) => r.length > 0);
    if (wanted.length <= 1 || this.multiRange === 'no') return Promise.all(ranges.map((r) => this.read(r.offset, r.length)));
    const spans = mergeSpans(wanted);
    if (spans.length === 1) {
      const s = spans[0]!;
      const data = await this.read(s.start, s.end - s.start);
      return ranges.map((r) => (r.length === 0 ? Buffer.alloc(0) : data.subarray(r.offset - s.start, r.offset - s.start + r.length)));
    }
    const batches: Span[][] = [];
    for (let i = 0; i < spans.length; i += this.maxRangesPerRequest) batches.push(spans.slice(i, i + this.maxRangesPerRequest));
    const fetched = (await Promise.all(batches.map((b) => this.multi(b)))).flat();
    if (fetched.some((f) => f === undefined)) return Promise.all(ranges.map((r) => this.read(r.offset, r.length)));
    const parts = fetched as Array<{ span: Span; data: Buffer }>;
    return ranges.map((r) => {
      if (r.length === 0) return Buffer.alloc(0);
      const p = parts.find((x) => x.span.start <= r.offset && r.offset + r.length <= x.span.end)!;
      return p.data.subarray(r.offset - p.span.start, r.offset - p.span.start + r.length);
    });
  }

  /** One multi-range request; undefined entries when the registry turned out not to support it. */
  private async multi(spans: Span[]): Promise<Array<{ span: Span; data: Buffer } | undefined>> {
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
        const boundary = byterangesBoundary(header(res.headers, 'content-type'));
        if (boundary === undefined) {
          // The server merged everything into one range: it must cover every span.
          const cr = parseContentRange(header(res.headers, 'content-range'));
          if (!cr || cr.start > spans[0]!.start || cr.end + 1 < spans[spans.length - 1]!.end) {
            throw new RegistryError(this.ctx, `multi-range request answered with a single range ${header(res.headers, 'content-range')} that does not cover ${range}`);
          }
          const data = await this.body(res, cr.end - cr.start + 1);
          return spans.map((span) => ({ span, data: data.subarray(span.start - cr.start, span.end - cr.start) }));
        }
        // Framing is small: a few headers per part.
        const body = await this.body(res, total + 512 * spans.length + 4096, true);
        let parts;
        try {
          parts = parseMultipartByteranges(body, boundary);
        } catch (err) {
          if (err instanceof MultipartError) throw new TransientError(err.message);
          throw err;
        }
        this.multiRange = 'yes';
        return spans.map((span) => {
          const p = parts.find((x) => x.start <= span.start && span.end - 1 <= x.end && (x.total === undefined || x.total === this.size));
          if (!p) throw new RegistryError(this.ctx, `multi-range answer lacks bytes ${span.start}-${span.end - 1}`);
          return { span, data: p.data.subarray(span.start - p.start, span.end - p.start) };
        });
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
