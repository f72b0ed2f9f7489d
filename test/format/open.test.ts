// openLayerToc / describeLayerFormat: which layers are lazy-capable, in which format, and why not.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { compress } from '@mongodb-js/zstd';
import { BufferBlob } from '../../src/blob/source.js';
import { describeLayerFormat, openLayerToc } from '../../src/format/open.js';
import { parseFooter as parseEstargzFooter } from '../../src/format/estargz/footer.js';
import { TocError } from '../../src/format/toc.js';
import { Annotation, MediaType } from '../../src/oci/mediatypes.js';
import { sha256 } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/types.js';
import { convert as convertEstargz } from './estargz/helpers.js';
import { convertZstd, ensureGoZstdChunked, goZstdChunked } from './zstdchunked/helpers.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);

function desc(blob: Buffer, mediaType: string, annotations?: Record<string, string>): Descriptor {
  return { mediaType, digest: sha256(blob), size: blob.length, annotations };
}

describe('openLayerToc', () => {
  let dir: string;
  let tar: Buffer;
  before(async () => {
    dir = await tempDir('starling-open-');
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

  it("reads an eStargz footer and TOC in one exact request by Starling's TOC offset hint; a wrong hint costs a read, never the TOC", async () => {
    const { blob, result } = await convertEstargz(tar);
    const tocOffset = parseEstargzFooter(blob.subarray(blob.length - 51)).tocOffset;
    assert.equal(result.annotations[Annotation.estargzTocOffset], String(tocOffset));
    const reads = async (hint: string | undefined) => {
      const seen: Array<[number, number]> = [];
      const inner = new BufferBlob(blob);
      const counted = { size: inner.size, description: inner.description, read: (o: number, l: number) => (seen.push([o, l]), inner.read(o, l)), close: () => inner.close() };
      const annotations = { ...result.annotations };
      if (hint === undefined) delete annotations[Annotation.estargzTocOffset];
      else annotations[Annotation.estargzTocOffset] = hint;
      const opened = await openLayerToc(counted, desc(blob, result.mediaType, annotations));
      assert.ok(opened.ok);
      assert.equal(opened.toc.tocDigest, result.tocDigest);
      return seen;
    };
    assert.deepEqual(await reads(String(tocOffset)), [[tocOffset, blob.length - tocOffset]], 'exactly the TOC and the footer');
    // The TOC here is small: without a hint the 64 KiB tail guess holds it too.
    assert.equal((await reads(undefined)).length, 1);
    assert.equal((await reads(String(tocOffset + 10))).length, 2, 'a hint inside the TOC: the footer is believed, the TOC read again');
    assert.deepEqual(await reads('0'), [[0, blob.length]], 'a hint at 0 on a small blob: one read of it all');
    for (const bad of [String(blob.length), String(blob.length + 100), '-1', 'abc', '1e3', '']) {
      assert.deepEqual((await reads(bad)).length, 1, `hint ${JSON.stringify(bad)} is ignored`);
    }
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
