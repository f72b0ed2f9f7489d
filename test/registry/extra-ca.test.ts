// Registries served over TLS with a certificate of a CA of the user's (NODE_EXTRA_CA_CERTS): bin/starling
// hands the file on as STARLING_EXTRA_CA_CERTS (Node would parse it, with every bundled CA, before
// running any JavaScript), and the registry client trusts it when it first dials TLS. Real
// Distribution (over HTTPS with certificates made by openssl; over HTTP for the mount, as loopback
// registries are spoken to), the command as users run it (bin/starling, built dist/).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { detachAll } from '../../src/mount/stale.js';
import { RegistryClient } from '../../src/registry/client.js';
import { EXTRA_CA_ENV } from '../../src/registry/extra-ca.js';
import { buildImage } from '../fixtures/image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../../bin/starling', import.meta.url));
const TIMEOUT = { timeout: 120_000 };

let work: string;
let ca: string;
let tlsRegistry: RunningRegistry;
let registry: RunningRegistry;
let ref: string;
const mounted = new Set<string>();

/** The environment of a shell that sets none of the CA variables, plus `env`. */
function envWith(env: Record<string, string>): NodeJS.ProcessEnv {
  const { NODE_EXTRA_CA_CERTS: _n, STARLING_EXTRA_CA_CERTS: _s, ...rest } = process.env;
  return { ...rest, STARLING_RUN_DIR: join(work, 'run'), ...env };
}

/** bin/starling ARGS; resolves with its exit code and output (never rejects). */
async function starling(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(bin, args, { env: envWith(env), maxBuffer: 16 << 20 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
  );
}

/** HEAD of a manifest over HTTPS with STARLING_EXTRA_CA_CERTS = `file` in this process (unset: undefined). */
async function headOverTls(file: string | undefined): Promise<unknown> {
  const saved = process.env[EXTRA_CA_ENV];
  if (file === undefined) delete process.env[EXTRA_CA_ENV];
  else process.env[EXTRA_CA_ENV] = file;
  const client = new RegistryClient(tlsRegistry.host, { plainHttp: false, retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 0 } });
  try {
    return await client.headManifest('test/none', 'latest');
  } finally {
    await client.close();
    if (saved === undefined) delete process.env[EXTRA_CA_ENV];
    else process.env[EXTRA_CA_ENV] = saved;
  }
}

const openssl = (...args: string[]) => run('openssl', args, { cwd: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-extra-ca-'));
  cleanupOnSignal(work); // after() does not run on a signal
  // A CA of the user's, and the registry's certificate for 127.0.0.1 signed by it.
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=starling test CA');
  await openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  await writeFile(join(work, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  ca = join(work, 'ca.pem');
  tlsRegistry = await startRegistry({ tls: { certificate: join(work, 'server.pem'), key: join(work, 'server.key'), ca: await readFile(ca, 'utf8') } });
  registry = await startRegistry();
  const src = join(work, 'src');
  await buildImage(src, { layers: [{ files: { 'etc/os-release': 'NAME=ca\n' } }] }, 'v1');
  ref = `docker://${registry.host}/test/ca:v1`;
  const pushed = await starling(['convert', `oci:${src}:v1`, ref, '--format', 'estargz'], {});
  assert.equal(pushed.code, 0, pushed.stderr);
});

after(async () => {
  for (const mnt of mounted) await starling(['umount', mnt, '--force'], {}).catch(() => {});
  await detachAll([], [join(work, 'run')]).catch(() => {});
  await tlsRegistry?.stop();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

test('a registry whose certificate no trusted CA signed is refused; with its CA in STARLING_EXTRA_CA_CERTS it is spoken to', TIMEOUT, async () => {
  await assert.rejects(headOverTls(undefined), /certificate/i);
  assert.equal(await headOverTls(ca), undefined, 'a 404 for a manifest that is not there: the TLS session was set up');
});

test('an extra CA file that cannot be read is a warning naming it, as with Node, and the registry stays untrusted', TIMEOUT, async () => {
  const missing = join(work, 'no-such-ca.pem');
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  try {
    await assert.rejects(headOverTls(missing), /certificate/i);
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off('warning', onWarning);
  }
  assert.ok(warnings.some((w) => w.startsWith(`Ignoring extra certs from \`${missing}\``)), warnings.join('\n'));
});

test('bin/starling hands NODE_EXTRA_CA_CERTS on: the mount daemon has it as STARLING_EXTRA_CA_CERTS, not as the variable Node parses at start', TIMEOUT, async () => {
  const mnt = join(work, 'mnt');
  await mkdir(mnt);
  mounted.add(mnt);
  const res = await starling(['mount', ref, mnt, '--no-spare', '--cache-dir', join(work, 'cache')], { NODE_EXTRA_CA_CERTS: ca });
  assert.equal(res.code, 0, res.stderr);
  assert.equal((await run('cat', [join(mnt, 'etc/os-release')])).stdout, 'NAME=ca\n');
  const pid = Number(/daemon pid (\d+)/.exec(res.stderr)![1]);
  const environ = (await readFile(`/proc/${pid}/environ`, 'latin1')).split('\0');
  assert.ok(environ.includes(`STARLING_EXTRA_CA_CERTS=${ca}`), 'the daemon has the file under its own name');
  assert.ok(!environ.some((v) => v.startsWith('NODE_EXTRA_CA_CERTS=')), "the daemon's Node did not parse it at start");
  const umounted = await starling(['umount', mnt], {});
  assert.equal(umounted.code, 0, umounted.stderr);
  mounted.delete(mnt);
});
