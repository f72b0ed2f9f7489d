// A Docker token-auth issuer for tests (distribution's docs/spec/auth/token.md): Distribution is
// started with `auth.token` pointing at it and trusts its self-signed certificate, made with
// openssl at start-up. It issues RS256 JWTs (node:crypto) with the certificate in `x5c`, for
// anonymous pulls, Basic credentials (GET) and the OAuth2 POST form (password and refresh_token).
//
//   const ts = await startTokenServer({ users: { alice: 'pw' }, anonymousPull: true });
//   const reg = await startRegistry({ token: ts.registryConfig });
//   ... ts.log lists every token request.
import { execFile } from 'node:child_process';
import { createPrivateKey, createSign, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TokenServerOptions {
  service?: string;
  issuer?: string;
  /** username → password. Users get pull and push on every repository. */
  users?: Record<string, string>;
  /** refresh token → username, for `grant_type=refresh_token`. */
  refreshTokens?: Record<string, string>;
  /** Anonymous requests get pull access. */
  anonymousPull?: boolean;
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
  /** Answer the OAuth2 POST form with 404, as registries without it do (default: supported). */
  noPost?: boolean;
}

export interface TokenRequest {
  method: string;
  /** The user the request authenticated as, if any. */
  user?: string;
  grant?: string;
  scopes: string[];
  status: number;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** What startRegistry({ token }) needs. */
  registryConfig: { realm: string; service: string; issuer: string; rootCertBundle: string };
  readonly log: TokenRequest[];
  /** Lifetime of the tokens issued from now on. */
  setExpiresIn(seconds: number): void;
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

interface Access {
  type: string;
  name: string;
  actions: string[];
}

function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last <= first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter(Boolean) };
}

async function body(req: IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of req) s += (c as Buffer).toString();
  return s;
}

export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
  const service = opts.service ?? 'starling-test-registry';
  const issuer = opts.issuer ?? 'starling-test-issuer';
  const dir = await mkdtemp(join(tmpdir(), 'starling-token-'));
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=starling-token-issuer']);
  const key = createPrivateKey(await readFile(join(dir, 'key.pem')));
  const certPem = await readFile(join(dir, 'cert.pem'), 'utf8');
  const certDer = new X509Certificate(certPem).raw;
  await rm(dir, { recursive: true, force: true });
  const log: TokenRequest[] = [];
  let expiresIn = opts.expiresIn ?? 300;

  const sign = (sub: string, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub, aud: service, exp: now + expiresIn, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(createSign('RSA-SHA256').update(input).sign(key))}`;
  };

  const grantFor = (user: string | undefined, scopes: string[]): Access[] =>
    scopes
      .map(parseScope)
      .filter((a): a is Access => a !== undefined && a.type === 'repository')
      .map((a) => ({ ...a, actions: a.actions.filter((x) => (user ? x === 'pull' || x === 'push' : x === 'pull' && opts.anonymousPull === true)) }));

  const reply = (res: ServerResponse, entry: TokenRequest, status: number, payload: unknown) => {
    entry.status = status;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const entry: TokenRequest = { method: req.method ?? '', scopes: [], status: 0 };
    log.push(entry);
    if (url.pathname !== '/token') return reply(res, entry, 404, { error: 'not found' });
    let user: string | undefined;
    if (req.method === 'GET') {
      entry.scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
      const auth = req.headers.authorization;
      if (auth) {
        const m = /^Basic (.+)$/.exec(auth);
        const [u, ...rest] = m ? Buffer.from(m[1]!, 'base64').toString().split(':') : [];
        if (!u || opts.users?.[u] === undefined || opts.users[u] !== rest.join(':')) return reply(res, entry, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] });
        user = u;
      }
      if (url.searchParams.get('service') !== service) return reply(res, entry, 400, { error: 'wrong service' });
    } else if (req.method === 'POST') {
      if (opts.noPost) {
        await body(req);
        return reply(res, entry, 404, { error: 'not found' });
      }
      const form = new URLSearchParams(await body(req));
      entry.grant = form.get('grant_type') ?? undefined;
      entry.scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      if (form.get('service') !== service) return reply(res, entry, 400, { error: 'invalid_request' });
      if (entry.grant === 'password') {
        const u = form.get('username') ?? '';
        if (opts.users?.[u] === undefined || opts.users[u] !== form.get('password')) return reply(res, entry, 401, { error: 'invalid_grant' });
        user = u;
      } else if (entry.grant === 'refresh_token') {
        user = opts.refreshTokens?.[form.get('refresh_token') ?? ''];
        if (!user) return reply(res, entry, 401, { error: 'invalid_grant' });
      } else return reply(res, entry, 400, { error: 'unsupported_grant_type' });
    } else return reply(res, entry, 405, { error: 'method not allowed' });
    if (user) entry.user = user;
    const token = sign(user ?? '', grantFor(user, entry.scopes));
    const issuedAt = new Date().toISOString();
    if (req.method === 'POST') return reply(res, entry, 200, { access_token: token, expires_in: expiresIn, issued_at: issuedAt, scope: entry.scopes.join(' ') });
    return reply(res, entry, 200, { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt });
  };

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const realm = `http://127.0.0.1:${(server.address() as { port: number }).port}/token`;
  return {
    realm,
    service,
    issuer,
    registryConfig: { realm, service, issuer, rootCertBundle: certPem },
    log,
    setExpiresIn: (seconds) => {
      expiresIn = seconds;
    },
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
