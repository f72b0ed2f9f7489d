// The benchmark's stargz mode: bench/stargz (stargz-snapshotter's fs package, built by
// scripts/build-interop.sh) mounts an eStargz image pushed to a real Distribution behind the relay,
// one FUSE mount per layer, serves the right bytes lazily, and leaves no mount behind on SIGTERM;
// prepare('stargz') stacks those mounts under a writable overlay and cleans everything up.
// The mounts are served by the Go process, so this process may read them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startEmulatedRegistry, type EmulatedRegistry } from '../../bench/net/link.js';
import { runTool } from '../../bench/startup/build.js';
import { prepare, STARGZ_BIN } from '../../bench/startup/modes.js';
import { convertImage } from '../../src/convert/image.js';
import { lazyUnmount, listMounts } from '../../src/mount/stale.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import { buildImage } from '../fixtures/image.js';

const BIG = randomBytes(6 * 1024 * 1024);
let reg: EmulatedRegistry;
let work: string;
let ref: string;
let blobBytes: number;

const mountsUnder = async (dir: string) => (await listMounts()).map((m) => m.mountpoint).filter((p) => p.startsWith(`${dir}/`));

before(async () => {
  await access(STARGZ_BIN).catch(() => assert.fail(`${STARGZ_BIN} is missing: run scripts/build-interop.sh`));
  work = await mkdtemp(join(tmpdir(), 'starling-stargz-'));
  await buildImage(join(work, 'gzip'), {
    layers: [
      { files: { 'etc/hello.txt': 'hello from the bottom layer\n', 'etc/kept.txt': 'kept\n' } },
      { files: { 'etc/hello.txt': 'hello from the top layer\n', 'data/big.bin': BIG, 'data/small.txt': 'small file\n' } },
    ],
  }, 'v1');
  const summary = await convertImage(await OciLayoutSource.open(join(work, 'gzip'), 'v1'), await OciLayoutDestination.open(join(work, 'esgz'), 'v1'), { format: 'estargz', platforms: 'all' });
  blobBytes = summary.bytesOut;
  reg = await startEmulatedRegistry({ rttMs: 2, rateMbit: 1000 });
  await runTool('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${join(work, 'esgz')}:v1`, `docker://${reg.directHost}/t/img:esgz`]);
  ref = `${reg.host}/t/img:esgz`;
});

after(async () => {
  // Whatever a failed test left mounted goes before its directory does.
  for (const m of (await mountsUnder(work)).reverse()) await lazyUnmount(m);
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

test('stargz program: one FUSE mount per layer, right bytes, lazy, unmounted on SIGTERM', { timeout: 120_000 }, async () => {
  const mnt = join(work, 'layers');
  const before = await reg.relay.counters();
  const child = spawn(STARGZ_BIN, ['-root', join(work, 'cache'), ref, mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  try {
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await Promise.race([lines.next(), exited.then(([code]) => assert.fail(`exited ${code}: ${stderr}`))]);
    assert.equal(first.value, 'ready 2');
    const mounts = (await listMounts()).filter((m) => m.mountpoint.startsWith(`${mnt}/`));
    // go-fuse names the filesystem type after its bridge; the source is the snapshotter's FsName.
    assert.deepEqual(mounts.map((m) => [m.mountpoint, m.fstype, m.source]), [[join(mnt, '0'), 'fuse.rawBridge', 'stargz'], [join(mnt, '1'), 'fuse.rawBridge', 'stargz']]);

    // Each layer is its own filesystem: the bottom one keeps its version of a file.
    assert.equal(await readFile(join(mnt, '0/etc/hello.txt'), 'utf8'), 'hello from the bottom layer\n');
    assert.equal(await readFile(join(mnt, '1/etc/hello.txt'), 'utf8'), 'hello from the top layer\n');
    assert.equal(await readFile(join(mnt, '1/data/small.txt'), 'utf8'), 'small file\n');
    // Lazy: footers, TOCs and a few 50 kB chunks came over the link, not the 6 MiB of random bytes.
    const afterSmall = await reg.relay.counters();
    const fetched = afterSmall.bytesDown - before.bytesDown;
    assert.ok(fetched < 1_000_000 && blobBytes > 6_000_000, `fetched ${fetched} of ${blobBytes} blob bytes after reading small files`);
    assert.ok(afterSmall.getRequests > before.getRequests, 'the relay counted no GET requests');

    assert.ok((await readFile(join(mnt, '1/data/big.bin'))).equals(BIG), 'big.bin differs from what was pushed');
    assert.equal((await stat(join(mnt, '1/data/big.bin'))).size, BIG.length);

    child.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, stderr);
    assert.deepEqual(await mountsUnder(mnt), []);
  } finally {
    child.kill('SIGKILL');
  }
});

test("prepare('stargz'): the layers under a writable overlay; cleanup unmounts all and removes the work dir", { timeout: 120_000 }, async () => {
  const sample = join(work, 'sample');
  await mkdir(sample);
  const prepared = await prepare('stargz', { engine: { argv: [], version: '', convertKey: '' }, ref, work: sample });
  let cleaned = false;
  try {
    const { rootfs } = prepared;
    assert.equal(await readFile(join(rootfs, 'etc/hello.txt'), 'utf8'), 'hello from the top layer\n');
    assert.equal(await readFile(join(rootfs, 'etc/kept.txt'), 'utf8'), 'kept\n');
    await writeFile(join(rootfs, 'etc/new.txt'), 'written\n');
    assert.equal(await readFile(join(sample, 'upper/etc/new.txt'), 'utf8'), 'written\n');
    assert.equal((await mountsUnder(sample)).length, 3, 'two layer mounts and the overlay');
    await prepared.cleanup();
    cleaned = true;
    assert.deepEqual(await mountsUnder(sample), []);
    await assert.rejects(access(sample), { code: 'ENOENT' });
  } finally {
    if (!cleaned) await prepared.cleanup();
  }
});
