// The distribution-spec HTTP client for one registry host, on undici: every request goes through
// `fetch`, which adds auth (re-authenticating once on 401, and on 403 from the registry host),
// follows redirects without carrying Authorization to another host, retries network errors, 429
// and 5xx (not 501) with backoff, and turns every failure into an error naming registry,
// repository and digest. Manifest and upload helpers sit on top of it.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Agent, request } from './http.js';
import { Preconnector } from './preconnect.js';
import { sha256, type Digest } from '../oci/digest.js';
import { INDEX_TYPES, MANIFEST_TYPES } from '../oci/mediatypes.js';
import { Authenticator } from './auth.js';
import { dockerConfigCredentials, type CredentialStore } from './credentials.js';
import { RegistryAuthError, RegistryError, RegistryNotFoundError, TransientError, type RegistryContext } from './errors.js';
import { header } from './headers.js';
import { defaultsToPlainHttp } from './reference.js';
import { backoffMs, DEFAULT_RETRY, isNetworkError, isRetryableStatus, retryAfterMs, sleep, type RetryPolicy } from './retry.js';

export interface RegistryClientOptions {
  /** http:// instead of https:// (default: true for localhost and 127.0.0.0/8, as Docker does). */
  plainHttp?: boolean;
  /** Accept TLS certificates that do not verify. */
  insecure?: boolean;
  /** Where credentials come from (default: docker's config.json lookup). */
  credentials?: CredentialStore;
  retry?: Partial<RetryPolicy>;
  /** Time allowed for response headers, and for each gap between body chunks (default 30 s). */
  timeoutMs?: number;
  /** Concurrent connections per origin (default 8). Ignored when `dispatcher` is given. */
  connectionsPerHost?: number;
  /** Share one undici dispatcher between clients; the client then does not close it. */
  dispatcher?: Dispatcher;
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RegistryRequest {
  method: HttpMethod;
  repository: string;
  /** Path below `/v2/<repository>/`, e.g. `manifests/latest`; or `url` for an absolute URL (upload Location, a cached redirect). */
  path?: string;
  url?: string;
  /** The digest or tag the request is about, for messages. */
  object?: string;
  headers?: Record<string, string>;
  /** Called once per attempt, so a retried request sends its body again. */
  body?: () => string | Buffer | Readable;
  /** Ask for push rights too. */
  push?: boolean;
  /** More token scopes, e.g. pull on the source repository of a cross-repository mount. */
  extraScopes?: string[];
  /** Statuses the caller handles itself (default: 200). Anything else becomes an error. */
  expect?: number[];
  /** Follow redirects (GET and HEAD only; default true). */
  followRedirects?: boolean;
  /** Also counts this request's HTTP requests (every attempt and redirect hop), e.g. a blob's stats. */
  counter?: { requests: number };
}

export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered, after redirects. */
  url: URL;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
  /** The response's ETag, for an If-Match on the PUT that replaces it (referrers tag schema). */
  etag?: string;
}

/** Every manifest and index type, for `Accept`. */
export const MANIFEST_ACCEPT = [...MANIFEST_TYPES, ...INDEX_TYPES].join(', ');
// containerd's limit on manifest size (formats.md §1c.2).
const MAX_MANIFEST_BYTES = 4 * 1048 * 1048;
const MAX_REDIRECTS = 5;
const REDIRECTS = [301, 302, 303, 307, 308];

export class RegistryClient {
  readonly baseUrl: URL;
  readonly retry: RetryPolicy;
  readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  /** The connector of the dispatcher this client made (none when the caller gave one). */
  private readonly preconnector?: Preconnector;
  private readonly auth: Authenticator;
  private readonly timeoutMs: number;
  /** HTTP requests sent (every attempt and redirect hop) and attempts repeated after a failure. */
  readonly stats = { requests: 0, retries: 0 };

