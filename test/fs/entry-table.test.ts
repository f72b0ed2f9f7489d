import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_XATTRS, type ChunkRef, type FileEntry } from '../../src/format/toc.js';
import { BlobOrder } from '../../src/fs/blob-order.js';
import { EntryTable } from '../../src/fs/entry-table.js';
import { sha256 } from '../../src/oci/digest.js';
import { entry } from './helpers/layer.js';

const chunk = (i: number, over: Partial<ChunkRef> = {}): ChunkRef => ({
  fileOffset: i * 4096,
  size: 4096,
  start: 2 ** 33 + i * 1000, // blob offsets past 4 GiB must survive
  end: 2 ** 33 + (i + 1) * 1000,
  innerOffset: i % 3,
  digest: sha256(Buffer.from(`chunk ${i}`)),
  zeros: false,
  ...over,
});

/** A sealed table of `entries`, sized for them up front (as indexLayer makes it). */
function sized(entries: FileEntry[]): EntryTable {
  const t = new EntryTable(entries.length, entries.reduce((n, e) => n + e.chunks.length, 0));
  for (const e of entries) t.add(e);
  return t.seal();
}

/** An entry as the table gives it back: no user/group names, no whole-file digest. */
const kept = (e: FileEntry): FileEntry => {
  const { userName: _u, groupName: _g, digest: _d, ...rest } = e;
  return rest;
};

test('entry table: every field of every entry type comes back as it went in, across growth and seal', () => {
  const entries: FileEntry[] = [
    entry({ path: '', type: 'dir', mode: 0o755 }),
    entry({ path: 'etc', type: 'dir', mode: 0o700, uid: 5, gid: 6, mtimeMs: 1_234_567_890_123 }),
    { ...entry({ path: 'etc/big', content: 'x' }), size: 3 * 4096, userName: 'root', groupName: 'wheel', chunks: [chunk(0), chunk(1, { zeros: true }), chunk(2)] },
    entry({ path: 'etc/link', type: 'symlink', linkName: '../target/ünïcode' }),
    entry({ path: 'etc/hard', type: 'hardlink', linkName: 'etc/big' }),
    entry({ path: 'dev/tty', type: 'char', devMajor: 4, devMinor: 300 }),
    entry({ path: 'dev/sda', type: 'block', devMajor: 8, devMinor: 0 }),
    entry({ path: 'run/fifo', type: 'fifo', mode: 0o4755, uid: 2 ** 32 - 2, gid: 65534 }),
    entry({ path: 'with/xattrs', type: 'dir', xattrs: { 'user.a': 'b', 'security.capability': '\u0001' } }),
    // A digest of another form is kept as it is rather than mangled into 32 bytes.
    { ...entry({ path: 'odd', content: 'y' }), size: 4096, chunks: [chunk(9, { digest: 'sha512:abcd' as ChunkRef['digest'] })] },
  ];
  for (let i = 0; i < 40; i++) entries.push({ ...entry({ path: `many/f${i}`, content: 'z' }), size: 4096, chunks: [chunk(100 + i)] });
  const grown = new EntryTable(); // no room up front: the columns double as rows come
  for (const e of entries) grown.add(e);
  for (const table of [sized(entries), grown.seal()]) {
    assert.equal(table.length, entries.length);
    entries.forEach((e, row) => {
      assert.deepEqual(table.entry(row), kept(e), e.path);
      assert.equal(table.typeOf(row), e.type);
      assert.equal(table.num(row, 'size'), e.size);
    });
    assert.equal(table.xattrsOf(0), NO_XATTRS);
    assert.equal(table.xattrsOf(8).get('user.a')?.toString(), 'b');
  }
});

test('entry table: the prioritised prefix; blob order sorts fetchable chunks by offset, once each, and counts what is left', () => {
  const entries = [
    { ...entry({ path: 'b', content: 'x' }), size: 4096, chunks: [chunk(2)] },
    { ...entry({ path: 'a', content: 'x' }), size: 8192, chunks: [chunk(0), chunk(1)] },
    entry({ path: 'd', type: 'dir' }),
    { ...entry({ path: 'dup', content: 'x' }), size: 4096, chunks: [chunk(1)] },
    { ...entry({ path: 'z', content: 'x' }), size: 4096, chunks: [{ ...chunk(3), zeros: true }] },
  ];
  const table = sized(entries);
  assert.deepEqual(table.chunksBefore(chunk(2).start), [chunk(0), chunk(1), chunk(1)]);
  const order = new BlobOrder(table);
  assert.deepEqual(Array.from({ length: order.length }, (_, i) => order.chunk(i).digest), [chunk(0), chunk(1), chunk(2)].map((c) => c.digest));
  assert.equal(order.positionAt(chunk(1).start), 1);
  assert.equal(order.positionAt(chunk(1).start + 1), 2);
  assert.equal(order.positionAt(chunk(2).end), 3);
  const bytes = (c: ReturnType<typeof chunk>) => c.end - c.start;
  assert.equal(order.totalBytes, bytes(chunk(0)) + bytes(chunk(1)) + bytes(chunk(2)));
  order.markAt(chunk(1).start);
  order.markAt(chunk(1).start); // once
  order.markAt(chunk(1).start + 1); // no chunk starts there
  assert.equal(order.remainingBytes, bytes(chunk(0)) + bytes(chunk(2)));
  assert.deepEqual([0, 1, 2].map((p) => order.isMarked(p)), [false, true, false]);
  assert.deepEqual(table.chunksBefore(0), []);
});
