// Conversion and pull under hostile input and registry faults: a hostile tar is refused by
// convertLayer in both formats with nothing written; a conversion or pull that fails half-way
// (registry storm, resets) leaves nothing that looks complete — no tag at the destination registry,
// no index.json in an OCI layout, no DIR — and the same command completes once the registry behaves.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { FileBlob } from '../../src/blob/source.js';
import { convertLayer } from '../../src/convert/layer.js';
import { openEstargz } from '../../src/format/estargz/reader.js';
import { openZstdChunked } from '../../src/format/zstdchunked/reader.js';
import type { ImageManifest } from '../../src/oci/types.js';
import { childDigest, startMountEnv, testFiles, type MountEnv } from './mount-env.js';
import { sha256 } from '../../src/oci/digest.js';

let env: MountEnv;

before(async () => {
  env = await startMountEnv({ files: testFiles(6, 300_000), images: { src: 'estargz' }, proxy: true });
});

after(async () => {
  await env?.cleanup();
});

type Entry = { name: string; type?: 'file' | 'symlink' | 'link' | 'directory'; linkname?: string; content?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) {
    const isFile = (e.type ?? 'file') === 'file';
    const content = e.content ?? '';
    if (isFile) p.entry({ name: e.name, type: 'file', size: content.length }, content);
    else p.entry({ name: e.name, type: e.type!, size: 0, ...(e.linkname ? { linkname: e.linkname } : {}) });
  }
  p.finalize();
  const parts: Buffer[] = [];
  for await (const b of p as AsyncIterable<Buffer>) parts.push(b);
  return Buffer.concat(parts);
}

const base: Entry[] = [{ name: 'ok', content: 'fine' }];
const HOSTILE: [string, Entry[]][] = [
  ['a name with ..', [...base, { name: '../escape', content: 'owned' }]],
  ['a name that climbs out through a subdirectory', [...base, { name: 'a/../../escape', content: 'owned' }]],
  ['a hardlink to a target outside', [...base, { name: 'h', type: 'link', linkname: '../../etc/passwd' }]],
];

for (const format of ['estargz', 'zstd:chunked'] as const) {
  test(`convertLayer (${format}) refuses hostile tars with a clear error and writes nothing`, async () => {
    const dir = join(env.work, `convert-hostile-${format.replace(':', '-')}`);
    await mkdir(dir, { recursive: true });
    for (const [what, entries] of HOSTILE) {
      const out = join(dir, 'layer.out');
      await assert.rejects(convertLayer(Readable.from([await tarOf(entries)]), out, { format }), (err: Error) => /escapes the layer root|\.\./.test(err.message), what);
      assert.deepEqual(await readdir(dir), [], `${what}: no output or temp file left`);
    }
  });

  test(`convertLayer (${format}): absolute names and symlinks pointing outside stay inside the layer`, async () => {
    const out = join(env.work, `convert-abs-${format.replace(':', '-')}.blob`);
    const tar = await tarOf([...base, { name: '/etc/abs', content: 'abs' }, { name: 'up', type: 'symlink', linkname: '../../../etc/shadow' }]);
    const res = await convertLayer(Readable.from([tar]), out, { format });
    const blob = await FileBlob.open(out);
    try {
      const toc = format === 'estargz' ? await openEstargz(blob, { tocDigest: res.tocDigest }) : await openZstdChunked(blob, res.annotations, { requireChecksum: true });
      const paths = toc.entries.map((e) => e.path);
      assert.ok(paths.includes('etc/abs'), paths.join(','));
      assert.ok(paths.every((p) => !p.startsWith('/') && !p.split('/').includes('..')));
      assert.equal(toc.entries.find((e) => e.path === 'up')!.linkName, '../../../etc/shadow');
    } finally {
      await blob.close();
    }
  });
}

async function manifestStatus(name: string): Promise<number> {
  const res = await fetch(`${env.registry.url}/v2/test/${name}/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  await res.arrayBuffer();
  return res.status;
}

async function layerDigest(): Promise<string> {
  const res = await fetch(`${env.registry.url}/v2/test/src/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return ((await res.json()) as ImageManifest).layers[0]!.digest;
}

test('a conversion registry → registry that fails mid-layer leaves no tag; the re-run completes', async () => {
  const layer = await layerDigest();
  const dst = `docker://${env.registry.host}/test/dst:v1`;
  env.proxy!.inject({ kind: 'status', status: 500, times: Infinity, match: { method: 'GET', path: `/blobs/${layer}` } });
  try {
    await assert.rejects(env.starling('convert', env.ref('src'), dst, '--format', 'zstd:chunked'), (err: Error) => /500|blob/.test(err.message) && err.message.includes(layer));
  } finally {
    env.proxy!.clear();
  }
  assert.equal(await manifestStatus('dst'), 404, 'no manifest under the destination tag');
  await env.starling('convert', env.ref('src'), dst, '--format', 'zstd:chunked');
  assert.equal(await manifestStatus('dst'), 200);
  // The converted image mounts and serves the right bytes.
  const mnt = join(env.work, 'mnt-dst');
  await env.mount(`docker://${env.registry.host}/test/dst:v1`, mnt, '--cache-dir', join(env.work, 'cache-dst'), '--no-background-fetch');
  try {
    for (const [p, content] of env.files) assert.equal(await childDigest(join(mnt, p)), sha256(content), p);
  } finally {
    await env.umount(mnt);
  }
});

test('a conversion into an OCI layout that fails on resets mid-body leaves no index.json; the re-run completes', async () => {
  const layer = await layerDigest();
  const out = join(env.work, 'oci-out');
  env.proxy!.inject({ kind: 'reset-mid-body', times: Infinity, match: { method: 'GET', path: `/blobs/${layer}` } });
  try {
    await assert.rejects(env.starling('convert', env.ref('src'), `oci:${out}:v1`, '--format', 'zstd:chunked'));
  } finally {
    env.proxy!.clear();
  }
  await assert.rejects(lstat(join(out, 'index.json')), { code: 'ENOENT' });
  await env.starling('convert', env.ref('src'), `oci:${out}:v1`, '--format', 'zstd:chunked');
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
  assert.equal(index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'v1');
});

test('a pull that fails on a registry storm leaves no DIR and no temp dir; the re-run completes', async () => {
  const layer = await layerDigest();
  const dir = join(env.work, 'pulled');
  env.proxy!.inject({ kind: 'status', status: 503, times: Infinity, match: { method: 'GET', path: `/blobs/${layer}` } });
  try {
    await assert.rejects(env.starling('pull', env.ref('src'), dir), (err: Error) => err.message.includes(layer));
  } finally {
    env.proxy!.clear();
  }
  await assert.rejects(lstat(dir), { code: 'ENOENT' });
  assert.deepEqual((await readdir(env.work)).filter((n) => n.includes('pulled')), []);
  await env.starling('pull', env.ref('src'), dir);
  for (const [p, content] of env.files) assert.equal(sha256(await readFile(join(dir, p))), sha256(content), p);
});
