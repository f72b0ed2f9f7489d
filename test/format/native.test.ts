// The addon on its own: sha256 (native/sha256.cc) and chunkDigest, which uses it for large chunks; inflateChunk (native/gzip_index.cc); exitNow (native/exit.cc).
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chunkDigest, inflateChunk, mountSyscall, nativeAddon, unmountSyscall } from '../../src/format/native.js';
import { isMountpoint } from '../../src/mount/stale.js';
import { tempDir } from '../helpers/temp-dir.js';
import { sha256 } from '../../src/oci/digest.js';
import { variedData } from './gzipindex/helpers.js';

const T = { timeout: 60_000 };

test("sha256 on the pool gives node:crypto's digest for 0 B to 8 MiB, and the JS thread turns while it runs; chunkDigest agrees on both sides of its pool threshold", T, async () => {
  for (const size of [0, 1, 55, 64, 65_535, 65_536, 1 << 20, 8 << 20]) {
    const data = variedData(size, size % 97);
    assert.equal(`sha256:${(await nativeAddon().sha256(data)).toString('hex')}`, sha256(data), `${size} bytes`);
    assert.equal(await chunkDigest(data), sha256(data), `chunkDigest of ${size} bytes`);
  }
  const big = variedData(8 << 20, 11);
  let turned = false;
  setImmediate(() => (turned = true));
  await nativeAddon().sha256(big);
  assert.equal(turned, true, 'hashing 8 MiB did not let the event loop turn');
  assert.throws(() => nativeAddon().sha256('text' as unknown as Buffer), /data must be a Buffer/);
});

