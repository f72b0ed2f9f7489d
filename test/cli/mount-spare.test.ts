// The host's spare mount daemon (src/mount/host-spare.ts) end to end: `starling mount` leaves one,
// the next mount is served by it with the caller's directory and environment, another version of
// the program is refused, and a spare goes away when asked, when its socket goes, or with --no-spare
// around. Then bin/starling's native mount client (native/mount_client.c), the command as users run
// it (built dist/ and native/): it hands the mount to the spare without starting Node; the spare
// answers wrong arguments as the JS command does and stays a spare; without a spare, or for what
// only the JS command does, the JS command runs. Real Distribution and FUSE; reads from child
// processes; everything unmounted in `after`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mountPaths } from '../../src/mount/control.js';
import { askSpare, sparePaths } from '../../src/mount/host-spare.js';
import { detachAll } from '../../src/mount/stale.js';
import { running as alive } from '../../src/mount/stop.js';
import { buildImage } from '../fixtures/image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));
const bin = fileURLToPath(new URL('../../bin/starling', import.meta.url));
const client = fileURLToPath(new URL('../../native/build/Release/starling-mount', import.meta.url));
const TIMEOUT = { timeout: 180_000 };

let registry: RunningRegistry;
let work: string;
let runDir: string;
let ref: string;
const mounted = new Set<string>();

async function starling(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['--import', import.meta.resolve('tsx'), cli, ...args], { maxBuffer: 16 << 20, cwd: opts.cwd ?? work, env: { ...process.env, STARLING_RUN_DIR: runDir, ...opts.env } });
}

/** Mounts and returns the pid of the daemon serving the mount, as `starling mount` reports it. */
async function mount(mnt: string, args: string[] = [], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  await mkdir(join(opts.cwd ?? work, mnt), { recursive: true });
  mounted.add(join(opts.cwd ?? work, mnt));
  const { stderr } = await starling(['mount', ref, mnt, '--cache-dir', join(work, 'cache'), '--no-background-fetch', ...args], opts);
  const pid = /daemon pid (\d+)/.exec(stderr);
  assert.ok(pid, stderr);
  return Number(pid[1]);
}

async function umount(mnt: string): Promise<void> {
  await starling(['umount', mnt]);
  mounted.delete(mnt);
}

/** bin/starling ARGS, as users run it; resolves with its exit code and output (never rejects). */
async function installed(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(bin, args, { cwd: opts.cwd ?? work, env: { ...process.env, STARLING_RUN_DIR: runDir, ...opts.env }, maxBuffer: 16 << 20 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
  );
}

/** `starling spare` (run `via` the sources or bin/starling): starts one unless there is one, waits until it is warmed up; its pid. */
async function readySpare(via: (args: string[]) => Promise<{ stderr: string }> = starling): Promise<number> {
  const { stderr } = await via(['spare']);
  const pid = /pid (\d+)/.exec(stderr);
  assert.ok(pid, stderr);
  return Number(pid[1]);
}

const status = () => askSpare({ op: 'status' }, sparePaths(runDir).socket);

async function gone(pid: number, ms = 10_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-spare-test-'));
  cleanupOnSignal(work); // after() does not run on a signal
  runDir = join(work, 'run');
  registry = await startRegistry();
  const src = join(work, 'src');
  await buildImage(src, { layers: [{ files: { 'etc/os-release': 'NAME=spare\n', 'usr/lib/one.txt': 'one\n'.repeat(1000) } }] }, 'v1');
  ref = `docker://${registry.host}/test/spare:v1`;
  await starling(['convert', `oci:${src}:v1`, ref, '--format', 'estargz']);
});

