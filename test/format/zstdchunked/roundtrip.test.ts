// Round trip on real content: our blob decompresses (with Debian's zstd) to the input tar, and every
// entry read back through our reader matches the source tar as an independent parser (tar-stream) sees it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BufferBlob } from '../../../src/blob/source.js';
import { readFileRange } from '../../../src/format/estargz/reader.js';
import { normalizeEntryPath } from '../../../src/format/tar-entry.js';
import { openZstdChunked } from '../../../src/format/zstdchunked/reader.js';
import { Annotation, MediaType } from '../../../src/oci/mediatypes.js';
import { sha256 } from '../../../src/oci/digest.js';
import { realTar, type TarFormat } from '../../fixtures/real-tar.js';
import { readSourceTar } from '../estargz/helpers.js';
import { convertZstd, convertZstdCached } from './helpers.js';
import { tempDir } from '../../helpers/temp-dir.js';

const run = promisify(execFile);

for (const format of ['pax', 'gnu'] as TarFormat[]) {
  describe(`zstd:chunked round trip (${format} tar)`, () => {
    let tarPath: string;
    let tar: Buffer;
    let blob: Buffer;
    let result: Awaited<ReturnType<typeof convertZstd>>['result'];
    before(async () => {
      tarPath = await realTar(format);
      tar = await readFile(tarPath);
      ({ blob, result } = await convertZstdCached(tarPath));
    });

    it('decompresses with the zstd CLI to exactly the input tar', async () => {
      const dir = await tempDir('starling-zc-');
      await writeFile(join(dir, 'layer.zst'), blob);
      const { stdout } = await run('sh', ['-c', `zstd -dcq ${join(dir, 'layer.zst')} | sha256sum`]);
      assert.equal(`sha256:${stdout.split(' ')[0]}`, sha256(tar));
      assert.equal(result.diffID, sha256(tar));
      assert.equal(result.uncompressedSize, tar.length);
    });

    it('reports the blob digest, size, media type and only zstd:chunked annotations', () => {
      assert.equal(result.digest, sha256(blob));
      assert.equal(result.size, blob.length);
      assert.equal(result.mediaType, MediaType.ociLayerZstd);
      assert.deepEqual(Object.keys(result.annotations).sort(), [
        Annotation.zstdChunkedManifestChecksum,
        Annotation.zstdChunkedManifestPosition,
        Annotation.zstdChunkedTarSplitPosition,
      ]);
      assert.equal(result.annotations[Annotation.zstdChunkedManifestChecksum], result.tocDigest);
      assert.equal(result.annotations[Annotation.estargzTocDigest], undefined);
    });

    it('ends with the 64-byte GNUlInUx footer in a skippable frame', () => {
      const tail = blob.subarray(blob.length - 72);
      assert.equal(tail.subarray(0, 8).toString('hex'), '502a4d1840000000');
      assert.equal(tail.subarray(64).toString('latin1'), 'GNUlInUx');
      const [off, len, ulen, type] = result.annotations[Annotation.zstdChunkedManifestPosition]!.split(':').map(Number);
      assert.equal(Number(tail.readBigUInt64LE(8)), off);
      assert.equal(Number(tail.readBigUInt64LE(16)), len);
      assert.equal(Number(tail.readBigUInt64LE(24)), ulen);
      assert.equal(type, 1);
    });

    it('gives every entry back with the source metadata and bytes', async () => {
      const layer = await openZstdChunked(new BufferBlob(blob, 'ours'), result.annotations, { requireChecksum: true });
      assert.equal(layer.format, 'zstd:chunked');
      assert.equal(layer.tocDigest, result.tocDigest);
      const source = await readSourceTar(tar);
      const byPath = new Map(layer.entries.map((e) => [e.path, e]));
      assert.equal(layer.entries.length, source.length);
      const types: Record<string, string> = { file: 'reg', directory: 'dir', symlink: 'symlink', link: 'hardlink', 'character-device': 'char', 'block-device': 'block', fifo: 'fifo' };
      let zerosChunks = 0;
      for (const s of source) {
        const path = normalizeEntryPath(s.name);
        const e = byPath.get(path);
        assert.ok(e, `missing ${path}`);
        assert.equal(e.type, types[s.type], path);
        assert.equal(e.mode, s.mode & 0o7777, path);
        assert.equal(e.uid, s.uid, path);
        assert.equal(e.gid, s.gid, path);
        const mtimeMs = s.pax.mtime ? Math.floor(Number(s.pax.mtime) * 1000) : s.mtimeMs;
        assert.ok(Math.abs(e.mtimeMs - mtimeMs) <= 1, `${path} mtime ${e.mtimeMs} vs ${mtimeMs}`);
        assert.equal(e.devMajor, s.devmajor, path);
        assert.equal(e.devMinor, s.devminor, path);
        if (s.type === 'symlink') assert.equal(e.linkName, s.linkname, path);
        if (s.type === 'link') assert.equal(e.linkName, normalizeEntryPath(s.linkname), path);
        for (const k of Object.keys(s.pax)) {
          if (k.startsWith('SCHILY.xattr.')) assert.ok(e.xattrs.has(k.slice(13)), `${path} lacks xattr ${k}`);
        }
        if (s.type === 'file') {
          assert.equal(e.size, s.size, path);
          const data = await readFileRange(layer, new BufferBlob(blob), e, 0, e.size);
          assert.equal(sha256(data), s.sha256, path);
          zerosChunks += e.chunks.filter((c) => c.zeros).length;
        }
      }
      assert.ok(zerosChunks > 0, 'the 300 KB zero run becomes a zeros chunk');
      const withXattrs = byPath.get('data/xattr-file')!;
      if (format === 'pax') assert.deepEqual(withXattrs.xattrs.get('user.binary'), Buffer.from([0x00, 0xff, 0x10]));
    });

    it('reads a middle range of a multi-chunk file by decoding only the chunks it needs', async () => {
      const layer = await openZstdChunked(new BufferBlob(blob), result.annotations);
      const big = layer.entries.find((e) => e.path === 'data/big.bin')!;
      assert.ok(big.chunks.length > 20);
      const whole = await readFileRange(layer, new BufferBlob(blob), big, 0, big.size);
      const part = await readFileRange(layer, new BufferBlob(blob), big, 5_000_000, 300_000);
      assert.deepEqual(part, whole.subarray(5_000_000, 5_300_000));
    });
  });
}

describe('zstd:chunked writer determinism', () => {
  it('writes the same bytes twice, whatever the in-flight window', async () => {
    const tarPath = await realTar('gnu');
    const a = await convertZstdCached(tarPath);
    const b = await convertZstd(tarPath, { maxInflightBytes: 1 << 20 });
    assert.equal(a.result.digest, b.result.digest);
    assert.ok(a.blob.equals(b.blob));
  });
});