test('where the addon does not load (node --no-addons), chunkDigest hashes on the thread with the same result, eStargz chunks inflate through Node\'s zlib, and nativeAddon says how to build it', T, async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const script = `
    import { chunkDigest, inflateChunk, nativeAddon } from ${JSON.stringify(new URL('../../src/format/native.ts', import.meta.url).href)};
    import { sha256 } from ${JSON.stringify(new URL('../../src/oci/digest.ts', import.meta.url).href)};
    const out = [];
    for (const size of [1 << 10, 64 << 10, 8 << 20]) {
      const data = Buffer.alloc(size, size % 251);
      out.push((await chunkDigest(data)) === sha256(data));
    }
    let message = '';
    try { nativeAddon(); } catch (err) { message = err.constructor.name + ': ' + err.message; }
    // An eStargz chunk decodes through Node's zlib instead.
    const { buildLayer, noise } = await import(${JSON.stringify(new URL('../fs/helpers/layer.ts', import.meta.url).href)});
    const layer = buildLayer([{ path: 'f', content: noise(200_000, 3) }]);
    const chunk = layer.toc.entries.find((e) => e.path === 'f').chunks[0];
    const decoded = await layer.toc.decodeChunk(chunk, await layer.blob.read(chunk.start, chunk.end - chunk.start));
    out.push(inflateChunk(Buffer.alloc(10), 1, 0) === undefined, decoded.equals(noise(200_000, 3).subarray(0, chunk.size)));
    console.log(JSON.stringify({ out, message }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--no-addons', '--import', 'tsx', '--input-type=module', '-e', script], { timeout: 50_000 });
  const { out, message } = JSON.parse(stdout) as { out: boolean[]; message: string };
  assert.deepEqual(out, [true, true, true, true, true]);
  assert.match(message, /^NativeAddonError: Starling's native addon \(native\/\) is not built or does not load: .*run `npm ci`/);
});

test('inflateChunk gives the first want bytes of one or more gzip members and the sha256 of them from hashFrom on; short or corrupt input is an error', T, async () => {
  const a = variedData(100_000, 1);
  const b = variedData(50_000, 2);
  const members = Buffer.concat([gzipSync(a), gzipSync(b)]);
  const whole = Buffer.concat([a, b]);
  for (const [want, from] of [[150_000, 0], [150_000, 100_000], [120_000, 7], [1, 0], [100_000, 100_000]] as const) {
    const [data, digest] = (await inflateChunk(members, want, from))!;
    assert.equal(data.length, want, `want ${want}`);
    assert.ok(data.equals(whole.subarray(0, want)));
    assert.equal(digest, sha256(whole.subarray(from, want)), `digest of [${from}, ${want})`);
  }
  // More output than wanted is never made (a bomb stops at want); less is an error.
  const [bomb] = (await inflateChunk(gzipSync(Buffer.alloc(64 << 20)), 1000, 0))!;
  assert.equal(bomb.length, 1000);
  await assert.rejects(inflateChunk(members, 150_001, 0)!, /ends after 150000 of 150001/);
  await assert.rejects(inflateChunk(members.subarray(0, 1000), 100_000, 0)!, /ends after \d+ of 100000/);
  const corrupt = Buffer.from(members);
  corrupt[200]! ^= 0xff;
  await assert.rejects(inflateChunk(corrupt, 150_000, 0)!, /does not inflate|ends after/);
  assert.throws(() => inflateChunk(members, 10, 11), /hashFrom must be 0 to want/);
});

test('exitNow ends the process with its code at once: what was written before arrives, exit handlers do not run', { timeout: 30_000 }, async () => {
  const native = new URL('../../src/format/native.ts', import.meta.url).href;
  const script = `import { exitNow } from ${JSON.stringify(native)}; process.on('exit', () => process.stdout.write('exit handler\\n')); process.stdout.write('written\\n'); process.stderr.write('said\\n'); exitNow(3); process.stdout.write('after\\n');`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.status, 3, child.stderr);
  assert.equal(child.stdout, 'written\n');
  assert.equal(child.stderr, 'said\n');
});

test('where the addon does not load, exitNow returns and the command ends as it would have', { timeout: 30_000 }, async () => {
  const native = new URL('../../src/format/native.ts', import.meta.url).href;
  const script = `import { exitNow } from ${JSON.stringify(native)}; process.on('exit', () => process.stdout.write('exit handler\\n')); exitNow(3); process.stdout.write('after\\n');`;
  const child = spawnSync(process.execPath, ['--no-addons', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout, 'after\nexit handler\n');
});


test('mountSyscall mounts an overlay and unmountSyscall takes it off; their errors name the target and the errno', { timeout: 30_000 }, async () => {
  const dir = await tempDir('native-mount-');
  const [lower, upper, work, target] = ['lower', 'upper', 'work', 'target'].map((d) => join(dir, d)) as [string, string, string, string];
  try {
    for (const d of [lower, upper, work, target]) await mkdir(d);
    await writeFile(join(lower, 'file'), 'from the lower dir');
    await mountSyscall('starling-test', target, 'overlay', `workdir=${work},upperdir=${upper},lowerdir=${lower}`);
    assert.equal(await isMountpoint(target), true);
    assert.equal(await readFile(join(target, 'file'), 'utf8'), 'from the lower dir');
    await writeFile(join(target, 'new'), 'written through');
    assert.equal(await readFile(join(upper, 'new'), 'utf8'), 'written through');
    await unmountSyscall(target, false);
    assert.equal(await isMountpoint(target), false);
    await assert.rejects(unmountSyscall(target, true), (err: Error & { errno?: number }) => err.message === `umount ${target}: Invalid argument` && err.errno === 22);
    await assert.rejects(mountSyscall('x', join(dir, 'absent'), 'overlay', `lowerdir=${lower}:${upper}`), { message: `mount -t overlay on ${join(dir, 'absent')}: No such file or directory` });
    // More options than the page mount(2) copies: refused before the call, not cut short.
    await assert.rejects(mountSyscall('x', target, 'overlay', `lowerdir=${Array(300).fill(lower).join(':')}`), /bytes of options, more than the 4095 mount\(2\) takes/);
    assert.equal(await isMountpoint(target), false);
  } finally {
    if (await isMountpoint(target)) await unmountSyscall(target, true);
    await rm(dir, { recursive: true, force: true });
  }
});
