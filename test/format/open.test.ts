// openLayerToc / describeLayerFormat: which layers are lazy-capable, in which format, and why not.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { compress } from '@mongodb-js/zstd';
import { BufferBlob } from '../../src/blob/source.js';
import { describeLayerFormat, openLayerToc } from '../../src/format/open.js';
import { TocError } from '../../src/format/toc.js';
import { Annotation, MediaType } from '../../src/oci/mediatypes.js';
import { sha256 } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/types.js';
import { convert as convertEstargz } from './estargz/helpers.js';
import { convertZstd, ensureGoZstdChunked, goZstdChunked } from './zstdchunked/helpers.js';

const run = promisify(execFile);

function desc(blob: Buffer, mediaType: string, annotations?: Record<string, string>): Descriptor {
  return { mediaType, digest: sha256(blob), size: blob.length, annotations };
}

describe('openLayerToc', () => {
  let dir: string;
  let tar: Buffer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'starling-open-'));
    await mkdir(join(dir, 'root/etc'), { recursive: true });
    await writeFile(join(dir, 'root/etc/hello'), 'hello\n');
    await writeFile(join(dir, 'root/etc/bin'), await readFile('/usr/bin/ls'));
    await run('tar', ['-C', join(dir, 'root'), '-cf', join(dir, 'l.tar'), '--format=gnu', 'etc']);
    tar = await readFile(join(dir, 'l.tar'));
  });

  it('opens a zstd:chunked layer through its annotations', async () => {
    const { blob, result } = await convertZstd(tar);
    const d = desc(blob, result.mediaType, result.annotations);
    const info = await describeLayerFormat(new BufferBlob(blob), d);
    assert.deepEqual([info.kind, info.lazy], ['zstd:chunked', true]);
    const opened = await openLayerToc(new BufferBlob(blob), d);
    assert.ok(opened.ok);
    assert.equal(opened.toc.format, 'zstd:chunked');
    assert.equal(opened.toc.tocDigest, result.tocDigest);
    assert.ok(opened.toc.entries.some((e) => e.path === 'etc/bin' && e.chunks.length > 0));
  });

  it('opens an eStargz layer through its TOC digest annotation', async () => {
    const { blob, result } = await convertEstargz(tar);
    const opened = await openLayerToc(new BufferBlob(blob), desc(blob, result.mediaType, result.annotations));
    assert.ok(opened.ok);
    assert.equal(opened.toc.format, 'estargz');
  });

  it('opens a containers/storage 1.43 blob by its legacy io.containers.* annotations', async () => {
    await ensureGoZstdChunked();
    await writeFile(join(dir, 'l.tar'), tar);
    const annotations = JSON.parse(await goZstdChunked(['compress', join(dir, 'l.tar'), join(dir, 'go.zst')])) as Record<string, string>;
    const blob = await readFile(join(dir, 'go.zst'));
    const opened = await openLayerToc(new BufferBlob(blob), desc(blob, MediaType.ociLayerZstd, annotations));
    assert.ok(opened.ok);
    assert.equal(opened.toc.tocDigest, annotations[Annotation.legacyZstdChunkedManifestChecksum]);
  });

  it('says why a layer is not lazy-capable', async () => {
    const zc = await convertZstd(tar);
    const gz = await convertEstargz(tar);
    const cases: [Buffer, Descriptor, RegExp][] = [
      [tar, desc(tar, MediaType.ociLayer), /uncompressed tar layer/],
      [gzipSync(tar), desc(gzipSync(tar), MediaType.dockerLayerGzip), /plain gzip layer/],
      [await compress(tar, 3), desc(await compress(tar, 3), MediaType.ociLayerZstd), /plain zstd layer/],
      [zc.blob, desc(zc.blob, MediaType.ociLayerZstd), /zstd:chunked footer but no io.github.containers.zstd-chunked.manifest-checksum annotation/],
      [gz.blob, desc(gz.blob, MediaType.ociLayerGzip), /eStargz footer but no containerd.io\/snapshot\/stargz\/toc.digest annotation/],
      [zc.blob, desc(zc.blob, MediaType.ociLayerZstd, { [Annotation.estargzTocDigest]: sha256('x') }), /stargz-snapshotter's zstdchunked variant/],
      [tar, desc(tar, 'application/vnd.example.thing'), /not a layer type/],
    ];
    for (const [blob, d, reason] of cases) {
      const opened = await openLayerToc(new BufferBlob(blob), d);
      assert.equal(opened.ok, false, d.mediaType);
      if (!opened.ok) assert.match(opened.reason, reason);
    }
  });

  it('throws when a claimed TOC fails verification', async () => {
    const { blob, result } = await convertZstd(tar);
    const ann = { ...result.annotations, [Annotation.zstdChunkedManifestChecksum]: sha256('tampered') };
    await assert.rejects(openLayerToc(new BufferBlob(blob), desc(blob, result.mediaType, ann)), TocError);
    const gz = await convertEstargz(tar);
    const gzAnn = { ...gz.result.annotations, [Annotation.estargzTocDigest]: sha256('tampered') };
    await assert.rejects(openLayerToc(new BufferBlob(gz.blob), desc(gz.blob, gz.result.mediaType, gzAnn)), TocError);
  });
});
