// Hostile TOCs through a real mount: real eStargz and zstd:chunked blobs (written by our writers
// from the checked-in real-file tar) whose TOC is replaced by one naming `../escape`, with the
// layer annotation matching the hostile TOC (an attacker controls both). `starling mount` refuses
// the image with an error naming the entry, leaves nothing mounted and creates no path outside; the
// same blob with its real TOC (control) mounts lazily and serves the tar's bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { decompress } from '@mongodb-js/zstd';
import { BufferBlob } from '../../src/blob/source.js';
import { openEstargz } from '../../src/format/estargz/reader.js';
import { writeEstargz } from '../../src/format/estargz/writer.js';
import { FOOTER_FRAME_SIZE, parseFooter } from '../../src/format/zstdchunked/footer.js';
import { writeZstdChunked } from '../../src/format/zstdchunked/writer.js';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { detachAll, isMountpoint } from '../../src/mount/stale.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { Annotation, MediaType } from '../../src/oci/mediatypes.js';
import { OciLayoutDestination } from '../../src/oci/layout.js';
import type { TocEntry } from '../../src/format/toc.js';
import { CORPUS_DIR } from '../fuzz/targets.js';
import { estargzBlob, zstdChunkedBlob } from './blobs.js';
import { childDigest, CLI, run } from './mount-env.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

let work: string;
let extracted: string;
const mounted: string[] = [];
const env = () => ({ ...process.env, STARLING_RUN_DIR: join(work, 'run') });
const starling = (...args: string[]) => run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: env(), maxBuffer: 16 << 20 });

async function written(write: (tar: Readable, out: Writable) => Promise<{ annotations: Record<string, string>; diffID: Digest }>, tar: Buffer) {
  const parts: Buffer[] = [];
  const out = new Writable({ write: (c: Buffer, _e, cb) => (parts.push(c), cb()) });
  const res = await write(Readable.from([tar]), out);
  return { blob: Buffer.concat(parts), diffID: res.diffID };
}

/** An OCI layout holding a one-layer image with `blob` and its `annotations`. */
async function layout(name: string, blob: Buffer, mediaType: string, annotations: Record<string, string>, diffID: Digest): Promise<string> {
  const dir = join(work, name);
  const dst = await OciLayoutDestination.open(dir, 'v1');
  const put = async (bytes: Buffer, type: string) => {
    const desc = { mediaType: type, digest: sha256(bytes), size: bytes.length };
    const file = join(work, `${name}-${desc.digest.slice(7, 19)}.tmp`); // one file per blob: the layout may link it
    await writeFile(file, bytes);
    await dst.putBlobFile(desc, file);
    return desc;
  };
  const layer = { ...(await put(blob, mediaType)), annotations };
  const config = await put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffID] } })), MediaType.ociConfig);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] }));
  const mdesc = { mediaType: MediaType.ociManifest, digest: sha256(manifest), size: manifest.length };
  await dst.putManifest(mdesc, manifest);
  await dst.setRoot(mdesc);
  return dir;
}

const hostile = (entries: TocEntry[]): TocEntry[] => [...entries, { name: '../escape', type: 'reg', size: 0 }, { name: 'x', type: 'hardlink', linkName: '../../etc/shadow' }];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-hostile-mount-'));
  cleanupOnSignal(work); // after() does not run on a signal
  extracted = join(work, 'extracted');
  await mkdir(extracted);
  await run('tar', ['-xf', join(CORPUS_DIR, 'small-pax.tar'), '-C', extracted]);
});

after(async () => {
  for (const m of mounted) await starling('umount', m, '--force').catch(() => {});
  await detachAll(mounted, [join(work, 'run')]).catch(() => {});
  await rm(work, { recursive: true, force: true });
});

/** The mount is refused with an error naming the bad entry; nothing stays mounted, nothing escapes. */
async function checkRefused(ref: string, name: string): Promise<void> {
  const mnt = join(work, `mnt-${name}`);
  await mkdir(mnt);
  mounted.push(mnt);
  await assert.rejects(starling('mount', ref, mnt, '--cache-dir', join(work, `cache-${name}`), '--no-background-fetch'), (err: Error) => {
    assert.match(err.message, /TOC entry \d+ \("\.\.\/escape"\): TOC entry path "\.\.\/escape" escapes the layer root/);
    return true;
  });
  assert.equal(await isMountpoint(mnt), false, 'no mount left behind');
  assert.deepEqual(await readdir(mnt), []);
  assert.deepEqual((await readdir(work)).filter((n) => n.includes('escape')), []);
}

