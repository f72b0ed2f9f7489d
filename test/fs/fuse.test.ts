// The FUSE adapter over a LazyFs of hand-made layers: every read happens in a child process
// (the serving process must never read its own mount), the mount is always unmounted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mountFuse, type FuseMount } from '../../src/fs/fuse.js';
import { big, image, setup } from './helpers/fixture.js';
import { sha256 } from '../../src/oci/digest.js';

const run = promisify(execFile);
let mnt: string;
let mount: FuseMount | undefined;
let env: Awaited<ReturnType<typeof setup>>;

before(async () => {
  const layers = image();
  const tool = layers[0]!.toc.entries.find((e) => e.path === 'bin/tool')!;
  layers[0]!.bytes[tool.chunks[5]!.start + 10] ^= 0xff; // one bad chunk
  env = await setup(layers);
  mnt = await mkdtemp(join(tmpdir(), 'starling-mnt-'));
  mount = await mountFuse(mnt, () => env.fs, { timeoutMs: 30_000, fsname: 'starling-test', log: () => {} });
});

after(async () => {
  await mount?.unmount();
  await rm(mnt, { recursive: true, force: true });
  await env.cleanup();
});

test('stat, readdir, readlink, xattrs and device numbers through the kernel', async () => {
  // Never spawn with `cwd` inside the mount: the child's chdir happens before exec, while this
  // process (which serves the mount) may be waiting for it.
  const names = ['bin/tool', 'bin/link', 'bin/sh', 'dev/null', 'dev/sda', 'dev/pipe', 'etc/hosts'];
  const { stdout } = await run('stat', ['-c', '%n %F %a %u %g %s %Y %h %i %t:%T', ...names.map((n) => join(mnt, n))]);
  const rows = stdout.trim().split('\n').map((l) => l.slice(mnt.length + 1).split(' '));
  const byName = Object.fromEntries(rows.map((r) => [r[0], r]));
  assert.deepEqual(byName['bin/tool']!.slice(1, 9), ['regular', 'file', '755', '10', '20', String(big.length), '1600000000', '2']);
  assert.equal(byName['bin/link']![9], byName['bin/tool']![9], 'hardlinks share an inode');
  assert.equal(byName['bin/sh']![1], 'symbolic');
  assert.equal(byName['dev/null']!.slice(1, 4).join(' '), 'character special file');
  assert.equal(byName['dev/null']!.at(-1), '1:3');
  assert.equal(byName['dev/sda']!.at(-1), '8:0');
  assert.equal(byName['dev/pipe']!.slice(1, 2).join(' '), 'fifo');
  assert.equal((await run('readlink', [join(mnt, 'bin/sh')])).stdout, 'tool\n');
  assert.equal((await run('ls', ['-A', join(mnt, 'etc')])).stdout, 'hosts\nmotd\n');
  assert.equal((await run('getfattr', ['--only-values', '-n', 'user.note', join(mnt, 'etc/hosts')])).stdout, 'hi');
  await assert.rejects(run('touch', [join(mnt, 'etc/new')]), /Read-only file system/);
});

test('content through the kernel; a bad chunk is EIO on that file only and the mount survives', async () => {
  assert.equal((await run('cat', [join(mnt, 'etc/hosts')])).stdout, '127.0.0.1 upper\n');
  assert.equal((await run('sha256sum', [join(mnt, 'etc/motd')])).stdout.split(' ')[0], sha256('x'.repeat(100_000)).slice(7));
  await assert.rejects(run('cat', [join(mnt, 'bin/tool')], { encoding: 'buffer', maxBuffer: 4 << 20 }), /Input\/output error/);
  const head = await run('head', ['-c', '65536', join(mnt, 'bin/tool')], { encoding: 'buffer', maxBuffer: 4 << 20 });
  assert.deepEqual(head.stdout, big.subarray(0, 65536));
  assert.equal((await run('cat', [join(mnt, 'etc/hosts')])).stdout, '127.0.0.1 upper\n');
  assert.match((await run('df', ['-i', mnt])).stdout, /starling-test/);
});

test('with no open or release of its own, the kernel still keeps pages: a second read of a file reaches no callback; writes are refused', async () => {
  const fs = env.fs;
  const read = fs.read.bind(fs);
  let reads = 0;
  fs.read = (path, offset, length) => {
    reads++;
    return read(path, offset, length);
  };
  try {
    const tool = join(mnt, 'bin/tool');
    const tail = () => run('tail', ['-c', '4096', tool], { encoding: 'buffer' });
    assert.deepEqual((await tail()).stdout, big.subarray(-4096)); // a part no earlier test read
    assert.ok(reads > 0);
    const first = reads;
    assert.deepEqual((await tail()).stdout, big.subarray(-4096));
    assert.equal(reads, first, 'served from the page cache');
    await assert.rejects(run('sh', ['-c', `echo more >> ${join(mnt, 'etc/motd')}`]), /Read-only file system/);
  } finally {
    fs.read = read;
  }
});
