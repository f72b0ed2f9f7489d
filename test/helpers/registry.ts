// Starts a real CNCF Distribution registry (Debian `docker-registry`) on 127.0.0.1 for a test,
// with its own storage directory and, optionally, htpasswd or token auth. Stopped by `stop()`.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { undoOnSignal } from './signal-cleanup.js';

export interface RegistryOptions {
  /** `htpasswd` file contents (bcrypt entries) to turn on Basic auth. */
  htpasswd?: string;
  /** Token auth: the issuer's realm URL, service, issuer name and the PEM cert bundle of its key. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Serve HTTPS with this certificate and key (PEM files); `ca` (PEM) is what the readiness probe trusts. */
  tls?: { certificate: string; key: string; ca: string };
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT` — what a reference names as its host. */
  host: string;
  url: string;
  dir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The status of a GET over HTTPS trusting `ca` (fetch takes no CA of its own). */
function httpsStatus(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
  });
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-registry-'));
  const port = await freePort();
  const auth: string[] = [];
  if (opts.htpasswd !== undefined) {
    await writeFile(join(dir, 'htpasswd'), opts.htpasswd);
    auth.push('auth:', '  htpasswd:', '    realm: starling-test', `    path: ${join(dir, 'htpasswd')}`);
  } else if (opts.token) {
    await writeFile(join(dir, 'token-ca.pem'), opts.token.rootCertBundle);
    auth.push(
      'auth:',
      '  token:',
      `    realm: ${opts.token.realm}`,
      `    service: ${opts.token.service}`,
      `    issuer: ${opts.token.issuer}`,
      `    rootcertbundle: ${join(dir, 'token-ca.pem')}`,
    );
  }
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ...(opts.tls ? ['  tls:', `    certificate: ${opts.tls.certificate}`, `    key: ${opts.tls.key}`] : []),
    ...auth,
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const undo = undoOnSignal(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${stderr}`);
    try {
      const status = opts.tls ? await httpsStatus(`${url}/v2/`, opts.tls.ca) : await fetch(`${url}/v2/`).then(async (res) => (await res.arrayBuffer(), res.status));
      if (status === 200 || status === 401) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not start on ${url}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    dir,
    async stop() {
      undo.forget();
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
