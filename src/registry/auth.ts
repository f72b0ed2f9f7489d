// Registry authentication (formats.md §1c.5): WWW-Authenticate challenges, Basic, and bearer tokens
// from the challenge's realm — anonymous, with credentials (OAuth2 POST first, GET as fallback) or
// with a refresh token — cached per scope set until they expire.
import type { Dispatcher } from 'undici';
import { request } from './http.js';
import type { Credential, CredentialStore } from './credentials.js';
import { RegistryAuthError, type RegistryContext } from './errors.js';
import { header } from './headers.js';
import { backoffMs, isNetworkError, isRetryableStatus, retryAfterMs, sleep, type RetryPolicy } from './retry.js';

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses RFC 7235 challenges: `Bearer realm="…",service="…",scope="…"` (several per header allowed). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  for (const h of header === undefined ? [] : Array.isArray(header) ? header : [header]) {
    let i = 0;
    let current: Challenge | undefined;
    const skip = (chars: string) => {
      while (i < h.length && chars.includes(h[i]!)) i++;
    };
    while (i < h.length) {
      skip(' \t,');
      const tok = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(h.slice(i))?.[0];
      if (!tok) break;
      i += tok.length;
      skip(' \t');
      if (h[i] !== '=') {
        current = { scheme: tok.toLowerCase(), params: {} };
        out.push(current);
        continue;
      }
      i++;
      skip(' \t');
      let value = '';
      if (h[i] === '"') {
        for (i++; i < h.length && h[i] !== '"'; i++) {
          if (h[i] === '\\') i++;
          value += h[i] ?? '';
        }
        i++;
      } else {
        value = /^[^,\s]*/.exec(h.slice(i))![0];
        i += value.length;
      }
      if (current) current.params[tok.toLowerCase()] = value;
    }
  }
  return out;
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

export interface AuthOptions {
  /** The registry as references name it (key for credential lookup). */
  domain: string;
  /** For error messages. */
  registry: string;
  credentials: CredentialStore;
  dispatcher: Dispatcher;
  timeoutMs: number;
  retry: RetryPolicy;
}

// Tokens are dropped this long before they expire, so a request never carries a dying token.
const EXPIRY_SLACK_MS = 10_000;
const DEFAULT_EXPIRES_IN_S = 60;

/** Holds what one registry host asked for and the tokens it issued. */
export class Authenticator {
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();
  /** Token requests under way, by scope set: concurrent requests share one. */
  private readonly inflight = new Map<string, Promise<string>>();
  private credential?: Promise<Credential | undefined>;
  /** Token requests made (the tests check the cache with it). */
  tokenRequests = 0;

  constructor(private readonly opts: AuthOptions) {}

  private getCredential(): Promise<Credential | undefined> {
    this.credential ??= this.opts.credentials.get(this.opts.domain);
    return this.credential;
  }

  /** The Authorization header to send before any challenge for these scopes, if one is known. */
  async authorization(scopes: readonly string[]): Promise<string | undefined> {
    const c = this.challenge;
    if (!c) {
      const cred = await this.getCredential();
      // A static bearer token is sent as is; anything else waits for the registry's challenge.
      return cred?.kind === 'bearer' ? `Bearer ${cred.token}` : undefined;
    }
    if (c.scheme === 'basic') return this.basicHeader();
    const cached = this.tokens.get(scopeKey(scopes));
    if (cached && cached.expiresAt > Date.now()) return cached.header;
    return this.token(c, scopes, scopes);
  }

