// Warms up the host's spare daemon (host-spare.ts) before it is needed: TOC parsing, layer indexing
// and the merged tree run faster on a warm JIT (the python benchmark image's four layers, opened and
// merged: 190-210 ms in a fresh process, 120-145 ms after this warm-up, which costs ~1 s of CPU with
// the module loading). So the spare writes a small synthetic layer in each lazy format and opens
// them a few times, as a mount does with the layers it is given.
import { Readable, Writable } from 'node:stream';
import { pack } from 'tar-stream';
import { BufferBlob } from '../blob/source.js';
import { writeEstargz } from '../format/estargz/writer.js';
import { openLayerToc } from '../format/open.js';
import type { LayerWriteResult } from '../format/writer.js';
import { writeZstdChunked } from '../format/zstdchunked/writer.js';
import { indexLayer } from '../fs/layer-index.js';
import { buildMergedTree } from '../fs/tree.js';

const DIRS = 10;
const FILES_PER_DIR = 50;
const ROUNDS = 10;

/** A tar of DIRS directories of FILES_PER_DIR small files, some symlinks among them. */
function syntheticTar(): Readable {
  const tar = pack();
  const body = Buffer.alloc(300, 'warm-up ');
  for (let d = 0; d < DIRS; d++) {
    tar.entry({ name: `usr/lib/pkg${d}`, type: 'directory', mode: 0o755 });
    for (let f = 0; f < FILES_PER_DIR; f++) {
      const name = `usr/lib/pkg${d}/module_${f}.py`;
      if (f % 10 === 9) tar.entry({ name: `${name}.link`, type: 'symlink', linkname: `module_${f - 1}.py` });
      else tar.entry({ name, mode: 0o644, mtime: new Date(0) }, body);
    }
  }
  tar.finalize();
  return Readable.from(tar);
}

async function written(write: (tar: Readable, out: Writable) => Promise<LayerWriteResult>): Promise<{ blob: Buffer; result: LayerWriteResult }> {
  const parts: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      parts.push(chunk);
      done();
    },
  });
  const result = await write(syntheticTar(), out);
  return { blob: Buffer.concat(parts), result };
}

/**
 * Writes the synthetic layer as eStargz and as zstd:chunked, then opens, indexes and merges both
 * ROUNDS times; stops between rounds once `stop()` says so (the spare was handed a mount).
 */
export async function warmUpMounting(stop: () => boolean): Promise<void> {
  // Level 1: the writers spend ~1 ms a member at their default levels, and only the parsing is to be warmed.
  const layers = [await written((t, o) => writeEstargz(t, o, { level: 1 })), await written((t, o) => writeZstdChunked(t, o, { level: 1 }))];
  for (let round = 0; round < ROUNDS && !stop(); round++) {
    const indexes = [];
    for (const { blob, result } of layers) {
      const desc = { mediaType: result.mediaType, digest: result.digest, size: result.size, annotations: result.annotations };
      const opened = await openLayerToc(new BufferBlob(blob, 'warm-up layer'), desc);
      if (!opened.ok) throw new Error(`the warm-up layer did not open: ${opened.reason}`);
      indexes.push(indexLayer(opened.toc.entries, 'warm-up layer'));
    }
    buildMergedTree(indexes);
    // Between rounds the JIT compiles on its own thread; a claim arriving meanwhile is answered.
    await new Promise((r) => setTimeout(r, 10));
  }
}
