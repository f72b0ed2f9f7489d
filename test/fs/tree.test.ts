import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TocError } from '../../src/format/toc.js';
import { indexLayer } from '../../src/fs/layer-index.js';
import { buildLayerTree, buildMergedTree, entryOf, OVERLAY_OPAQUE_XATTR, type Inode } from '../../src/fs/tree.js';
import { entry, type SpecEntry } from './helpers/layer.js';

const layer = (specs: SpecEntry[]) => indexLayer(specs.map((s) => entry(s)), 'test');

function find(root: Inode, path: string): Inode | undefined {
  let node: Inode | undefined = root;
  for (const part of path.split('/')) node = node?.children?.get(part);
  return node;
}
const names = (root: Inode, path: string) => [...(path ? find(root, path)! : root).children!.keys()].sort();

test('merged tree: whiteouts, opaque dirs, file hiding a lower dir, metadata of the top layer', () => {
  const lower = layer([
    { path: 'etc', mode: 0o755 },
    { path: 'etc/passwd', content: 'root' },
    { path: 'etc/gone', content: 'x' },
    { path: 'opq' },
    { path: 'opq/old', content: 'old' },
    { path: 'opq/sub' },
    { path: 'opq/sub/deep', content: 'deep' },
    { path: 'was-dir' },
    { path: 'was-dir/child', content: 'c' },
    { path: 'was-file', content: 'f' },
  ]);
  const upper = layer([
    { path: 'etc', mode: 0o700, uid: 5 },
    { path: 'etc/.wh.gone', content: '' },
    { path: 'etc/new', content: 'new' },
    { path: 'opq/.wh..wh..opq', content: '' },
    { path: 'opq/mine', content: 'mine' },
    { path: 'was-dir', type: 'symlink', linkName: 'elsewhere' },
    { path: 'was-file' },
    { path: 'was-file/inside', content: 'i' },
    { path: 'implicit/parent/file', content: 'p' },
  ]);
  const tree = buildMergedTree([lower, upper]);
  assert.deepEqual(names(tree.root, ''), ['etc', 'implicit', 'opq', 'was-dir', 'was-file']);
  assert.deepEqual(names(tree.root, 'etc'), ['new', 'passwd']);
  assert.equal(entryOf(find(tree.root, 'etc')!).mode, 0o700);
  assert.equal(entryOf(find(tree.root, 'etc')!).uid, 5);
  assert.deepEqual(names(tree.root, 'opq'), ['mine']);
  assert.equal(entryOf(find(tree.root, 'was-dir')!).type, 'symlink');
  assert.equal(find(tree.root, 'was-dir')!.children, undefined);
  assert.deepEqual(names(tree.root, 'was-file'), ['inside']);
  assert.equal(entryOf(find(tree.root, 'implicit/parent')!).mode, 0o755);
  assert.equal(find(tree.root, 'etc/passwd')!.layer, 0);
  assert.equal(find(tree.root, 'etc/new')!.layer, 1);
  // dir nlink = 2 + subdirectories
  assert.equal(tree.root.nlink, 2 + 4); // etc, implicit, opq, was-file
});

test('merged tree: a whiteout affects only lower layers, not the same layer', () => {
  const lower = layer([{ path: 'a', content: 'lower' }]);
  const upper = layer([
    { path: 'a', content: 'upper' },
    { path: '.wh.a', content: '' },
  ]);
  const tree = buildMergedTree([lower, upper]);
  assert.equal(find(tree.root, 'a')!.layer, 1);
  assert.deepEqual(names(tree.root, ''), ['a']);
});

test('merged tree: opaque marker anywhere in the tar still keeps the layer own children', () => {
  const lower = layer([{ path: 'd' }, { path: 'd/x', content: 'x' }]);
  const upper = layer([{ path: 'd' }, { path: 'd/y', content: 'y' }, { path: 'd/.wh..wh..opq', content: '' }]);
  assert.deepEqual(names(buildMergedTree([lower, upper]).root, 'd'), ['y']);
});