after(async () => {
  for (const mnt of mounted) await starling(['umount', mnt, '--force']).catch(() => {});
  await starling(['spare', '--stop']).catch(() => {});
  await detachAll([], [runDir]).catch(() => {});
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

test('a mount leaves a warmed-up spare; the next mount is served by it and leaves a new one', TIMEOUT, async () => {
  const first = await mount('mnt-a');
  const spare = await readySpare();
  assert.notEqual(spare, first, 'the spare is a process of its own');
  const second = await mount('mnt-b');
  assert.equal(second, spare, 'the second mount is served by the spare');
  assert.equal((await run('cat', [join(work, 'mnt-b/etc/os-release')])).stdout, 'NAME=spare\n');
  assert.equal((await run('cat', [join(work, 'mnt-b/usr/lib/one.txt')])).stdout, 'one\n'.repeat(1000));
  const stats = JSON.parse((await starling(['stats', join(work, 'mnt-b'), '--json'])).stdout) as { pid: number };
  assert.equal(stats.pid, spare);
  assert.match(await readFile(mountPaths(join(work, 'mnt-b'), runDir).log, 'utf8'), /mounted docker:/, "the spare's output is the mount's log");
  const next = await readySpare();
  assert.ok(next !== spare && next !== first, 'a new spare for the mount after');
  await umount(join(work, 'mnt-a'));
  await umount(join(work, 'mnt-b'));
  assert.ok(await gone(spare), 'the spare that became a daemon stopped with its mount');
  assert.deepEqual(await status(), { spare: next, warm: true }, 'the new spare waits on');
  const { stderr } = await starling(['spare', '--stop']);
  assert.match(stderr, new RegExp(`stopped the spare \\(pid ${next}\\)`));
  assert.ok(await gone(next));
  assert.deepEqual(await readdir(sparePaths(runDir).dir), [], 'a spare that served nothing leaves neither socket nor log');
});

test('a daemon that came from a spare dies (SIGKILL): its mount fails its readers at once (no process holds the mount\'s connection)', TIMEOUT, async () => {
  await readySpare();
  const mnt = join(work, 'mnt-killed');
  const pid = await mount('mnt-killed');
  const next = await readySpare(); // the spare the mount left, started meanwhile
  assert.notEqual(next, pid);
  process.kill(pid, 'SIGKILL');
  assert.ok(await gone(pid));
  await assert.rejects(run('stat', [join(mnt, 'etc/os-release')], { timeout: 10_000 }), /Transport endpoint is not connected/);
  await starling(['umount', '--force', mnt]);
  mounted.delete(mnt);
  await starling(['spare', '--stop']);
});

test("the spare mounts with the caller's directory and environment", TIMEOUT, async () => {
  const spare = await readySpare();
  const cwd = join(work, 'caller');
  const envCache = join(work, 'env-cache');
  await mkdir(cwd, { recursive: true });
  // No --cache-dir: STARLING_CACHE_DIR of the caller, not of the spare; MOUNTPOINT relative to the caller's directory.
  await mkdir(join(cwd, 'rel'), { recursive: true });
  mounted.add(join(cwd, 'rel'));
  const { stderr } = await starling(['mount', ref, 'rel', '--no-background-fetch'], { cwd, env: { STARLING_CACHE_DIR: envCache } });
  assert.match(stderr, new RegExp(`mounted at ${join(cwd, 'rel')} \\(daemon pid ${spare};`));
  assert.equal((await run('cat', [join(cwd, 'rel/usr/lib/one.txt')])).stdout, 'one\n'.repeat(1000));
  assert.ok((await readdir(envCache)).includes('chunks'), "the chunks went to the caller's STARLING_CACHE_DIR");
  assert.equal(await readlink(`/proc/${spare}/cwd`), '/', 'then it left it');
  assert.equal(await readFile(`/proc/${spare}/stat`, 'utf8').then((s) => Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[16])), 0, 'back to niceness 0');
  await umount(join(cwd, 'rel'));
  await starling(['spare', '--stop']);
});

test('--no-spare neither uses the spare nor leaves one', TIMEOUT, async () => {
  const spare = await readySpare();
  const pid = await mount('mnt-no-spare', ['--no-spare']);
  assert.notEqual(pid, spare);
  assert.deepEqual(await status(), { spare, warm: true }, 'the spare was left alone');
  await starling(['spare', '--stop']);
  assert.ok(await gone(spare));
  await umount(join(work, 'mnt-no-spare'));
  await mount('mnt-no-spare-2', ['--no-spare']);
  assert.equal(await status(), undefined, 'none left behind');
  await umount(join(work, 'mnt-no-spare-2'));
});

test('a spare of another program (other Node flags) refuses the mount and exits; the mount starts its own daemon', TIMEOUT, async () => {
  await mkdir(sparePaths(runDir).dir, { recursive: true, mode: 0o700 });
  const log = join(sparePaths(runDir).dir, 'by-hand.log');
  const other = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), '--no-warnings', cli, 'mount', '--host-spare', log], { env: { ...process.env, STARLING_RUN_DIR: runDir }, stdio: 'ignore', detached: true });
  other.unref();
  for (let i = 0; !(await status()); i++) {
    assert.ok(i < 600, 'the hand-started spare listens');
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = await mount('mnt-other');
  assert.notEqual(pid, other.pid);
  assert.ok(await gone(other.pid!), 'the refusing spare exits');
  assert.equal((await run('cat', [join(work, 'mnt-other/etc/os-release')])).stdout, 'NAME=spare\n');
  await umount(join(work, 'mnt-other'));
  await starling(['spare', '--stop']);
});

