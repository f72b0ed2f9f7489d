// Indexing an image's layers: gzip layers are indexed (those under the minimum size as one span, to
// be fetched whole), others are skipped with the reason, and a layer whose tar the file table cannot
// hold is left to be fetched whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexImageLayers } from '../../src/convert/gzip-index.js';
import { decodeGzipIndex, MAX_SPAN_SIZE } from '../../src/format/gzipindex/encoding.js';
import { OciLayoutSource } from '../../src/oci/layout.js';
import { buildImage } from '../fixtures/image.js';
import { variedData } from '../format/gzipindex/helpers.js';

test('gzip layers are indexed, a small one as one span; uncompressed and unindexable ones skipped with the reason', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-gzip-index-'));
  try {
    const files = { 'data/a.bin': variedData(1 << 20, 31), 'data/b.txt': 'b\n' };
    const gz = await buildImage(join(dir, 'gz'), { layers: [{ files }, { files: { 'small.txt': 'x' } }, { files: { '../escape.txt': variedData(20_000, 32) } }] }, 'latest');
    const tar = await buildImage(join(dir, 'tar'), { layers: [{ files }], compression: 'none' }, 'latest');
    const source = await OciLayoutSource.open(join(dir, 'gz'), 'latest');
    try {
      const seen: number[] = [];
      const results = await indexImageLayers(source, gz.manifests[0]!.manifest.layers, { span: 256 << 10, minLayerSize: 1000, onLayer: (_, i) => seen.push(i) });
      assert.deepEqual(seen, [0, 1, 2]);
      const [big, small, escape] = results;
      assert.ok(big!.indexed);
      assert.deepEqual(big!.index.entries.map((e) => e.path), ['data', 'data/a.bin', 'data/b.txt']);
      assert.deepEqual(await decodeGzipIndex(big!.stored, gz.layers[0]!.descriptor), big!.index);
      assert.ok(big!.index.checkpoints.length >= 4, `${big!.index.checkpoints.length} spans`);
      assert.ok(small!.indexed);
      assert.deepEqual(small!.index.entries.map((e) => e.path), ['small.txt']);
      assert.equal(small!.index.checkpoints.length, 1, 'under the minimum size: one span, the whole layer');
      assert.equal(small!.index.spanSize, MAX_SPAN_SIZE);
      assert.ok(!escape!.indexed && /cannot be indexed: tar entry path "..\/" escapes the layer root/.test(escape!.reason), escape!.indexed ? '' : escape!.reason);
    } finally {
      await source.close();
    }
    const results = await indexImageLayers(await OciLayoutSource.open(join(dir, 'tar'), 'latest'), tar.manifests[0]!.manifest.layers, { span: 256 << 10, minLayerSize: 0 });
    assert.ok(!results[0]!.indexed && /none layer .*only gzip layers are indexed/.test(results[0]!.reason));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