  /**
   * @param domain the registry as references name it (`docker.io`, `127.0.0.1:5000`)
   * @param host where to connect, `host[:port]` (defaults to `domain`)
   */
  constructor(
    readonly domain: string,
    opts: RegistryClientOptions = {},
    readonly host = domain,
  ) {
    const plain = opts.plainHttp ?? defaultsToPlainHttp(host);
    this.baseUrl = new URL(`${plain ? 'http' : 'https'}://${host}/v2/`);
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.ownsDispatcher = !opts.dispatcher;
    if (opts.dispatcher) {
      this.dispatcher = opts.dispatcher;
    } else {
      this.preconnector = new Preconnector(opts.insecure ? { rejectUnauthorized: false } : {});
      this.dispatcher = new Agent({ connections: opts.connectionsPerHost ?? 8, keepAliveTimeout: 30_000, connect: this.preconnector.connect });
    }
    this.auth = new Authenticator({
      domain,
      registry: domain,
      credentials: opts.credentials ?? dockerConfigCredentials(),
      dispatcher: this.dispatcher,
      timeoutMs: this.timeoutMs,
      retry: this.retry,
    });
  }

  /** Token requests made so far (one per scope set until the token expires). */
  get tokenRequests(): number {
    return this.auth.tokenRequests;
  }

  context(repository?: string, object?: string): RegistryContext {
    return { registry: this.domain, ...(repository ? { repository } : {}), ...(object ? { object } : {}) };
  }

  repositoryUrl(repository: string, path: string): URL {
    return new URL(`${repository}/${path}`, this.baseUrl);
  }

  private scopes(req: RegistryRequest): string[] {
    return [`repository:${req.repository}:${req.push ? 'pull,push' : 'pull'}`, ...(req.extraScopes ?? [])];
  }

  /**
   * Sends `req` and hands the response to `consume` (default: return it, body unread). Failures
   * of `consume` that are network errors or TransientError repeat the request under the same
   * retry budget, so a reset mid-body is retried like a reset before the headers.
   */
  async fetch<T = RegistryResponse>(req: RegistryRequest, consume?: (res: RegistryResponse) => Promise<T>): Promise<T> {
    const ctx = this.context(req.repository, req.object);
    const expect = req.expect ?? [200];
    const scopes = this.scopes(req);
    let reauthed = false;
    let authorization = await this.auth.authorization(scopes);
    for (let attempt = 0; ; attempt++) {
      let delay: number | undefined;
      let failure: { detail: string; status?: number; cause?: unknown };
      try {
        const res = await this.send(req, authorization);
        const fromRegistry = res.url.origin === this.baseUrl.origin;
        if (expect.includes(res.status)) {
          if (!consume) return res as T;
          try {
            return await consume(res);
          } finally {
            discard(res.body);
          }
        }
        // Only the registry's own refusals are about our credentials; storage behind a redirect has its own.
        if ((res.status === 401 || res.status === 403) && fromRegistry && !reauthed) {
          await res.body.dump().catch(() => undefined);
          reauthed = true;
          const fresh = await this.auth.reauthorize(res.headers['www-authenticate'], scopes, ctx, authorization);
          if (fresh !== undefined) {
            authorization = fresh;
            attempt--; // re-authenticating is not a retry
            continue;
          }
          throw new RegistryAuthError(ctx, `${req.method} ${describeUrl(res.url)}: HTTP ${res.status} and no way to authenticate`, res.status);
        }
        const detail = await errorDetail(res);
        if (res.status === 401 || res.status === 403) {
          throw new RegistryAuthError(ctx, `${req.method} ${describeUrl(res.url)}: HTTP ${res.status} (access denied)${detail}`, res.status);
        }
        if (res.status === 404) throw new RegistryNotFoundError(ctx, `${req.method} ${describeUrl(res.url)}: not found (HTTP 404)${detail}`, 404);
        if (!isRetryableStatus(res.status)) {
          throw new RegistryError(ctx, `${req.method} ${describeUrl(res.url)}: unexpected HTTP ${res.status}${detail}`, res.status);
        }
        failure = { detail: `${req.method} ${describeUrl(res.url)}: HTTP ${res.status}${detail}`, status: res.status };
        const ra = retryAfterMs(header(res.headers, 'retry-after'));
        if (ra !== undefined) {
          if (ra > this.retry.maxRetryAfterMs) {
            throw new RegistryError(ctx, `${req.method} ${describeUrl(res.url)}: HTTP ${res.status} with Retry-After ${Math.round(ra / 1000)} s, longer than the ${this.retry.maxRetryAfterMs / 1000} s allowed`, res.status);
          }
          delay = ra;
        }
      } catch (err) {
        if (err instanceof RegistryError) throw err;
        if (!(err instanceof TransientError) && !isNetworkError(err)) {
          throw new RegistryError(ctx, `${req.method} ${this.describeTarget(req)}: ${(err as Error).message}`, undefined, { cause: err });
        }
        failure = { detail: `${req.method} ${this.describeTarget(req)}: ${(err as Error).message}`, cause: err };
      }
      if (attempt >= this.retry.retries) {
        throw new RegistryError(ctx, `${failure.detail} (gave up after ${attempt + 1} attempts)`, failure.status, { cause: failure.cause });
      }
      this.stats.retries++;
      await sleep(delay ?? backoffMs(this.retry, attempt + 1));
    }
  }