test('entries after their directory was replaced or whited out go into the new directory, not the old one', () => {
  // Consecutive entries of one directory reuse its lookup; a symlink replacing an ancestor in the
  // same layer, or a whiteout of it in the next, must end that.
  const lower = layer([{ path: 'd' }, { path: 'd/e' }, { path: 'd/e/x', content: 'x' }, { path: 'd', type: 'symlink', linkName: 't' }, { path: 'd/e/y', content: 'y' }]);
  let tree = buildMergedTree([lower]);
  assert.equal(entryOf(find(tree.root, 'd')!).type, 'dir');
  assert.deepEqual(names(tree.root, 'd/e'), ['y']);
  tree = buildMergedTree([layer([{ path: 'd' }, { path: 'd/e' }, { path: 'd/e/x', content: 'x' }]), layer([{ path: '.wh.d', content: '' }, { path: 'd/e/z', content: 'z' }])]);
  assert.deepEqual(names(tree.root, 'd/e'), ['z']);
  assert.equal(tree.inodeCount, 4); // root, d, e, z
});

test('hardlinks share one inode with the right nlink; a whited-out name keeps the other link', () => {
  const l0 = layer([
    { path: 'bin' },
    { path: 'bin/a', content: 'same' },
    { path: 'bin/b', type: 'hardlink', linkName: 'bin/a' },
    { path: 'bin/c', type: 'hardlink', linkName: 'bin/a' },
  ]);
  let tree = buildMergedTree([l0]);
  const a = find(tree.root, 'bin/a')!;
  assert.equal(find(tree.root, 'bin/b'), a);
  assert.equal(a.nlink, 3);
  tree = buildMergedTree([l0, layer([{ path: 'bin/.wh.a', content: '' }])]);
  assert.equal(find(tree.root, 'bin/b')!.nlink, 2);
  assert.equal(tree.inodeCount, 3); // root, bin, the file
});

test('inode numbers are stable across builds of the same layers', () => {
  const specs: SpecEntry[] = [{ path: 'a' }, { path: 'a/b', content: '1' }, { path: 'c', type: 'fifo' }];
  const t1 = buildMergedTree([layer(specs)]);
  const t2 = buildMergedTree([layer(specs)]);
  assert.equal(find(t1.root, 'a/b')!.ino, find(t2.root, 'a/b')!.ino);
  assert.equal(find(t1.root, 'c')!.ino, find(t2.root, 'c')!.ino);
  assert.equal(t1.root.ino, 1);
});

test('overlay layer tree: whiteouts are 0/0 char devices, opaque dirs carry trusted.overlay.opaque', () => {
  const idx = layer([
    { path: 'etc' },
    { path: 'etc/.wh.gone', content: '' },
    { path: 'etc/kept', content: 'k' },
    { path: 'etc/.wh.kept', content: '' },
    { path: 'opq/.wh..wh..opq', content: '' },
    { path: 'opq/mine', content: 'm' },
  ]);
  const tree = buildLayerTree(idx, 0);
  const gone = find(tree.root, 'etc/gone')!;
  assert.equal(entryOf(gone).type, 'char');
  assert.equal(entryOf(gone).devMajor, 0);
  assert.equal(entryOf(gone).devMinor, 0);
  assert.equal(entryOf(find(tree.root, 'etc/kept')!).type, 'reg');
  assert.deepEqual(names(tree.root, 'etc'), ['gone', 'kept']);
  assert.equal(find(tree.root, 'opq')!.xattrs.get(OVERLAY_OPAQUE_XATTR)?.toString(), 'y');
  assert.deepEqual(names(tree.root, 'opq'), ['mine']);
});

test('unsafe paths from a TOC are rejected', () => {
  for (const path of ['../etc', 'a/../b', '/abs', 'a//b', 'a/./b', 'nul\0x']) {
    assert.throws(() => layer([{ path, content: 'x' }]), TocError, path);
  }
  assert.throws(() => layer([{ path: 'l', type: 'hardlink', linkName: '../x' }]), TocError);
});
