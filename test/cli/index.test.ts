// `starling index` end to end on Distribution 2.8 (the referrers tag schema): an unconverted gzip
// image pushed unchanged, indexed and pushed as a referrer, discovered through findGzipIndexes, every
// file of the indexed layer read back through verified spans from the registry; the image's digests
// never change; small layers get one span, non-gzip layers are skipped with the reason; a layer's
// index is there as soon as its own blob is read; --push needs a registry; `starling inspect` shows
// the indexes found and whether they verify.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeGzipIndex, encodeGzipIndex, MAX_SPAN_SIZE } from '../../src/format/gzipindex/encoding.js';
import { GZIP_INDEX_ARTIFACT_TYPE } from '../../src/format/gzipindex/media-types.js';
import { readTarRange } from '../../src/format/gzipindex/span.js';
import type { ImageReport } from '../../src/convert/inspect.js';
import type { LayerGzipIndexReport } from '../../src/convert/inspect-gzip-index.js';
import { findGzipIndexes, gzipIndexArtifact } from '../../src/image/gzip-index-registry.js';
import { registryOf } from '../../src/image/profile-registry.js';
import { listReferrers, pushReferrer, referrersTag } from '../../src/image/referrers.js';
import { digestHex, sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { parseIndex } from '../../src/oci/validate.js';
import { resolveManifest } from '../../src/registry/resolve.js';
import { openImageSource } from '../../src/registry/transport.js';
import type { Descriptor } from '../../src/oci/types.js';
import { buildImage, type BuiltImage } from '../fixtures/image.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { variedData } from '../format/gzipindex/helpers.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));
const T = { timeout: 180_000 };

let registry: RunningRegistry;
let work: string;
let built: BuiltImage;
const ref = () => `docker://${registry.host}/index/app:1`;

const FILES: Record<string, Buffer> = {
  'usr/lib/big.bin': variedData(3 << 20, 21),
  'usr/lib/other.bin': variedData(600_000, 22),
  'etc/conf.txt': Buffer.from('key = value\n'),
};

function starling(...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', cli, ...args], { maxBuffer: 16 << 20 });
}

async function manifestDigest(): Promise<string> {
  const res = await fetch(`${registry.url}/v2/index/app/manifests/1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return res.headers.get('docker-content-digest')!;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-index-test-'));
  registry = await startRegistry();
  built = await buildImage(join(work, 'img'), { layers: [{ files: FILES }, { files: { 'small.txt': 'small layer\n' } }] }, 'latest');
  // Copied as it is: the registry holds the unconverted image with the same digests.
  await run('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${join(work, 'img')}:latest`, `${ref()}`]);
});