test('a spare killed with -9 leaves its socket: the next mount starts its own daemon, and the spare it leaves takes the socket over', TIMEOUT, async () => {
  const spare = await readySpare();
  process.kill(spare, 'SIGKILL');
  assert.ok(await gone(spare));
  assert.ok((await readdir(sparePaths(runDir).dir)).includes('spare.sock'), 'the dead spare left its socket');
  const pid = await mount('mnt-after-kill');
  assert.notEqual(pid, spare);
  assert.equal((await run('cat', [join(work, 'mnt-after-kill/etc/os-release')])).stdout, 'NAME=spare\n');
  const next = await readySpare();
  assert.ok(next !== spare && next !== pid);
  assert.deepEqual(await status(), { spare: next, warm: true });
  await umount(join(work, 'mnt-after-kill'));
  await starling(['spare', '--stop']);
});

test('a spare socket answering what is not JSON: the mount starts its own daemon', TIMEOUT, async () => {
  const { dir, socket } = sparePaths(runDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await rm(socket, { force: true });
  const impostor = createServer((conn) => conn.once('data', () => conn.write('not json\n')));
  await new Promise<void>((r) => impostor.listen(socket, r));
  try {
    const pid = await mount('mnt-impostor');
    assert.ok(alive(pid));
    assert.equal((await run('cat', [join(work, 'mnt-impostor/etc/os-release')])).stdout, 'NAME=spare\n');
    await umount(join(work, 'mnt-impostor'));
  } finally {
    impostor.close();
    await starling(['spare', '--stop']); // the spare that mount left takes the socket over
  }
});

test('a spare directory others can enter is refused: the spare exits without listening', TIMEOUT, async () => {
  const { dir } = sparePaths(runDir);
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const log = join(dir, 'open.log');
  const spare = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'mount', '--host-spare', log], { env: { ...process.env, STARLING_RUN_DIR: runDir }, stdio: 'ignore' });
  const code = await new Promise((r) => spare.once('exit', r));
  assert.equal(code, 0);
  assert.equal(await status(), undefined);
  assert.ok(!(await readdir(dir)).includes('spare.sock'));
  await chmod(dir, 0o700);
});

test('a spare whose socket is removed exits', TIMEOUT, async () => {
  const spare = await readySpare();
  await rm(sparePaths(runDir).socket);
  assert.ok(await gone(spare, 5_000));
});

test('a spare whose program changes on disk (package.json touched, as an upgrade does) exits', TIMEOUT, async () => {
  const spare = await readySpare();
  const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
  const { atime, mtime } = await stat(pkg);
  try {
    await utimes(pkg, atime, new Date(mtime.getTime() + 1000));
    assert.ok(await gone(spare, 5_000));
  } finally {
    await utimes(pkg, atime, mtime);
  }
  assert.equal(await status(), undefined);
});

test('two mounts at once: one is served by the spare, the other by a daemon of its own', TIMEOUT, async () => {
  const spare = await readySpare();
  const pids = await Promise.all([mount('mnt-x'), mount('mnt-y')]);
  assert.equal(pids.filter((p) => p === spare).length, 1, `pids ${pids}, spare ${spare}`);
  assert.notEqual(pids[0], pids[1]);
  for (const m of ['mnt-x', 'mnt-y']) assert.equal((await run('cat', [join(work, m, 'etc/os-release')])).stdout, 'NAME=spare\n');
  await umount(join(work, 'mnt-x'));
  await umount(join(work, 'mnt-y'));
  await starling(['spare', '--stop']);
});

test('a mount the spare cannot make fails with its reason and leaves nothing mounted', TIMEOUT, async () => {
  const spare = await readySpare();
  const mnt = join(work, 'mnt-missing');
  await mkdir(mnt, { recursive: true });
  await assert.rejects(starling(['mount', `docker://${registry.host}/test/missing:v1`, mnt]), (err: { stderr: string }) => /missing/.test(err.stderr));
  assert.ok(await gone(spare), 'the spare that took the mount exited with it');
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(mnt));
});

