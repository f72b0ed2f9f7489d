// Interop with the Go reference (Debian's containers/storage 1.43, test/interop/zstdchunked):
// its manifest reader reads our blobs and verifies every chunk; our reader reads blobs written by
// its ZstdCompressor (older layout: io.containers.* keys, 40-byte GnUlInUx footer, no tar-split);
// and both cut the same chunks from the same content.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { BufferBlob } from '../../../src/blob/source.js';
import { readFileRange } from '../../../src/format/estargz/reader.js';
import { normalizeEntryPath } from '../../../src/format/tar-entry.js';
import type { LayerToc } from '../../../src/format/toc.js';
import { openZstdChunked } from '../../../src/format/zstdchunked/reader.js';
import { ContentChunker } from '../../../src/format/zstdchunked/rollsum.js';
import { Annotation } from '../../../src/oci/mediatypes.js';
import { sha256 } from '../../../src/oci/digest.js';
import { realTar } from '../../fixtures/real-tar.js';
import { readSourceTar } from '../estargz/helpers.js';
import { convertZstdCached, ensureGoZstdChunked, goZstdChunked } from './helpers.js';
import { tempDir } from '../../helpers/temp-dir.js';

interface GoChunk {
  offset: number;
  size: number;
  type: string;
}

/** Our chunker's cuts for `data` fed in pieces of `piece` bytes, in the Go program's shape. */
function ourChunks(data: Buffer, piece = 65536): GoChunk[] {
  const out: GoChunk[] = [];
  let offset = 0;
  let size = 0;
  let zeros = false;
  const chunker = new ContentChunker({
    data: (b) => {
      size += b.length;
    },
    zeros: (n) => {
      size += n;
      zeros = true;
    },
    cut: () => {
      if (size === 0) return;
      out.push({ offset, size, type: zeros ? 'zeros' : '' });
      offset += size;
      size = 0;
      zeros = false;
    },
  });
  for (let i = 0; i < data.length; i += piece) chunker.push(data.subarray(i, i + piece));
  chunker.finish();
  return out;
}

function chunking(layer: LayerToc): Map<string, unknown[]> {
  return new Map(layer.entries.filter((e) => e.type === 'reg').map((e) => [e.path, e.chunks.map((c) => [c.fileOffset, c.size, c.zeros, c.digest])]));
}

describe('zstd:chunked interop with containers/storage 1.43', () => {
  let dir: string;
  let goBlob: Promise<{ blob: Buffer; annotations: Record<string, string> }> | undefined;
  /** realTar('gnu') compressed by the Go ZstdCompressor, once. */
  const goCompressed = () =>
    (goBlob ??= (async () => {
      const goPath = join(dir, 'go-gnu.zst');
      const annotations = JSON.parse(await goZstdChunked(['compress', await realTar('gnu'), goPath])) as Record<string, string>;
      return { blob: await readFile(goPath), annotations };
    })());
  before(async () => {
    await ensureGoZstdChunked();
    dir = await tempDir('starling-zc-interop-');
  });

  for (const format of ['pax', 'gnu'] as const) {
    it(`containers/storage's manifest reader reads our blob (${format} tar) and every chunk verifies`, async () => {
      const tarPath = await realTar(format);
      const { blob, result } = await convertZstdCached(tarPath);
      const path = join(dir, `ours-${format}.zst`);
      await writeFile(path, blob);
      const out = await goZstdChunked(['read', path, result.annotations[Annotation.zstdChunkedManifestChecksum]!, result.annotations[Annotation.zstdChunkedManifestPosition]!]);
      const lines = out.trim().split('\n').map((l) => JSON.parse(l));
      const summary = lines.pop() as { files: number; chunks: number; entries: number };
      const layer = await openZstdChunked(new BufferBlob(blob), result.annotations);
      const regs = layer.entries.filter((e) => e.type === 'reg');
      assert.equal(summary.files, regs.length);
      assert.equal(summary.entries, result.entryCount);
      assert.equal(summary.chunks, regs.reduce((n, e) => n + e.chunks.length, 0));
      // 1.43's unmarshalToc keeps names as raw JSON string content (escapes such as \t not decoded).
      const goName = (raw: string) => normalizeEntryPath(JSON.parse(`"${raw}"`) as string);
      const goDigests = new Map(lines.map((l: { name: string; digest: string }) => [goName(l.name), l.digest]));
      for (const e of regs) assert.equal(goDigests.get(e.path), e.size > 0 ? e.digest : sha256(Buffer.alloc(0)), e.path);
    });
  }

  it('reads blobs written by the Go ZstdCompressor, through its annotations and through its 40-byte footer alone', async () => {
    const tarPath = await realTar('gnu');
    const { blob, annotations } = await goCompressed();
    assert.ok(annotations[Annotation.legacyZstdChunkedManifestChecksum], 'Go 1.43 writes the io.containers.* keys');
    assert.equal(blob.subarray(blob.length - 8).toString('latin1'), 'GnUlInUx');
    const source = await readSourceTar(tarPath);
    for (const ann of [annotations, {}]) {
      const layer = await openZstdChunked(new BufferBlob(blob, 'go blob'), ann);
      assert.equal(layer.tocDigest, annotations[Annotation.legacyZstdChunkedManifestChecksum]);
      const byPath = new Map(layer.entries.map((e) => [e.path, e]));
      for (const s of source) {
        const e = byPath.get(normalizeEntryPath(s.name));
        assert.ok(e, s.name);
        if (s.type !== 'file') continue;
        const data = await readFileRange(layer, new BufferBlob(blob), e, 0, e.size);
        assert.equal(sha256(data), s.sha256, s.name);
      }
    }
  });

  it('cuts exactly the chunks the Go compressor cuts, file by file, on the same tar', async () => {
    const tarPath = await realTar('gnu');
    const ours = await convertZstdCached(tarPath);
    const go = await goCompressed();
    const theirs = await openZstdChunked(new BufferBlob(go.blob), go.annotations);
    const mine = await openZstdChunked(new BufferBlob(ours.blob), ours.result.annotations);
    const a = chunking(mine);
    const b = chunking(theirs);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [path, chunks] of a) assert.deepEqual(chunks, b.get(path), path);
    assert.ok([...a.values()].some((c) => c.length > 50), 'some file has many chunks');
  });

  it('cuts the same chunks as the Go compressor for zero runs around the 1024-byte hole threshold', async () => {
    // Pseudo-random bytes (no zeros) with zero runs of 1023, 1024, 5000 bytes, a leading and a trailing hole.
    let x = 12345;
    const rnd = (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        b[i] = (x >>> 16) % 255 + 1;
      }
      return b;
    };
    const zeros = (n: number) => Buffer.alloc(n);
    const data = Buffer.concat([zeros(2000), rnd(200_000), zeros(1023), rnd(90_000), zeros(1024), rnd(70_000), zeros(5000), rnd(150_000), zeros(700), rnd(1000), zeros(3000)]);
    const file = join(dir, 'holes.bin');
    await writeFile(file, data);
    const real = join(dirname(await realTar('gnu')), 'root/data/with-zeros.bin');
    for (const f of [file, real]) {
      const go = JSON.parse(await goZstdChunked(['chunks', f])) as GoChunk[];
      const content = await readFile(f);
      assert.deepEqual(ourChunks(content), go, f);
      assert.deepEqual(ourChunks(content, 1), go, `${f} fed byte by byte`);
      assert.deepEqual(ourChunks(content, 1000), go, `${f} fed in 1000-byte pieces`);
    }
  });
});
