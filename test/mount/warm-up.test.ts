import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parseFooter } from '../../src/format/estargz/footer.js';
import { openLayerToc } from '../../src/format/open.js';
import { indexLayer } from '../../src/fs/layer-index.js';
import { buildMergedTree } from '../../src/fs/tree.js';
import { warmUpLayers } from '../../src/mount/warm-up.js';

/** The keys of each entry object of an eStargz blob's TOC JSON, in order, as one string per entry. */
async function tocShapes(blob: { size: number; read(o: number, n: number): Promise<Buffer> }): Promise<Set<string>> {
  const tail = await blob.read(blob.size - 51, 51);
  const footer = parseFooter(tail);
  const tar = gunzipSync(await blob.read(footer.tocOffset, blob.size - footer.footerSize - footer.tocOffset));
  const size = parseInt(tar.subarray(124, 136).toString('latin1').replace(/\0.*$/, '').trim(), 8);
  const toc = JSON.parse(tar.subarray(512, 512 + size).toString()) as { entries: Record<string, unknown>[] };
  return new Set(toc.entries.map((e) => Object.keys(e).join(',')));
}

// The shapes of TOC entry in the benchmark's python, pydata and gcc images (converted by Starling).
// The JIT compiles TOC parsing for the shapes the warm-up shows it; one first met in a mount
// discards the optimised code there (see warm-up.ts).
const REAL_IMAGE_SHAPES = [
  'name,type,size,modtime,mode,offset,digest,chunkDigest', // a file
  'name,type,modtime,mode', // a directory
  'name,type,modtime,linkName,mode', // a symlink
  'name,type,modtime,mode,digest', // an empty file
  'name,type,size,modtime,mode,offset,digest,chunkSize,chunkDigest', // the first chunk of a big file
  'name,type,offset,chunkOffset,chunkSize,chunkDigest', // a middle chunk
  'name,type,offset,chunkOffset,chunkDigest', // the last chunk
  'name,type,size,offset,digest,chunkDigest', // the landmark
];

test('the warm-up layers hold every shape of TOC entry real images have, and other owners, xattrs, hardlinks and devices', { timeout: 60_000 }, async () => {
  const layers = await warmUpLayers();
  assert.deepEqual(
    layers.map((l) => l.desc.mediaType),
    ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd'],
  );
  const shapes = await tocShapes(layers[0]!.blob);
  for (const shape of REAL_IMAGE_SHAPES) assert.ok(shapes.has(shape), `no entry of shape ${shape} in ${[...shapes].join(' | ')}`);
  const keys = new Set([...shapes].flatMap((s) => s.split(',')));
  for (const key of ['uid', 'gid', 'userName', 'groupName', 'xattrs', 'devMajor', 'devMinor']) assert.ok(keys.has(key), `no entry with ${key}`);
  const types = new Set<string>();
  const indexes = [];
  for (const { blob, desc } of layers) {
    const opened = await openLayerToc(blob, desc);
    assert.ok(opened.ok);
    for (const e of opened.toc.entries) types.add(e.type);
    indexes.push(indexLayer(opened.toc.entries, 'warm-up'));
  }
  assert.deepEqual([...types].sort(), ['char', 'dir', 'fifo', 'hardlink', 'reg', 'symlink']);
  // The upper layers whiteout a file in each directory and make one directory opaque: the tree applies both.
  assert.equal(indexes[2]!.whiteouts.length, 10);
  assert.deepEqual(indexes[2]!.opaqueDirs, ['usr/lib/pkg1']);
  const tree = buildMergedTree(indexes);
  const pkg = (n: number) => tree.root.children!.get('usr')!.children!.get('lib')!.children!.get(`pkg${n}`)!;
  assert.equal(pkg(0).children!.has('module_0.py'), false);
  assert.equal(pkg(0).children!.has('module_2.py'), true);
  assert.deepEqual([...pkg(1).children!.keys()].sort(), ['module_1.py', 'module_2.py', 'module_3.py', 'module_4.py', 'module_5.py']);
});