test('a mount that fails after its daemon reported progress takes back the spare it made for after it', TIMEOUT, async () => {
  // The manifest is there (the daemon reports it: the next spare is made then), a layer blob is not.
  const broken = `docker://${registry.host}/test/spare-broken:v1`;
  await starling(['convert', `oci:${join(work, 'src')}:v1`, broken, '--format', 'estargz']);
  const manifest = (await (await fetch(`${registry.url}/v2/test/spare-broken/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: Array<{ digest: string }> };
  const deleted = await fetch(`${registry.url}/v2/test/spare-broken/blobs/${manifest.layers[0]!.digest}`, { method: 'DELETE' });
  assert.equal(deleted.status, 202);
  await readySpare();
  // A spare killed with -9 by a test before leaves its log: only files made by this mount count.
  const before = new Set(await readdir(sparePaths(runDir).dir));
  const mnt = join(work, 'mnt-broken');
  await mkdir(mnt, { recursive: true });
  await assert.rejects(starling(['mount', broken, mnt]), (err: { stderr: string }) => /BLOB_UNKNOWN/.test(err.stderr));
  const made = (await readdir(sparePaths(runDir).dir)).filter((f) => f.startsWith('spare-') && !before.has(f));
  assert.deepEqual(made, [], 'no spare made for after the failed mount');
  assert.equal(await status(), undefined);
});

test('the client waits for the spare while it mounts: no Node starts for `starling mount`; a failure comes back with its message', TIMEOUT, async () => {
  assert.ok(existsSync(client), 'native/ built no mount client: npm ci builds it');
  await readySpare(installed);
  // A registry that holds the manifest request until the test has looked at the waiting command.
  const requests: Array<(code: number) => void> = [];
  const server = createHttpServer((_req, res) => requests.push((code) => res.writeHead(code, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"held by the test"}]}')));
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
  const spare = await readySpare(installed);
  // Bytes JSON must escape, and some it need not, in the mountpoint and in an environment value;
  // and what a shell would run (fuse-native unmounted through one: src/fs/fuse.ts).
  const marker = join(work, 'ran');
  const odd = `dir "q" \\ tab\t ü ✓ $(touch ${marker})`;
  const cwd = join(work, 'caller');
  const cache = join(work, `cache ${odd}\nline`);
  await mkdir(join(cwd, odd), { recursive: true });
  mounted.add(join(cwd, odd));
  const res = await installed(['mount', ref, odd, '--no-background-fetch'], { cwd, env: { STARLING_CACHE_DIR: cache } });
  assert.equal(res.code, 0, res.stderr);
  const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(res.stderr, new RegExp(`^mounted at ${escaped(join(cwd, odd))} \\(daemon pid ${spare}; log ${escaped(runDir)}/[0-9a-f]+/daemon\\.log\\)\n$`));
  assert.equal((await run('cat', [join(cwd, odd, 'usr/lib/one.txt')])).stdout, 'one\n'.repeat(1000));
  assert.ok((await readdir(cache)).includes('chunks'), "the chunks went to the caller's STARLING_CACHE_DIR");
  const next = await readySpare(installed);
  assert.notEqual(next, spare, 'the mount left a new spare');
  const umounted = await installed(['umount', join(cwd, odd)]);
  assert.equal(umounted.code, 0, umounted.stderr);
  assert.ok(!existsSync(marker), 'nothing in the path ran');
  mounted.delete(join(cwd, odd));
  await installed(['spare', '--stop']);
});

test('wrong arguments: the message and exit code of the JS command, and the spare stays a spare', TIMEOUT, async () => {
  const spare = await readySpare(installed);
  for (const args of [['mount', 'only-one'], ['mount', ref, join(work, 'x'), '--mode', 'bogus'], ['mount', ref, join(work, 'x'), '--cache-size', 'lots']]) {
    const viaClient = await installed(args);
    const viaNode = await run(process.execPath, [fileURLToPath(new URL('../../bin/starling.js', import.meta.url)), ...args, '--no-spare'], { env: { ...process.env, STARLING_RUN_DIR: runDir } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    assert.equal(viaClient.code, 2, viaClient.stderr);
    assert.deepEqual(viaClient, { code: viaNode.code, stdout: '', stderr: viaNode.stderr });
    assert.deepEqual(await status(), { spare, warm: true }, `still the spare after ${args.join(' ')}`);
  }
  await installed(['spare', '--stop']);
});

test('without a spare, and for --help and --no-spare, the JS command runs', TIMEOUT, async () => {
  assert.equal(await status(), undefined);
  const mnt = join(work, 'mnt-no-spare');
  await mkdir(mnt, { recursive: true });
  mounted.add(mnt);
  const res = await installed(['mount', ref, mnt, '--no-background-fetch', '--cache-dir', join(work, 'cache')]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal((await run('cat', [join(mnt, 'etc/os-release')])).stdout, 'NAME=spare\n');
  const spare = await readySpare(installed); // the daemon left one
  const pid = Number(/daemon pid (\d+)/.exec(res.stderr)![1]);
  assert.notEqual(pid, spare);
  const help = await installed(['mount', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: starling mount REF MOUNTPOINT/);
  const mnt2 = join(work, 'mnt-no-spare-2');
  await mkdir(mnt2, { recursive: true });
  mounted.add(mnt2);
  const own = await installed(['mount', ref, mnt2, '--no-spare', '--no-background-fetch', '--cache-dir', join(work, 'cache')]);
  assert.equal(own.code, 0, own.stderr);
  assert.notEqual(Number(/daemon pid (\d+)/.exec(own.stderr)![1]), spare);
  assert.deepEqual(await status(), { spare, warm: true }, '--no-spare left the spare alone');
  for (const m of [mnt, mnt2]) {
    assert.equal((await installed(['umount', m])).code, 0);
    mounted.delete(m);
  }
  await installed(['spare', '--stop']);
});