after(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('index --push indexes the gzip layers (the small one as one span), pushes a referrer that is found and read back, the image unchanged', T, async () => {
  const before = await manifestDigest();
  assert.equal(before, built.manifests[0]!.descriptor.digest);
  const out = join(work, 'out');
  const { stdout } = await starling('index', ref(), '--span', '64KiB', '--min-layer-size', '1MiB', '--push', '--out', out, '--json');
  const summary = JSON.parse(stdout) as { manifest: string; layers: Array<{ digest: string; entries?: number; spans?: number; skipped?: string }>; referrer: { digest: string; via: string } };
  const [big, small] = built.layers;
  assert.equal(summary.manifest, before);
  assert.equal(summary.layers[0]!.digest, big!.descriptor.digest);
  assert.equal(summary.layers[0]!.entries, 6); // etc/, etc/conf.txt, usr/, usr/lib/, two files
  assert.ok(summary.layers[0]!.spans! >= 20, `${summary.layers[0]!.spans} spans`);
  assert.deepEqual([summary.layers[1]!.digest, summary.layers[1]!.spans, summary.layers[1]!.skipped], [small!.descriptor.digest, 1, undefined]);
  assert.equal(summary.referrer.via, 'tag');
  assert.equal(await manifestDigest(), before, 'the image manifest is unchanged');

  const source = await openImageSource(ref(), { plainHttp: true });
  try {
    const image = await resolveManifest(source);
    const { client, repository } = registryOf(source)!;
    const listed = await listReferrers(client, repository, image.manifestDescriptor.digest, GZIP_INDEX_ARTIFACT_TYPE);
    assert.deepEqual(listed.manifests.map((d) => d.digest), [summary.referrer.digest]);
    const found = await findGzipIndexes(source, image).all;
    assert.deepEqual(found.problems, []);
    assert.equal(found.digest, summary.referrer.digest);
    assert.deepEqual(new Set(found.indexes.keys()), new Set([big!.descriptor.digest, small!.descriptor.digest]));
    const index = found.indexes.get(big!.descriptor.digest)!;
    // The file written by --out is the blob that was pushed.
    const written = await readFile(join(out, `${digestHex(big!.descriptor.digest)}.gzindex`));
    assert.ok((await encodeGzipIndex(index)).equals(written));
    assert.deepEqual(await decodeGzipIndex(written, big!.descriptor), index);
    // What finding them fetched (a mount's metadata totals): the referrers API's 404, the tag
    // schema's index, the artifact's manifest and the two index blobs.
    const tagIndex = await client.getManifest(repository, referrersTag(image.manifestDescriptor.digest));
    const smallStored = await readFile(join(out, `${digestHex(small!.descriptor.digest)}.gzindex`));
    assert.deepEqual(found.fetched, { requests: 5, bytes: tagIndex.bytes.length + listed.manifests[0]!.size + written.length + smallStored.length });
    // Every file, read lazily from the registry through its spans.
    const blob = await source.openBlobSource(big!.descriptor);
    try {
      for (const e of index.entries.filter((x) => x.type === 'reg')) assert.ok((await readTarRange(index, blob, e.offset, e.size)).equals(FILES[e.path]!), e.path);
    } finally {
      await blob.close();
    }
    const smallIndex = found.indexes.get(small!.descriptor.digest)!;
    const smallBlob = await source.openBlobSource(small!.descriptor);
    try {
      const [e] = smallIndex.entries;
      assert.equal(e!.path, 'small.txt');
      assert.equal((await readTarRange(smallIndex, smallBlob, e!.offset, e!.size)).toString(), 'small layer\n');
    } finally {
      await smallBlob.close();
    }
  } finally {
    await source.close();
  }
});

test("a layer's index is there once its own blob is read, not after every blob; a second index of one layer is ignored", T, async () => {
  const repoRef = `docker://${registry.host}/index/parallel:1`;
  await run('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${join(work, 'img')}:latest`, repoRef]);
  const out = join(work, 'parallel-out');
  await starling('index', repoRef, '--span', '64KiB', '--min-layer-size', '1MiB', '--out', out);
  const [big, small] = built.layers.map((l) => l.descriptor) as [Descriptor, Descriptor];
  const stored = async (d: Descriptor) => readFile(join(out, `${digestHex(d.digest)}.gzindex`));
  const [bigStored, smallStored] = [await stored(big), await stored(small)];
  const source = await openImageSource(repoRef, { plainHttp: true });
  try {
    const image = await resolveManifest(source);
    const { client, repository } = registryOf(source)!;
    // The big layer's index first in the artifact, then the small one's, then the big one's again.
    const artifact = gzipIndexArtifact(image.manifestDescriptor, [{ layer: big, stored: bigStored }, { layer: small, stored: smallStored }]);
    const again = { ...artifact.manifest.layers[0]!, annotations: { ...artifact.manifest.layers[0]!.annotations } };
    await pushReferrer(client, repository, { ...artifact, manifest: { ...artifact.manifest, layers: [...artifact.manifest.layers, again] } });
  } finally {
    await source.close();
  }
  // Through a proxy that holds the big index blob's answer for 5 s: the small layer's index must not wait for it.
  const proxy = await startFaultProxy(registry.url);
  const held = await openImageSource(`docker://${proxy.host}/index/parallel:1`, { plainHttp: true });
  try {
    const image = await resolveManifest(held);
    proxy.inject({ kind: 'delay', ms: 5000, match: { path: `/blobs/${sha256(bigStored)}` } });
    const search = findGzipIndexes(held, image);
    const bigAnswered = () => proxy.log.some((r) => r.path.includes(`/blobs/${sha256(bigStored)}`) && r.status !== undefined);
    const smallIndex = await search.layer(small.digest);
    assert.ok('index' in smallIndex && smallIndex.index.checkpoints.length === 1);
    assert.equal(bigAnswered(), false, 'the small layer waited for the held big blob');
    const bigIndex = await search.layer(big.digest);
    assert.ok('index' in bigIndex && bigIndex.index.layerDigest === big.digest);
    const found = await search.all;
    assert.deepEqual(found.problems, [`index blob ${sha256(bigStored)}: a second index of layer ${big.digest}, ignored`]);
    assert.equal(proxy.log.filter((r) => r.path.includes(`/blobs/${sha256(bigStored)}`)).length, 1, 'the second index of the layer is not read');
  } finally {
    await held.close();
    await proxy.stop();
  }
});

test('index of an oci: layout writes files; --push there is refused; a bad --span is a usage error', T, async () => {
  const out = join(work, 'layout-out');
  const { stdout } = await starling('index', `oci:${join(work, 'img')}:latest`, '--min-layer-size', '1MiB', '--out', out);
  assert.match(stdout, /indexed 2 of 2 layers/);
  const index = await decodeGzipIndex(await readFile(join(out, `${digestHex(built.layers[0]!.descriptor.digest)}.gzindex`)), built.layers[0]!.descriptor);
  assert.equal(index.checkpoints.length, 1); // 3.6 MiB of tar: one 4 MiB span
  await assert.rejects(starling('index', `oci:${join(work, 'img')}:latest`, '--push'), (err: { code: number; stderr: string }) => err.code === 2 && /--push: .* is not in a registry/.test(err.stderr));
  await assert.rejects(starling('index', ref(), '--span', '1k'), (err: { code: number; stderr: string }) => err.code === 2 && /--span must be 64KiB to 64MiB/.test(err.stderr));
});

const reasonOf = (g: LayerGzipIndexReport | undefined) => (g && 'reason' in g ? g.reason : '');

test('inspect shows per layer whether a gzip index exists, its spans, and whether it verifies (subject, layer digest and size)', T, async () => {
  const repoRef = `docker://${registry.host}/index/inspect:1`;
  await run('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${join(work, 'img')}:latest`, repoRef]);
  const [big, small] = built.layers.map((l) => l.descriptor) as [Descriptor, Descriptor];
  const inspect = async () => {
    const { stdout } = await starling('inspect', repoRef, '--json');
    const m = (JSON.parse(stdout) as ImageReport).manifests[0]!;
    return { summary: m.gzipIndexes, big: m.layers[0]!.gzipIndex, small: m.layers[1]!.gzipIndex };
  };

  // No index yet: both plain gzip layers say so.
  let r = await inspect();
  assert.deepEqual([r.summary?.referrer, r.summary?.via], [null, 'tag']);
  assert.deepEqual([r.big?.state, r.small?.state], ['none', 'none']);
  assert.match(reasonOf(r.big), /no gzip index refers to sha256:/);

  // Indexed: both indexes verify, the small layer's as one span.
  const out = join(work, 'inspect-out');
  const indexed = JSON.parse((await starling('index', repoRef, '--span', '64KiB', '--min-layer-size', '1MiB', '--push', '--out', out, '--json')).stdout) as { referrer: { digest: string }; layers: Array<{ spans?: number }> };
  const stored = await readFile(join(out, `${digestHex(big.digest)}.gzindex`));
  r = await inspect();
  assert.deepEqual(r.summary, { referrer: indexed.referrer.digest, via: 'tag', problems: [] });
  assert.deepEqual(r.big, { state: 'verified', blob: { digest: sha256(stored), size: stored.length }, spans: indexed.layers[0]!.spans, spanSize: 64 << 10, entries: 6 });
  const smallStored = await readFile(join(out, `${digestHex(small.digest)}.gzindex`));
  assert.deepEqual(r.small, { state: 'verified', blob: { digest: sha256(smallStored), size: smallStored.length }, spans: 1, spanSize: MAX_SPAN_SIZE, entries: 1 });
  const text = (await starling('inspect', repoRef)).stdout;
  assert.match(text, new RegExp(`\\n {4}gzip index referrer ${indexed.referrer.digest} \\(via the referrers tag\\)\\n {4}#0 ${big.digest} .*\\n {7}gzip index ${sha256(stored)} .* ${indexed.layers[0]!.spans} spans of 64.0 KiB, 6 entries, verified against the layer\\n {4}#1 ${small.digest} .*\\n {7}gzip index ${sha256(smallStored)} .* 1 spans of 64.0 MiB, 1 entries, verified against the layer`));

  // A newer referrer whose blob for the large layer is the small layer's index: refused for its digest and size; shown, not a failure.
  await starling('index', `oci:${join(work, 'img')}:latest`, '--min-layer-size', '0', '--out', out);
  const wrong = await readFile(join(out, `${digestHex(small.digest)}.gzindex`));
  const source = await openImageSource(repoRef, { plainHttp: true });
  try {
    const image = await resolveManifest(source);
    const { client, repository } = registryOf(source)!;
    const subject = image.manifestDescriptor;
    const pushed = await pushReferrer(client, repository, gzipIndexArtifact(subject, [{ layer: big, stored: wrong }], new Date('2100-01-01T00:00:00Z')));
    r = await inspect();
    assert.equal(r.summary?.referrer, pushed.descriptor.digest);
    assert.equal(r.big?.state, 'refused');
    assert.deepEqual(r.big && 'blob' in r.big && r.big.blob, { digest: sha256(wrong), size: wrong.length });
    assert.match(reasonOf(r.big), new RegExp(`its gzip index was refused: .*it is the index of ${small.digest}`));
    // That referrer has no blob for the small layer.
    assert.equal(r.small?.state, 'none');
    assert.match(reasonOf(r.small), new RegExp(`gzip index ${pushed.descriptor.digest} has none for this layer`));
    const shown = await starling('inspect', repoRef);
    assert.match(shown.stdout, new RegExp(`\\n {7}gzip index ${sha256(wrong)} .* REFUSED: its gzip index was refused: `));

    // Newest of all, listed under this image's referrers tag but the index of another manifest: refused as a whole.
    const other = { ...subject, digest: sha256('another image') };
    const foreign = gzipIndexArtifact(other, [{ layer: big, stored }], new Date('2101-01-01T00:00:00Z'));
    const { descriptor } = await pushReferrer(client, repository, foreign);
    const tag = parseIndex((await client.getManifest(repository, referrersTag(subject.digest))).bytes);
    await client.putManifest(repository, referrersTag(subject.digest), MediaType.ociIndex, Buffer.from(JSON.stringify({ ...tag, manifests: [...tag.manifests, descriptor] })));
    r = await inspect();
    assert.equal(r.summary?.referrer, descriptor.digest);
    assert.match(r.summary?.problems.join('\n') ?? '', new RegExp(`its subject is ${other.digest}, not the image's manifest ${subject.digest}`));
    for (const layer of [r.big, r.small]) {
      assert.equal(layer?.state, 'refused');
      assert.match(reasonOf(layer), new RegExp(`gzip index ${descriptor.digest} was refused: its subject is ${other.digest}`));
    }
  } finally {
    await source.close();
  }
});
