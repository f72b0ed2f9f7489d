// Warms up a spare daemon (the host's, host-spare.ts, and the snapshotter's) before it is needed:
// TOC parsing, layer indexing and the trees (merged, and per layer for containerd) run faster on a
// warm JIT. So the spare writes small synthetic layers in each lazy format and opens, indexes and
// merges them a few times, as a mount does with its layers.
// The layers hold every shape of entry real images have (measured: the python benchmark image's
// TOCs have 9 shapes of entry object): the JIT compiles for the shapes it has seen, and a shape
// first seen in a mount throws the optimised code away there (--trace-deopt of a daemon: buildEntries
// "wrong map", indexLayer and the tree "insufficient type feedback"), the big layer then running
// unoptimised (python's mount in the daemon: 382-564 ms before, 350-424 ms with these layers).
import { Readable, Writable } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { BufferBlob } from '../blob/source.js';
import { writeEstargz } from '../format/estargz/writer.js';
import { openLayerToc } from '../format/open.js';
import type { LayerWriteResult } from '../format/writer.js';
import { writeZstdChunked } from '../format/zstdchunked/writer.js';
import { indexLayer } from '../fs/layer-index.js';
import { buildLayerTree, buildMergedTree } from '../fs/tree.js';
import type { Descriptor } from '../oci/types.js';

const DIRS = 10;
const FILES_PER_DIR = 50;
const ROUNDS = 10;
/** eStargz chunk size of the warm-up layers: small, so that one file of a few chunks has the chunk entries of a big file. */
const CHUNK = 16 << 10;

const MTIME = new Date('2024-05-01T12:00:00Z');

/** A tar header (name required) and the file's bytes. */
type Entry = [Partial<Header> & Pick<Header, 'name'>, Buffer?];

/**
 * The lower layer: directories a few levels deep of small files, with empty files, symlinks,
 * hardlinks, files of another owner (with user and group names), an xattr, a file of several
 * chunks, a device and a fifo among them.
 */
function lowerEntries(): Entry[] {
  const out: Entry[] = [];
  const body = Buffer.alloc(300, 'warm-up ');
  out.push([{ name: 'usr', type: 'directory', mode: 0o755, mtime: MTIME }], [{ name: 'usr/lib', type: 'directory', mode: 0o755, mtime: MTIME }]);
  for (let d = 0; d < DIRS; d++) {
    const dir = `usr/lib/pkg${d}`;
    out.push([{ name: dir, type: 'directory', mode: 0o755, mtime: MTIME }], [{ name: `${dir}/sub`, type: 'directory', mode: 0o755, mtime: MTIME }]);
    for (let f = 0; f < FILES_PER_DIR; f++) {
      const name = `${dir}/${f % 5 === 4 ? 'sub/' : ''}module_${f}.py`;
      if (f % 10 === 9) out.push([{ name: `${name}.link`, type: 'symlink', linkname: `module_${f - 1}.py`, mode: 0o777, mtime: MTIME }]);
      else if (f % 25 === 7) out.push([{ name, mode: 0o644, mtime: MTIME }, Buffer.alloc(0)]);
      else if (f % 25 === 13) out.push([{ name, type: 'link', linkname: `${dir}/module_${f - 1}.py`, mode: 0o644, mtime: MTIME }]);
      else if (f === 21) out.push([{ name, mode: 0o640, uid: 1000, gid: 1000, uname: 'app', gname: 'app', mtime: MTIME }, body]);
      else if (f === 22) out.push([{ name, mode: 0o644, mtime: MTIME, pax: { 'SCHILY.xattr.user.starling': 'warm-up' } }, body]);
      else out.push([{ name, mode: f % 3 === 0 ? 0o755 : 0o644, mtime: MTIME }, body]);
    }
  }
  out.push([{ name: 'usr/lib/pkg0/big.so', mode: 0o755, mtime: MTIME }, Buffer.alloc(3 * CHUNK + 100, 'chunked ')]);
  out.push([{ name: 'usr/lib/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666, mtime: MTIME }]);
  out.push([{ name: 'usr/lib/fifo', type: 'fifo', mode: 0o600, mtime: MTIME }]);
  return out;
}

/** The upper layer: whiteouts, an opaque directory, a file replaced, new files. */
function upperEntries(): Entry[] {
  const body = Buffer.alloc(200, 'upper ');
  const out: Entry[] = [[{ name: 'usr/lib/pkg1/.wh..wh..opq', mode: 0o644, mtime: MTIME }, Buffer.alloc(0)]];
  for (let d = 0; d < DIRS; d++) {
    out.push([{ name: `usr/lib/pkg${d}/.wh.module_0.py`, mode: 0o644, mtime: MTIME }, Buffer.alloc(0)]);
    for (let f = 1; f < 6; f++) out.push([{ name: `usr/lib/pkg${d}/module_${f}.py`, mode: 0o644, mtime: MTIME }, body]);
  }
  return out;
}

function tarOf(entries: Entry[]): Readable {
  const tar = pack();
  for (const [header, body] of entries) {
    if (body) tar.entry(header, body);
    else tar.entry(header);
  }
  tar.finalize();
  return Readable.from(tar);
}

async function written(entries: Entry[], write: (tar: Readable, out: Writable) => Promise<LayerWriteResult>): Promise<WarmUpLayer> {
  const parts: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      parts.push(chunk);
      done();
    },
  });
  const { mediaType, digest, size, annotations } = await write(tarOf(entries), out);
  return { blob: new BufferBlob(Buffer.concat(parts), 'warm-up layer'), desc: { mediaType, digest, size, annotations } };
}

export interface WarmUpLayer {
  blob: BufferBlob;
  desc: Descriptor;
}

/** The synthetic layers, lower then upper, each as eStargz and as zstd:chunked. */
export async function warmUpLayers(): Promise<WarmUpLayer[]> {
  const layers = [];
  // Level 1: the writers spend ~1 ms a member at their default levels, and only the parsing is to be warmed.
  for (const entries of [lowerEntries(), upperEntries()]) {
    layers.push(await written(entries, (t, o) => writeEstargz(t, o, { level: 1, chunkSize: CHUNK })), await written(entries, (t, o) => writeZstdChunked(t, o, { level: 1 })));
  }
  return layers;
}

/**
 * Writes the synthetic layers, then opens, indexes and merges them (and builds each one's tree)
 * ROUNDS times; stops between rounds once `stop()` says so (the spare was handed a mount).
 */
export async function warmUpMounting(stop: () => boolean): Promise<void> {
  const layers = await warmUpLayers();
  for (let round = 0; round < ROUNDS && !stop(); round++) {
    const indexes = [];
    for (const { blob, desc } of layers) {
      const opened = await openLayerToc(blob, desc);
      if (!opened.ok) throw new Error(`the warm-up layer did not open: ${opened.reason}`);
      indexes.push(indexLayer(opened.toc.entries, 'warm-up layer'));
    }
    buildMergedTree(indexes);
    indexes.forEach((index, i) => buildLayerTree(index, i));
    // Between rounds the JIT compiles on its own thread; a claim arriving meanwhile is answered.
    await new Promise((r) => setTimeout(r, 10));
  }
}
