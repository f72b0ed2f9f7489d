// Debian packages of the benchmark images that this machine has not installed: apt's candidate
// resolved without downloading, a cached .deb checked against its digest, its files counted and unpacked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { debFileBytes, fetchDebs, resolveDebs, unpackDebs } from '../../bench/startup/debs.js';

const run = promisify(execFile);

test("apt's candidate .deb of a package is resolved (file name with its version, SHA-256) without downloading; an unknown package fails", async () => {
  const [six, ...rest] = await resolveDebs(['python3-six']);
  assert.equal(rest.length, 0);
  assert.match(six!.file, /^python3-six_[^_]+_all\.deb$/);
  assert.match(six!.sha256, /^[0-9a-f]{64}$/);
  await assert.rejects(resolveDebs(['no-such-package-starling']));
});

test('a cached .deb is used only if it matches its digest; its regular files are counted and unpacked', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-debs-'));
  try {
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'DEBIAN'), { recursive: true });
    await mkdir(join(tree, 'usr/share/demo'), { recursive: true });
    await writeFile(join(tree, 'DEBIAN/control'), 'Package: demo\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: demo\n');
    await writeFile(join(tree, 'usr/share/demo/a.txt'), 'a'.repeat(1000));
    await writeFile(join(tree, 'usr/share/demo/b.txt'), 'b'.repeat(234));
    const cache = join(dir, 'cache');
    await mkdir(cache);
    const file = 'demo_1.0_all.deb';
    await run('dpkg-deb', ['--build', '--root-owner-group', tree, join(cache, file)]);
    const sha256 = createHash('sha256').update(await readFile(join(cache, file))).digest('hex');

    const [path] = await fetchDebs([{ file, sha256 }], cache);
    assert.equal(path, join(cache, file));
    assert.equal(await debFileBytes(path!), 1234);
    const stage = join(dir, 'stage');
    await unpackDebs([path!], stage);
    assert.equal(await readFile(join(stage, 'usr/share/demo/b.txt'), 'utf8'), 'b'.repeat(234));

    await assert.rejects(fetchDebs([{ file, sha256: '0'.repeat(64) }], cache), /does not match the mirror's SHA-256/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
