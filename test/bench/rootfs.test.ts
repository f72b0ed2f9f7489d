// File selection of the benchmark images: real machine files stored once at their real place
// (merged-/usr symlinks resolved), parents before children, the loader and libraries an executable
// needs, symlink targets, and byte-budget padding; plus the seeded shuffle of the run order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat } from 'node:fs/promises';
import { selectLayer } from '../../bench/startup/rootfs.js';
import { shuffled } from '../../bench/startup/harness.js';

test('an executable brings its shared libraries and the ELF loader, at their real paths, parents first', async () => {
  const sel = await selectLayer({ paths: ['/usr/bin/python3'], libraries: true }, []);
  const paths = sel.paths();
  // /usr/bin/python3 is a symlink: the link and its target are both in.
  assert.equal(sel.entries.get('usr/bin/python3')?.type, 'symlink');
  assert.equal(sel.entries.get('usr/bin/python3.11')?.type, 'file');
  // ldd names /lib/x86_64-linux-gnu/…; on merged /usr they are stored under usr/lib once.
  for (const lib of ['libc.so.6', 'libexpat.so.1', 'libz.so.1']) {
    assert.ok(paths.some((p) => p === `usr/lib/x86_64-linux-gnu/${lib}`), `missing ${lib}`);
  }
  assert.ok(!paths.some((p) => p.startsWith('lib/')), 'a path through the /lib symlink was kept');
  assert.ok(paths.some((p) => /^usr\/lib(64)?\/.*ld-linux-x86-64\.so\.2$/.test(p)), 'the ELF loader is missing');
  for (const [i, p] of paths.entries()) {
    const parent = p.split('/').slice(0, -1).join('/');
    if (parent) assert.ok(paths.indexOf(parent) >= 0 && paths.indexOf(parent) < i, `${p} comes before its parent`);
  }
  // Sizes are the files' real sizes.
  assert.equal(sel.entries.get('usr/bin/python3.11')!.size, (await lstat('/usr/bin/python3.11')).size);
});

test('libraries an earlier layer holds are not repeated; padding stops once its byte budget is reached', async () => {
  const base = await selectLayer({ paths: ['/usr/bin/python3.11'], libraries: true }, []);
  const upper = await selectLayer({ paths: ['/usr/bin/sha256sum'], libraries: true }, [base]);
  assert.ok(base.entries.has('usr/lib/x86_64-linux-gnu/libc.so.6'));
  assert.ok(!upper.entries.has('usr/lib/x86_64-linux-gnu/libc.so.6'));
  assert.ok(upper.entries.has('usr/bin/sha256sum'));

  const budget = 5_000_000;
  const pad = await selectLayer({ fill: { roots: ['/usr/lib/x86_64-linux-gnu'], bytes: budget } }, []);
  const files = [...pad.entries.values()].filter((e) => e.type === 'file');
  assert.ok(pad.bytes >= budget);
  // Without its last file the layer would be under budget: nothing beyond what was needed.
  assert.ok(pad.bytes - files.at(-1)!.size < budget);
});

test('the run order shuffle is a permutation, reproducible from its seed', () => {
  const items = Array.from({ length: 40 }, (_, i) => i);
  const a = shuffled(items, 42);
  assert.deepEqual(shuffled(items, 42), a);
  assert.notDeepEqual(shuffled(items, 43), a);
  assert.notDeepEqual(a, items);
  assert.deepEqual([...a].sort((x, y) => x - y), items);
});