  /** The request's URL for messages, without its query (upload state, presigned signatures). */
  private describeTarget(req: RegistryRequest): string {
    return describeUrl(req.url ? new URL(req.url) : this.repositoryUrl(req.repository, req.path ?? ''));
  }

  /** One attempt: the request plus any redirects, without retries. */
  private async send(req: RegistryRequest, authorization: string | undefined): Promise<RegistryResponse> {
    let url = req.url ? new URL(req.url) : this.repositoryUrl(req.repository, req.path ?? '');
    let method = req.method;
    const follow = (req.followRedirects ?? true) && (method === 'GET' || method === 'HEAD');
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'starling', ...req.headers };
      // Authorization never leaves the registry's origin (distribution-spec "API": MUST NOT forward).
      if (authorization && url.origin === this.baseUrl.origin) headers.authorization = authorization;
      this.stats.requests++;
      if (req.counter) req.counter.requests++;
      const res = await request(url, {
        method,
        headers,
        body: hop === 0 && req.body ? req.body() : undefined,
        dispatcher: this.dispatcher,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const location = header(res.headers, 'location');
      if (follow && REDIRECTS.includes(res.statusCode) && location) {
        await res.body.dump().catch(() => undefined);
        if (hop >= MAX_REDIRECTS) throw new RegistryError(this.context(req.repository, req.object), `${req.method} ${describeUrl(url)}: more than ${MAX_REDIRECTS} redirects`);
        url = new URL(location, url);
        if (res.statusCode === 303) method = 'GET';
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url };
    }
  }

  /**
   * Size of a blob, or undefined if the repository does not have it; -1 when it exists but the
   * size is unknown. A redirect (to storage, where a URL signed for GET may refuse HEAD) is not
   * followed: the registry answering with one means it has the blob.
   */
  async blobSize(repository: string, digest: Digest): Promise<number | undefined> {
    const res = await this.fetch({ method: 'HEAD', repository, path: `blobs/${digest}`, object: `blob ${digest}`, expect: [200, 404, ...REDIRECTS], followRedirects: false });
    await res.body.dump();
    if (res.status === 404) return undefined;
    const len = Number(header(res.headers, 'content-length'));
    return res.status === 200 && Number.isSafeInteger(len) ? len : -1;
  }

  /** HEAD of a manifest: its digest, media type and size when the registry says them; undefined on 404. */
  async headManifest(repository: string, reference: string): Promise<{ digest?: Digest; mediaType?: string; size?: number } | undefined> {
    const res = await this.fetch({ method: 'HEAD', repository, path: `manifests/${reference}`, object: manifestObject(reference), headers: { accept: MANIFEST_ACCEPT }, expect: [200, 404] });
    await res.body.dump();
    if (res.status === 404) return undefined;
    const d = header(res.headers, 'docker-content-digest');
    const len = Number(header(res.headers, 'content-length'));
    const mediaType = header(res.headers, 'content-type')?.split(';')[0]?.trim();
    return {
      ...(d && /^sha256:[0-9a-f]{64}$/.test(d) ? { digest: d as Digest } : {}),
      ...(mediaType ? { mediaType } : {}),
      ...(Number.isSafeInteger(len) ? { size: len } : {}),
    };
  }

