// Files to prefetch → a layer's chunks: only those overlapping the ranges, in the order of the files,
// hard links followed within the layer, the last entry of a path winning, unknown paths skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_XATTRS, type ChunkRef, type FileEntry } from '../../src/format/toc.js';
import { EntryTable } from '../../src/fs/entry-table.js';
import { chunksOfFiles } from '../../src/fs/prefetch-files.js';
import { sha256 } from '../../src/oci/digest.js';

const K = 1024;

function file(path: string, chunkSizes: number[], type: FileEntry['type'] = 'reg', linkName = ''): FileEntry {
  let offset = 0;
  const chunks: ChunkRef[] = chunkSizes.map((size, i) => {
    const c = { fileOffset: offset, size, start: offset, end: offset + size, innerOffset: 0, digest: sha256(`${path} ${i}`), zeros: false };
    offset += size;
    return c;
  });
  return { path, type, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: offset, linkName, devMajor: 0, devMinor: 0, xattrs: NO_XATTRS, chunks };
}

const name = (path: string, i: number) => sha256(`${path} ${i}`);

test('chunksOfFiles: ranges pick the overlapping chunks; files in the order given; links and duplicates; unknown paths skipped', () => {
  const table = new EntryTable();
  table.add(file('bin', [], 'dir'));
  table.add(file('bin/old', [10 * K]));
  table.add(file('bin/big', [64 * K, 64 * K, 64 * K, 64 * K]));
  table.add(file('bin/old', [20 * K, 20 * K])); // a later entry of the same path wins
  table.add(file('bin/link', [], 'hardlink', 'bin/big'));
  table.seal();
  const got = chunksOfFiles(table, [
    { path: 'bin/old' },
    { path: 'bin/missing' },
    { path: 'bin', ranges: [[0, 1]] },
    { path: 'bin/big', ranges: [[0, 1], [130 * K, 140 * K]] },
    { path: 'bin/link', ranges: [[200 * K, 300 * K]] },
  ]);
  assert.deepEqual(got.map((c) => c.digest), [name('bin/old', 0), name('bin/old', 1), name('bin/big', 0), name('bin/big', 2), name('bin/big', 3)]);
  assert.deepEqual(chunksOfFiles(table, []), []);
});
