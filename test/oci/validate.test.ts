import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, parseIndex, parseManifest, parseManifestOrIndex, ValidationError } from '../../src/oci/validate.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const layer = (c: string) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D(c), size: 10 });
const manifest = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D('c'), size: 5 },
  layers: [layer('1'), layer('2'), layer('3')],
  annotations: { 'org.opencontainers.image.title': 't' },
};
const index = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D('a'), size: 3, platform: { os: 'linux', architecture: 'amd64' } }],
};
const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [D('d')] }, config: { Env: ['A=1'] } };

const j = (x: unknown) => JSON.stringify(x);
const clone = <T>(x: T): T => structuredClone(x);

function rejects(fn: () => unknown, field: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ValidationError, `expected ValidationError, got ${String(e)}`);
    assert.equal(e.field, field);
    assert.match(e.message, problem);
    assert.ok(e.message.startsWith(`${field}: `), e.message);
    return true;
  });
}

test('valid OCI and Docker documents parse', () => {
  assert.equal(parseManifest(j(manifest)).layers.length, 3);
  assert.equal(parseIndex(j(index)).manifests.length, 1);
  assert.equal(parseConfig(j(config)).rootfs.diff_ids.length, 1);
  const docker = { ...clone(manifest), mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { ...manifest.config, mediaType: 'application/vnd.docker.container.image.v1+json' } };
  delete (docker as { annotations?: unknown }).annotations;
  assert.equal(parseManifest(Buffer.from(j(docker))).config.mediaType, 'application/vnd.docker.container.image.v1+json');
  assert.equal(parseIndex(j({ ...index, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json' })).manifests.length, 1);
  // No mediaType field (allowed by OCI): shape decides.
  const { mediaType: _m, ...bare } = manifest;
  assert.equal(parseManifestOrIndex(j(bare)).kind, 'manifest');
  const { mediaType: _i, ...bareIndex } = index;
  assert.equal(parseManifestOrIndex(j(bareIndex)).kind, 'index');
  assert.equal(parseManifestOrIndex(j(bare), 'application/vnd.oci.image.manifest.v1+json').kind, 'manifest');
});

test('manifest errors name the field', () => {
  let m = clone(manifest) as Record<string, unknown> & typeof manifest;
  m.layers[2]!.digest = 'sha256:1234';
  rejects(() => parseManifest(j(m)), 'manifest.layers[2].digest', /not a sha256 digest: "sha256:1234"/);
  m = clone(manifest);
  (m.layers[1] as Record<string, unknown>).size = -1;
  rejects(() => parseManifest(j(m)), 'manifest.layers[1].size', /non-negative integer, got -1/);
  m = clone(manifest);
  (m.layers[0] as Record<string, unknown>).size = '10';
  rejects(() => parseManifest(j(m)), 'manifest.layers[0].size', /got "10"/);
  m = clone(manifest);
  (m.layers[0] as Record<string, unknown>).mediaType = 'not a type';
  rejects(() => parseManifest(j(m)), 'manifest.layers[0].mediaType', /not a media type/);
  m = clone(manifest);
  (m.layers[0] as Record<string, unknown>).annotations = { a: 1 };
  rejects(() => parseManifest(j(m)), 'manifest.layers[0].annotations["a"]', /expected a string, got 1/);
  m = clone(manifest);
  (m as Record<string, unknown>).layers = {};
  rejects(() => parseManifest(j(m)), 'manifest.layers', /expected an array of descriptors/);
  m = clone(manifest);
  delete (m as Record<string, unknown>).config;
  rejects(() => parseManifest(j(m)), 'manifest.config', /expected an object, got undefined/);
  rejects(() => parseManifest(j({ ...manifest, schemaVersion: 1 })), 'manifest.schemaVersion', /expected 2, got 1/);
  rejects(() => parseManifest(j({ ...manifest, mediaType: 'application/vnd.oci.image.index.v1+json' })), 'manifest.mediaType', /is not one of/);
  rejects(() => parseManifest(j(manifest), 'application/vnd.docker.distribution.manifest.v2+json'), 'manifest.mediaType', /disagrees with the descriptor/);
  rejects(() => parseManifest('{"schemaVersion": 2,'), 'manifest', /not valid JSON/);
  rejects(() => parseManifest('[]'), 'manifest', /expected an object/);
  // A Docker manifest may name any config type (plugins): valid here, refused later as "not a container image".
  assert.equal(parseManifest(j({ ...manifest, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { ...manifest.config, mediaType: 'application/vnd.docker.plugin.v1+json' } })).config.mediaType, 'application/vnd.docker.plugin.v1+json');
  rejects(() => parseManifest(j({ ...manifest, config: { ...manifest.config, data: 'abc' } })), 'manifest.config.data', /not base64/);
  rejects(() => parseManifest(j({ ...manifest, config: { ...manifest.config, data: 'YWJj' } })), 'manifest.config.data', /other than size 5/);
});

test('index and config errors name the field', () => {
  const ix = clone(index) as { manifests: Array<Record<string, unknown>> };
  (ix.manifests[0]!.platform as Record<string, unknown>).architecture = 5;
  rejects(() => parseIndex(j(ix)), 'index.manifests[0].platform.architecture', /expected a string, got 5/);
  rejects(() => parseIndex(j({ ...index, manifests: [{ ...index.manifests[0], platform: { os: 'linux', architecture: 'amd64', 'os.features': 'x' } }] })), 'index.manifests[0].platform["os.features"]', /array of strings/);
  rejects(() => parseIndex(j(manifest)), 'index.mediaType', /is not one of/);
  rejects(() => parseIndex(j({ schemaVersion: 2, manifests: [], config: {} })), 'index', /is this a manifest/);
  rejects(() => parseManifestOrIndex(j({ ...manifest, mediaType: 'application/json' })), 'manifest.mediaType', /not a manifest or index media type/);
  // The document must not contradict the descriptor that referenced it.
  rejects(() => parseManifestOrIndex(j(manifest), 'application/vnd.oci.image.index.v1+json'), 'manifest.mediaType', /disagrees with the descriptor's "application\/vnd.oci.image.index.v1\+json"/);

  rejects(() => parseConfig(j({ ...config, rootfs: { type: 'layers', diff_ids: [D('d'), 'nope'] } })), 'config.rootfs.diff_ids[1]', /not a sha256 digest/);
  rejects(() => parseConfig(j({ ...config, rootfs: { type: 'x', diff_ids: [] } })), 'config.rootfs.type', /expected "layers"/);
  rejects(() => parseConfig(j({ ...config, rootfs: undefined })), 'config.rootfs', /expected an object/);
  rejects(() => parseConfig(j({ ...config, os: undefined })), 'config.os', /expected a string/);
  rejects(() => parseConfig(j({ ...config, history: [1] })), 'config.history[0]', /expected an object/);
  rejects(() => parseConfig(j({ ...config, config: [] }), 'manifests[1].config'), 'manifests[1].config.config', /expected an object/);
});