  /**
   * GETs a manifest or index by tag or digest and verifies it: the body against the digest asked
   * for (or `expected`), and against Docker-Content-Digest when the registry sends one.
   */
  async getManifest(repository: string, reference: string, expected?: Digest): Promise<FetchedManifest> {
    const object = manifestObject(reference);
    const ctx = this.context(repository, object);
    return this.fetch({ method: 'GET', repository, path: `manifests/${reference}`, object, headers: { accept: MANIFEST_ACCEPT } }, async (res) => {
      const bytes = await readLimited(res.body, MAX_MANIFEST_BYTES, ctx);
      const digest = sha256(bytes);
      const want = expected ?? (reference.startsWith('sha256:') ? (reference as Digest) : undefined);
      if (want && want !== digest) throw new RegistryError(ctx, `manifest digest mismatch: expected ${want}, the body hashes to ${digest}`);
      const claimed = header(res.headers, 'docker-content-digest');
      if (claimed && claimed.startsWith('sha256:') && claimed !== digest) {
        throw new RegistryError(ctx, `manifest digest mismatch: Docker-Content-Digest says ${claimed}, the body hashes to ${digest}`);
      }
      let mediaType = header(res.headers, 'content-type')?.split(';')[0]?.trim() ?? '';
      try {
        const m = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
        if (typeof m.mediaType === 'string') mediaType = m.mediaType;
      } catch {
        throw new RegistryError(ctx, 'manifest is not JSON');
      }
      const etag = header(res.headers, 'etag');
      return { bytes, mediaType, digest, ...(etag ? { etag } : {}) };
    });
  }

  /** PUTs a manifest or index; `headers` adds e.g. If-Match. Resolves to the answer's headers (OCI-Subject). */
  async putManifest(repository: string, reference: string, mediaType: string, bytes: Buffer, headers: Record<string, string> = {}): Promise<IncomingHttpHeaders> {
    const object = manifestObject(reference);
    const res = await this.fetch({
      method: 'PUT',
      repository,
      path: `manifests/${reference}`,
      object,
      push: true,
      headers: { ...headers, 'content-type': mediaType },
      body: () => bytes,
      expect: [201, 200, 202],
    });
    await res.body.dump();
    const claimed = header(res.headers, 'docker-content-digest');
    const digest = sha256(bytes);
    if (claimed && claimed !== digest) throw new RegistryError(this.context(repository, object), `registry stored the manifest as ${claimed}, expected ${digest}`);
    return res.headers;
  }

  /**
   * DELETEs a manifest by digest: 'deleted', 'absent' (404), or 'refused' when the registry does
   * not allow deletes (405, as Distribution answers with deletes turned off).
   */
  async deleteManifest(repository: string, digest: Digest): Promise<'deleted' | 'absent' | 'refused'> {
    const res = await this.fetch({ method: 'DELETE', repository, path: `manifests/${digest}`, object: manifestObject(digest), push: true, expect: [202, 200, 204, 404, 405] });
    await res.body.dump();
    return res.status === 404 ? 'absent' : res.status === 405 ? 'refused' : 'deleted';
  }

  /**
   * Opens `connections` connections to the registry for requests about to be sent together (a
   * mount's TOC requests once its manifest is in): their handshakes overlap what comes before.
   * Nothing with a dispatcher given by the caller.
   */
  preconnect(connections: number): void {
    this.preconnector?.warm(this.baseUrl, connections);
  }

  async close(): Promise<void> {
    this.preconnector?.close();
    if (this.ownsDispatcher) await this.dispatcher.close();
  }
}

export function manifestObject(reference: string): string {
  return reference.startsWith('sha256:') ? `manifest ${reference}` : `tag ${reference}`;
}

/** URL without query (presigned URLs carry credentials in it). */
export function describeUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** Drops a response body that will not be read (without an unhandled 'error' from undici's abort). */
export function discard(body: Readable): void {
  if (body.destroyed) return;
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads a body of at most `limit` bytes. */
export async function readLimited(body: Readable, limit: number, ctx: RegistryContext): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) {
      discard(body);
      throw new RegistryError(ctx, `response larger than the ${limit}-byte limit`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

/** The registry's error codes and messages (`{"errors":[{"code","message"}]}`), as " (CODE: message)". */
async function errorDetail(res: RegistryResponse): Promise<string> {
  let text = '';
  try {
    text = (await res.body.text()).slice(0, 2000);
  } catch {
    return '';
  }
  try {
    const j = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    const errs = (j.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).filter(Boolean);
    if (errs.length) return ` (${errs.join('; ')})`;
  } catch {
    /* not JSON */
  }
  const t = text.trim().split('\n')[0]?.slice(0, 200);
  return t ? ` (${t})` : '';
}
