// bin/starling's native mount client (native/mount_client.c): `starling mount` as users run it
// (bin/starling, built dist/ and native/) hands the mount to the host's spare without starting
// Node; the spare answers wrong arguments as the JS command does and stays a spare; without a spare,
// or for what only the JS command does, the JS command runs. Real Distribution and FUSE; reads from
// child processes; everything unmounted in `after`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { askSpare, sparePaths } from '../../src/mount/host-spare.js';
import { detachAll } from '../../src/mount/stale.js';
import { buildImage } from '../fixtures/image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../../bin/starling', import.meta.url));
const client = fileURLToPath(new URL('../../native/build/Release/starling-mount', import.meta.url));
const TIMEOUT = { timeout: 180_000 };

let registry: RunningRegistry;
let work: string;
let runDir: string;
let ref: string;
const mounted = new Set<string>();

/** bin/starling ARGS; resolves with its exit code and output (never rejects). */
async function starling(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(bin, args, { cwd: opts.cwd ?? work, env: { ...process.env, STARLING_RUN_DIR: runDir, ...opts.env }, maxBuffer: 16 << 20 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
  );
}

const status = () => askSpare({ op: 'status' }, sparePaths(runDir).socket);

/** `starling spare`: starts one unless there is one, waits until it is warmed up; its pid. */
async function readySpare(): Promise<number> {
  const res = await starling(['spare']);
  assert.equal(res.code, 0, res.stderr);
  return Number(/pid (\d+)/.exec(res.stderr)![1]);
}

before(async () => {
  assert.ok(existsSync(client), 'native/ built no mount client: npm ci builds it');
  work = await mkdtemp(join(tmpdir(), 'starling-client-test-'));
  cleanupOnSignal(work);
  runDir = join(work, 'run');
  registry = await startRegistry();
  const src = join(work, 'src');
  await buildImage(src, { layers: [{ files: { 'etc/os-release': 'NAME=client\n', 'usr/lib/one.txt': 'one\n'.repeat(1000) } }] }, 'v1');
  ref = `docker://${registry.host}/test/client:v1`;
  const converted = await starling(['convert', `oci:${src}:v1`, ref, '--format', 'estargz']);
  assert.equal(converted.code, 0, converted.stderr);
});

after(async () => {
  for (const mnt of mounted) await starling(['umount', mnt, '--force']).catch(() => {});
  await starling(['spare', '--stop']).catch(() => {});
  await detachAll([], [runDir]).catch(() => {});
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

test('the client waits for the spare while it mounts: no Node starts for `starling mount`; a failure comes back with its message', TIMEOUT, async () => {
  await readySpare();
  // A registry that holds the manifest request until the test has looked at the waiting command.
  const requests: Array<(code: number) => void> = [];
  const server = createServer((_req, res) => requests.push((code) => res.writeHead(code, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"held by the test"}]}')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const mnt = join(work, 'mnt-held');
    await mkdir(mnt, { recursive: true });
    const { port } = server.address() as AddressInfo;
    const cmd = spawn(bin, ['mount', `docker://127.0.0.1:${port}/test/held:v1`, mnt, '--plain-http', '--cache-dir', join(work, 'cache')], { env: { ...process.env, STARLING_RUN_DIR: runDir }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    cmd.stderr!.on('data', (d: Buffer) => (stderr += d));
    const exited = once(cmd, 'exit');
    for (let i = 0; requests.length === 0; i++) {
      assert.ok(i < 600, 'the spare asks for the manifest');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await readlink(`/proc/${cmd.pid}/exe`), client, 'the command waiting for the mount is the native client, not Node');
    for (;;) {
      // The registry client retries a 5xx, not a 404: one answer ends it, later ones are answered too.
      requests.shift()?.(404);
      if (cmd.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(await exited, [1, null]);
    assert.match(stderr, /^starling: .*MANIFEST_UNKNOWN/m);
    assert.equal(await status(), undefined, 'the spare took the mount, and left none after a mount that failed');
  } finally {
    server.close();
  }
});

test("a mount through the client: served by the spare, with the caller's directory and environment; it leaves a new spare; a mountpoint of any bytes unmounts", TIMEOUT, async () => {
  const spare = await readySpare();
  // Bytes JSON must escape, and some it need not, in the mountpoint and in an environment value;
  // and what a shell would run (fuse-native unmounted through one: src/fs/fuse.ts).
  const marker = join(work, 'ran');
  const odd = `dir "q" \\ tab\t ü ✓ $(touch ${marker})`;
  const cwd = join(work, 'caller');
  const cache = join(work, `cache ${odd}\nline`);
  await mkdir(join(cwd, odd), { recursive: true });
  mounted.add(join(cwd, odd));
  const res = await starling(['mount', ref, odd, '--no-background-fetch'], { cwd, env: { STARLING_CACHE_DIR: cache } });
  assert.equal(res.code, 0, res.stderr);
  const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(res.stderr, new RegExp(`^mounted at ${escaped(join(cwd, odd))} \\(daemon pid ${spare}; log ${escaped(runDir)}/[0-9a-f]+/daemon\\.log\\)\n$`));
  assert.equal((await run('cat', [join(cwd, odd, 'usr/lib/one.txt')])).stdout, 'one\n'.repeat(1000));
  assert.ok((await readdir(cache)).includes('chunks'), "the chunks went to the caller's STARLING_CACHE_DIR");
  const next = await readySpare();
  assert.notEqual(next, spare, 'the mount left a new spare');
  const umounted = await starling(['umount', join(cwd, odd)]);
  assert.equal(umounted.code, 0, umounted.stderr);
  assert.ok(!existsSync(marker), 'nothing in the path ran');
  mounted.delete(join(cwd, odd));
  await starling(['spare', '--stop']);
});

test('wrong arguments: the message and exit code of the JS command, and the spare stays a spare', TIMEOUT, async () => {
  const spare = await readySpare();
  for (const args of [['mount', 'only-one'], ['mount', ref, join(work, 'x'), '--mode', 'bogus'], ['mount', ref, join(work, 'x'), '--cache-size', 'lots']]) {
    const viaClient = await starling(args);
    const viaNode = await run(process.execPath, [fileURLToPath(new URL('../../bin/starling.js', import.meta.url)), ...args, '--no-spare'], { env: { ...process.env, STARLING_RUN_DIR: runDir } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    assert.equal(viaClient.code, 2, viaClient.stderr);
    assert.deepEqual(viaClient, { code: viaNode.code, stdout: '', stderr: viaNode.stderr });
    assert.deepEqual(await status(), { spare, warm: true }, `still the spare after ${args.join(' ')}`);
  }
  await starling(['spare', '--stop']);
});

test('without a spare, and for --help and --no-spare, the JS command runs', TIMEOUT, async () => {
  assert.equal(await status(), undefined);
  const mnt = join(work, 'mnt-no-spare');
  await mkdir(mnt, { recursive: true });
  mounted.add(mnt);
  const res = await starling(['mount', ref, mnt, '--no-background-fetch', '--cache-dir', join(work, 'cache')]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal((await run('cat', [join(mnt, 'etc/os-release')])).stdout, 'NAME=client\n');
  const spare = await readySpare(); // the daemon left one
  const pid = Number(/daemon pid (\d+)/.exec(res.stderr)![1]);
  assert.notEqual(pid, spare);
  const help = await starling(['mount', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: starling mount REF MOUNTPOINT/);
  const mnt2 = join(work, 'mnt-no-spare-2');
  await mkdir(mnt2, { recursive: true });
  mounted.add(mnt2);
  const own = await starling(['mount', ref, mnt2, '--no-spare', '--no-background-fetch', '--cache-dir', join(work, 'cache')]);
  assert.equal(own.code, 0, own.stderr);
  assert.notEqual(Number(/daemon pid (\d+)/.exec(own.stderr)![1]), spare);
  assert.deepEqual(await status(), { spare, warm: true }, '--no-spare left the spare alone');
  for (const m of [mnt, mnt2]) {
    assert.equal((await starling(['umount', m])).code, 0);
    mounted.delete(m);
  }
  await starling(['spare', '--stop']);
});