  private token(c: Challenge, scopes: readonly string[], cacheAs: readonly string[], ctx?: RegistryContext): Promise<string> {
    const key = scopeKey(cacheAs);
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetchToken(c, scopes, cacheAs, ctx).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /**
   * After a 401 (or a 403 from the registry host): learns the challenge, drops the cached token and
   * returns a fresh Authorization header, or undefined when there is nothing new to try.
   */
  async reauthorize(wwwAuthenticate: string | string[] | undefined, scopes: readonly string[], ctx: RegistryContext, rejected?: string): Promise<string | undefined> {
    const challenges = parseChallenges(wwwAuthenticate);
    const c = challenges.find((x) => x.scheme === 'bearer') ?? challenges.find((x) => x.scheme === 'basic');
    if (c) this.challenge = c;
    if (!this.challenge) return undefined;
    const key = scopeKey(scopes);
    // Another request may have replaced the rejected token already: use that one.
    const cached = this.tokens.get(key);
    if (cached && cached.header !== rejected && cached.expiresAt > Date.now()) return cached.header;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    this.tokens.delete(key);
    if (this.challenge.scheme === 'basic') {
      const h = await this.basicHeader();
      if (!h) throw new RegistryAuthError(ctx, `authentication required (Basic realm ${JSON.stringify(this.challenge.params.realm ?? '')}) and no credentials are configured`, 401);
      return h;
    }
    const challengeScope = c?.params.scope;
    const all = challengeScope ? [...new Set([...scopes, ...challengeScope.split(' ')])] : scopes;
    return this.token(this.challenge, all, scopes, ctx);
  }

  private async basicHeader(): Promise<string | undefined> {
    const cred = await this.getCredential();
    if (cred?.kind !== 'basic') return undefined;
    return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
  }

  private async fetchToken(c: Challenge, scopes: readonly string[], cacheAs: readonly string[] = scopes, ctx?: RegistryContext): Promise<string> {
    const context = ctx ?? { registry: this.opts.registry };
    const realm = c.params.realm;
    if (!realm) throw new RegistryAuthError(context, 'bearer challenge without a realm');
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw new RegistryAuthError(context, `bearer challenge realm is not a URL: ${JSON.stringify(realm)}`);
    }
    const cred = await this.getCredential();
    if (cred?.kind === 'bearer') return `Bearer ${cred.token}`;
    this.tokenRequests++;
    const service = c.params.service;
    let body: TokenResponse | undefined;
    if (cred && (cred.kind === 'identity' || cred.kind === 'basic')) {
      const form = new URLSearchParams();
      if (cred.kind === 'identity') {
        form.set('grant_type', 'refresh_token');
        form.set('refresh_token', cred.token);
      } else {
        form.set('grant_type', 'password');
        form.set('username', cred.username);
        form.set('password', cred.password);
      }
      if (service) form.set('service', service);
      form.set('client_id', 'starling');
      if (scopes.length) form.set('scope', scopes.join(' '));
      const res = await this.tokenRequest(realmUrl, 'POST', { 'content-type': 'application/x-www-form-urlencoded' }, form.toString(), context);
      // Registries without the OAuth2 endpoint answer 404/401/400 (or 405): fall back to GET.
      const fallback = res.status === 404 || res.status === 401 || res.status === 400 || (res.status === 405 && cred.kind === 'basic');
      if (!fallback || cred.kind === 'identity') body = this.checkTokenResponse(res, context);
    }
    if (!body) {
      const url = new URL(realmUrl);
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (cred?.kind === 'basic') headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
      body = this.checkTokenResponse(await this.tokenRequest(url, 'GET', headers, undefined, context), context);
    }
    const token = body.access_token || body.token;
    if (!token) throw new RegistryAuthError(context, `token server ${realmUrl.origin} returned no token`);
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_EXPIRES_IN_S;
    const issued = body.issued_at ? Date.parse(body.issued_at) : NaN;
    const start = Number.isNaN(issued) ? Date.now() : Math.min(issued, Date.now());
    const header = `Bearer ${token}`;
    this.tokens.set(scopeKey(cacheAs), { header, expiresAt: start + expiresIn * 1000 - EXPIRY_SLACK_MS });
    return header;
  }

  /** One token request, retried like registry requests on network errors, 429 and 5xx. */
  private async tokenRequest(url: URL, method: 'GET' | 'POST', headers: Record<string, string>, body: string | undefined, ctx: RegistryContext): Promise<{ status: number; text: string }> {
    const policy = this.opts.retry;
    for (let attempt = 0; ; attempt++) {
      let delay: number | undefined;
      try {
        const res = await request(url, {
          method,
          headers,
          body,
          dispatcher: this.opts.dispatcher,
          headersTimeout: this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
        });
        const text = await res.body.text();
        if (!isRetryableStatus(res.statusCode) || attempt >= policy.retries) return { status: res.statusCode, text };
        delay = retryAfterMs(header(res.headers, 'retry-after'));
        if (delay !== undefined && delay > policy.maxRetryAfterMs) return { status: res.statusCode, text };
      } catch (err) {
        if (!isNetworkError(err) || attempt >= policy.retries) {
          throw new RegistryAuthError(ctx, `token server ${url.origin}: ${(err as Error).message}${attempt > 0 ? ` (gave up after ${attempt + 1} attempts)` : ''}`, undefined, { cause: err });
        }
      }
      await sleep(delay ?? backoffMs(policy, attempt + 1));
    }
  }

  private checkTokenResponse(res: { status: number; text: string }, ctx: RegistryContext): TokenResponse {
    if (res.status !== 200) {
      throw new RegistryAuthError(ctx, `token server refused (HTTP ${res.status}): ${res.text.slice(0, 200).trim()}`, res.status);
    }
    try {
      return JSON.parse(res.text) as TokenResponse;
    } catch {
      throw new RegistryAuthError(ctx, 'token server answered with something that is not JSON');
    }
  }
}

interface TokenResponse {
  token?: string;
  access_token?: string;
  expires_in?: number;
  issued_at?: string;
}

function scopeKey(scopes: readonly string[]): string {
  return [...scopes].sort().join(' ');
}
