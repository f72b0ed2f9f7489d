// An HTTP proxy in front of a real registry that injects faults on chosen requests, for tests of
// retries, re-resolution and integrity. Point a client at `proxy.host` instead of the registry.
//
//   const proxy = await startFaultProxy(reg.url);
//   proxy.inject({ kind: 'status', status: 503, times: 3, match: { path: '/blobs/' } });
//   proxy.inject({ kind: 'reset-mid-body', afterBytes: 1000, match: { method: 'GET', path: /blobs\/sha256/ } });
//   ... proxy.log lists every request (and the fault applied), proxy.storageLog the redirected ones.
//   await proxy.stop();
//
// Faults are consumed in the order injected: a request takes the first queued fault that matches
// it, `times` times (default 1; Infinity for a storm). Everything else passes through untouched.
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface FaultMatch {
  method?: string;
  /** Substring of, or pattern for, the request path (query included). */
  path?: string | RegExp;
  /** Only requests with (true) or without (false) a Range header. */
  range?: boolean;
}

export type Fault = (
  | /** Answer with this status (a 500/503 storm with `times`), an optional body and headers. */
  { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** 429 with `Retry-After: seconds`. */
  | { kind: 'retry-after'; seconds: number }
  /** Pass the response on, then destroy the connection after `afterBytes` body bytes (default: half). */
  | { kind: 'reset-mid-body'; afterBytes?: number }
  /** Destroy the connection without any answer. */
  | { kind: 'reset' }
  /** Forward the request (the registry acts on it), then destroy the connection instead of answering. */
  | { kind: 'drop-response' }
  /** Drop the Range header: the registry answers 200 with the whole blob (bits flipped at `alterOffset`, if given). */
  | { kind: 'ignore-range'; alterOffset?: number }
  /** Flip the bits of the body byte at `offset` (default 0) on the way through. */
  | { kind: 'alter-bytes'; offset?: number }
  /**
   * Answer 307 to the proxy's "storage" listener (another origin), which serves the same request
   * like presigned object storage: it forwards it to the registry with the credentials of the
   * redirected request, so the client must not (and need not) send Authorization there.
   */
  | { kind: 'redirect' }
  /** Wait before forwarding. */
  | { kind: 'delay'; ms: number }
) & { match?: FaultMatch; times?: number };

export interface LoggedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The fault applied to it, if any. */
  fault?: Fault['kind'];
  /** The status sent back (for passed-through and faulted answers alike; undefined for resets). */
  status?: number;
  /** When the request arrived (Date.now()). */
  at: number;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`: what a reference names instead of the registry. */
  readonly host: string;
  readonly url: string;
  /** Origin of the storage listener that redirects point to. */
  readonly storageUrl: string;
  readonly log: LoggedRequest[];
  /** TCP connections accepted by the proxy listener so far. */
  readonly connections: () => number;
  /** Requests the storage listener received (their headers show whether Authorization leaked). */
  readonly storageLog: LoggedRequest[];
  inject(fault: Fault): void;
  /** Drops every queued fault. */
  clear(): void;
  /** Faults still queued. */
  pending(): number;
  /** Expires every redirect handed out so far: the storage listener answers them 403, like an expired presigned URL. */
  expireRedirects(): void;
  /** Holds new requests (they wait, unanswered) until resume(). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

interface Queued {
  fault: Fault;
  left: number;
}

function matches(m: FaultMatch | undefined, req: IncomingMessage): boolean {
  if (!m) return true;
  if (m.method && m.method.toUpperCase() !== req.method) return false;
  const path = req.url ?? '';
  if (m.path !== undefined && (typeof m.path === 'string' ? !path.includes(m.path) : !m.path.test(path))) return false;
  if (m.range !== undefined && m.range !== (req.headers.range !== undefined)) return false;
  return true;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as { port: number }).port;
}

export interface FaultProxyOptions {
  /** Serve HTTPS with a self-signed certificate for 127.0.0.1 made with openssl (`url` is then https://). */
  tls?: boolean;
}

async function selfSignedCert(): Promise<{ key: string; cert: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-proxy-tls-'));
  try {
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    return { key: await readFile(join(dir, 'key.pem'), 'utf8'), cert: await readFile(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Starts the proxy in front of `upstream` (e.g. `http://127.0.0.1:5000`). */
export async function startFaultProxy(upstream: string, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
  const target = new URL(upstream);
  const scheme = opts.tls ? 'https' : 'http';
  const queue: Queued[] = [];
  const log: LoggedRequest[] = [];
  const storageLog: LoggedRequest[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const redirects = new Map<string, { path: string; method: string; authorization?: string; expired: boolean }>();
  let paused: Array<() => void> | undefined;
  let nextId = 0;

  /** Forwards a request to the registry and pipes the answer back through `transform`. */
  const forward = (req: IncomingMessage, res: ServerResponse, entry: LoggedRequest, opts: { path?: string; headers?: IncomingHttpHeaders; resetAfter?: number; alterAt?: number } = {}) => {
    const headers = { ...(opts.headers ?? req.headers), host: target.host };
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: opts.path ?? req.url, headers }, (upRes) => {
      entry.status = upRes.statusCode;
      const outHeaders = { ...upRes.headers };
      // Rewrite registry-absolute Locations (upload sessions) so they come back through the proxy.
      const loc = outHeaders.location;
      if (typeof loc === 'string' && loc.startsWith(target.origin)) outHeaders.location = `${scheme}://${host}${loc.slice(target.origin.length)}`;
      res.writeHead(upRes.statusCode ?? 502, outHeaders);
      let seen = 0;
      const contentLength = Number(upRes.headers['content-length']);
      const resetAfter = opts.resetAfter === -1 ? Math.floor((Number.isFinite(contentLength) ? contentLength : 2) / 2) : opts.resetAfter;
      upRes.on('data', (chunk: Buffer) => {
        let out = chunk;
        if (opts.alterAt !== undefined && opts.alterAt >= seen && opts.alterAt < seen + chunk.length) {
          out = Buffer.from(chunk);
          out[opts.alterAt - seen] ^= 0xff;
        }
        if (resetAfter !== undefined && seen + out.length >= resetAfter) {
          upRes.destroy();
          // The partial body reaches the kernel before the connection dies.
          res.write(out.subarray(0, resetAfter - seen), () => res.socket?.destroy());
          seen += out.length;
          return;
        }
        seen += out.length;
        res.write(out);
      });
      upRes.on('end', () => res.end());
      upRes.on('error', () => res.socket?.destroy());
    });
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (paused) await new Promise<void>((r) => paused!.push(r));
    const entry: LoggedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, at: Date.now() };
    log.push(entry);
    const q = queue.find((x) => x.left > 0 && matches(x.fault.match, req));
    if (!q) return forward(req, res, entry);
    if (--q.left === 0) queue.splice(queue.indexOf(q), 1);
    const f = q.fault;
    entry.fault = f.kind;
    const drain = () => req.resume();
    switch (f.kind) {
      case 'status':
        drain();
        entry.status = f.status;
        res.writeHead(f.status, { 'content-type': 'text/plain', ...f.headers });
        return res.end(f.body ?? `injected ${f.status}\n`);
      case 'retry-after':
        drain();
        entry.status = 429;
        res.writeHead(429, { 'retry-after': String(f.seconds), 'content-type': 'text/plain' });
        return res.end('injected 429\n');
      case 'reset':
        drain();
        return req.socket.destroy();
      case 'drop-response': {
        const headers = { ...req.headers, host: target.host };
        const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (upRes) => {
          entry.status = upRes.statusCode;
          upRes.resume();
          upRes.once('end', () => req.socket.destroy());
        });
        up.on('error', () => req.socket.destroy());
        return req.pipe(up);
      }
      case 'reset-mid-body':
        return forward(req, res, entry, { resetAfter: f.afterBytes ?? -1 });
      case 'ignore-range': {
        const { range: _dropped, ...headers } = req.headers;
        return forward(req, res, entry, { headers, ...(f.alterOffset !== undefined ? { alterAt: f.alterOffset } : {}) });
      }
      case 'alter-bytes':
        return forward(req, res, entry, { alterAt: f.offset ?? 0 });
      case 'delay':
        await new Promise((r) => setTimeout(r, f.ms));
        return forward(req, res, entry);
      case 'redirect': {
        drain();
        const id = `r${nextId++}`;
        redirects.set(id, { path: req.url ?? '/', method: req.method ?? 'GET', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), expired: false });
        entry.status = 307;
        res.writeHead(307, { location: `${storageUrl}/storage/${id}?X-Signature=test` });
        return res.end();
      }
    }
  };

  const storageHandle = (req: IncomingMessage, res: ServerResponse) => {
    const entry: LoggedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, at: Date.now() };
    storageLog.push(entry);
    const id = /^\/storage\/([^?]+)/.exec(req.url ?? '')?.[1];
    const r = id ? redirects.get(id) : undefined;
    if (!r || r.expired) {
      req.resume();
      entry.status = 403;
      res.writeHead(403, { 'content-type': 'application/xml' });
      return res.end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
    }
    const headers: IncomingHttpHeaders = { ...req.headers };
    delete headers.authorization;
    if (r.authorization) headers.authorization = r.authorization;
    forward(req, res, entry, { path: r.path, headers });
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => void handle(req, res);
  const server = opts.tls ? createHttpsServer(await selfSignedCert(), onRequest) : createServer(onRequest);
  const storage = createServer(storageHandle);
  server.on('connection', () => accepted++);
  for (const s of [server, storage]) {
    s.on('connection', (sock: Socket) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
    });
  }
  const port = await listen(server);
  const storagePort = await listen(storage);
  const host = `127.0.0.1:${port}`;
  const storageUrl = `http://127.0.0.1:${storagePort}`;

  function resume(): void {
    const waiting = paused ?? [];
    paused = undefined;
    for (const w of waiting) w();
  }

  return {
    host,
    url: `${scheme}://${host}`,
    storageUrl,
    log,
    connections: () => accepted,
    storageLog,
    inject(fault) {
      queue.push({ fault, left: fault.times ?? 1 });
    },
    clear() {
      queue.length = 0;
    },
    pending() {
      return queue.length;
    },
    expireRedirects() {
      for (const r of redirects.values()) r.expired = true;
    },
    pause() {
      paused ??= [];
    },
    resume,
    async stop() {
      resume();
      for (const s of sockets) s.destroy();
      await Promise.all([server, storage].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
