// Seeded random mutations of a real TOC and of a blob's tail: the reader either opens the layer
// (with its invariants holding) or throws TocError — never another kind of error, never a hang.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { decompress } from '@mongodb-js/zstd';
import { BufferBlob } from '../../../src/blob/source.js';
import { TocError, type FileEntry } from '../../../src/format/toc.js';
import { parseFooter, parseManifestPosition } from '../../../src/format/zstdchunked/footer.js';
import { decodeZstdChunkedToc, openZstdChunked } from '../../../src/format/zstdchunked/reader.js';
import { Annotation } from '../../../src/oci/mediatypes.js';
import { realTar } from '../../fixtures/real-tar.js';
import { convertZstdCached } from './helpers.js';

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return x / 2 ** 32;
  };
}

function checkInvariants(entries: FileEntry[], dataEnd: number): void {
  for (const e of entries) {
    assert.ok(!e.path.split('/').includes('..') && !e.path.includes('\0') && !e.path.startsWith('/'), e.path);
    let pos = 0;
    for (const c of e.chunks) {
      assert.equal(c.fileOffset, pos);
      assert.ok(c.start > 0 && c.start < c.end && c.end <= dataEnd, `${e.path} ${c.start}..${c.end}`);
      pos += c.size;
    }
    if (e.type === 'reg' && e.size > 0) assert.equal(pos, e.size);
  }
}

describe('zstd:chunked reader under random mutation', () => {
  let blob: Buffer;
  let ann: Record<string, string>;
  let toc: { entries: Record<string, unknown>[] };
  let dataEnd: number;
  before(async () => {
    ({ blob, result: { annotations: ann } } = await convertZstdCached(await realTar('gnu')));
    const m = parseManifestPosition(ann[Annotation.zstdChunkedManifestPosition]!, 'p');
    toc = JSON.parse((await decompress(blob.subarray(m.offset, m.offset + m.length))).toString());
    dataEnd = m.offset - 8;
  });

  it('decodeZstdChunkedToc: TocError or a valid layer for 2000 mutated TOCs', () => {
    const rand = rng(1);
    const keys = ['type', 'name', 'linkName', 'mode', 'size', 'uid', 'modtime', 'digest', 'offset', 'endOffset', 'chunkSize', 'chunkOffset', 'chunkDigest', 'chunkType', 'xattrs'];
    const values: unknown[] = [-1, 0, 1, 2 ** 53, 1e300, 'x', '', '../..', '/abs', 'a\0b', null, {}, [], true, 'chunk', 'zeros', 'sha256:00', dataEnd, dataEnd + 1, '1970-01-01T00:00:00Z'];
    let ok = 0;
    for (let round = 0; round < 2000; round++) {
      const t = structuredClone(toc);
      for (let k = 0, n = 1 + Math.floor(rand() * 3); k < n; k++) {
        const e = t.entries[Math.floor(rand() * t.entries.length)]!;
        const key = keys[Math.floor(rand() * keys.length)]!;
        if (rand() < 0.2) delete e[key];
        else e[key] = values[Math.floor(rand() * values.length)];
      }
      try {
        checkInvariants(decodeZstdChunkedToc(t, dataEnd).entries, dataEnd);
        ok++;
      } catch (err) {
        if (!(err instanceof TocError)) throw err;
      }
    }
    assert.ok(ok > 0 && ok < 2000, `${ok} of 2000 mutated TOCs accepted`);
  });

  it('openZstdChunked without annotations: TocError or a valid layer for 300 mutated tails', async () => {
    const rand = rng(2);
    for (let round = 0; round < 300; round++) {
      const bad = Buffer.from(blob);
      for (let k = 0, n = 1 + Math.floor(rand() * 4); k < n; k++) {
        const pos = bad.length - 1 - Math.floor(rand() * 72);
        bad[pos] = Math.floor(rand() * 256);
      }
      try {
        const layer = await openZstdChunked(new BufferBlob(bad), {});
        checkInvariants(layer.entries, layer.tocOffset);
      } catch (err) {
        if (!(err instanceof TocError)) throw new Error(`round ${round}: ${(err as Error).constructor.name}: ${(err as Error).message}`);
      }
    }
    assert.equal(parseFooter(blob.subarray(blob.length - 72))?.size, 64);
  });
});