/** Control: the same blob with its real TOC mounts lazily and serves the tar's bytes. */
async function checkControl(ref: string, name: string): Promise<void> {
  const mnt = join(work, `mnt-${name}`);
  await mkdir(mnt);
  mounted.push(mnt);
  await starling('mount', ref, mnt, '--cache-dir', join(work, `cache-${name}`), '--no-background-fetch');
  try {
    const s = JSON.parse((await starling('stats', mnt, '--json')).stdout) as StatsReport;
    assert.equal(s.layers[0]!.lazy, true);
    for (const f of ['etc/passwd', 'usr/bin/true-head', 'data/holey.bin']) assert.equal(await childDigest(join(mnt, f)), sha256(await readFile(join(extracted, f))), f);
  } finally {
    await starling('umount', mnt);
  }
}

test('eStargz layer with a hostile (but annotated) TOC: the mount is refused naming the entry; the same blob with its real TOC mounts', async () => {
  const tar = await readFile(join(CORPUS_DIR, 'small-pax.tar'));
  const real = await written((t, o) => writeEstargz(t, o, { chunkSize: 8192 }), tar);
  const layer = await openEstargz(new BufferBlob(real.blob));
  const json = JSON.parse(gunzipSync(real.blob.subarray(layer.tocOffset, real.blob.length - 51)).subarray(512).toString('utf8').replace(/\0+$/, '')) as { entries: TocEntry[] };
  const bad = estargzBlob(real.blob.subarray(0, layer.tocOffset), { version: 1, entries: hostile(json.entries) });
  // The new TOC member is a tar member too: the layer's tar is the real entries plus stargz.index.json.
  const diffID = sha256(gunzipSync(bad.blob));
  const dir = await layout('esgz', bad.blob, MediaType.ociLayerGzip, { [Annotation.estargzTocDigest]: bad.tocDigest }, diffID);
  await checkRefused(`oci:${dir}:v1`, 'esgz');
  const good = estargzBlob(real.blob.subarray(0, layer.tocOffset), json);
  await checkControl(`oci:${await layout('esgz-ok', good.blob, MediaType.ociLayerGzip, { [Annotation.estargzTocDigest]: good.tocDigest }, sha256(gunzipSync(good.blob)))}:v1`, 'esgz-ok');
});

test('zstd:chunked layer with a hostile (but checksummed) TOC: the mount is refused naming the entry; the same blob with its real TOC mounts', async () => {
  const tar = await readFile(join(CORPUS_DIR, 'small-pax.tar'));
  const real = await written((t, o) => writeZstdChunked(t, o), tar);
  const footer = parseFooter(real.blob.subarray(-FOOTER_FRAME_SIZE))!;
  const toc = JSON.parse((await decompress(real.blob.subarray(footer.manifest.offset, footer.manifest.offset + footer.manifest.length))).toString()) as { entries: TocEntry[]; tarSplitDigest: string };
  const ts = footer.tarSplit!;
  const tarSplit = { compressed: real.blob.subarray(ts.offset, ts.offset + ts.length), uncompressedLength: ts.uncompressedLength };
  const bad = await zstdChunkedBlob(real.blob.subarray(0, footer.manifest.offset - 8), { ...toc, entries: hostile(toc.entries) }, { tarSplit });
  const dir = await layout('zstd', bad.blob, MediaType.ociLayerZstd, bad.annotations, real.diffID);
  await checkRefused(`oci:${dir}:v1`, 'zstd');
  const good = await zstdChunkedBlob(real.blob.subarray(0, footer.manifest.offset - 8), toc, { tarSplit });
  await checkControl(`oci:${await layout('zstd-ok', good.blob, MediaType.ociLayerZstd, good.annotations, real.diffID)}:v1`, 'zstd-ok');
});
