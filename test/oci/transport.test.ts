import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImageDestination, openImageSource, parseImageReference, parseOciReference, TransportError } from '../../src/registry/transport.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import { buildImage } from '../fixtures/image.js';

test('parseOciReference: the last colon starts a tag only when a valid tag follows', () => {
  const cases: Array<[string, { dir: string; tag?: string }]> = [
    ['oci:/tmp/img', { dir: '/tmp/img' }],
    ['oci:/tmp/img:latest', { dir: '/tmp/img', tag: 'latest' }],
    ['oci:relative/dir:v1.2_3-rc', { dir: 'relative/dir', tag: 'v1.2_3-rc' }],
    ['oci:/data/a:b/img', { dir: '/data/a:b/img' }],
    ['oci:/data/a:b/img:tag', { dir: '/data/a:b/img', tag: 'tag' }],
    ['oci:/data/a:b:', { dir: '/data/a:b' }],
    ['oci:/tmp/img:', { dir: '/tmp/img' }],
    ['oci:/tmp/x:not a tag', { dir: '/tmp/x:not a tag' }],
    ['oci:/tmp/x:.hidden', { dir: '/tmp/x:.hidden' }],
    [`oci:/tmp/x:${'t'.repeat(128)}`, { dir: '/tmp/x', tag: 't'.repeat(128) }],
    [`oci:/tmp/x:${'t'.repeat(129)}`, { dir: `/tmp/x:${'t'.repeat(129)}` }],
  ];
  for (const [ref, want] of cases) assert.deepEqual(parseOciReference(ref), want, ref);
  for (const bad of ['oci:', 'oci::tag', 'oci::']) assert.throws(() => parseOciReference(bad), /no directory/, bad);
});

test('parseImageReference dispatches on the transport and names what is wrong', () => {
  assert.deepEqual(parseImageReference('oci:d:t'), { transport: 'oci', dir: 'd', tag: 't' });
  assert.deepEqual(parseImageReference('docker://127.0.0.1:5000/a/b:c'), { transport: 'docker', ref: 'docker://127.0.0.1:5000/a/b:c' });
  assert.throws(() => parseImageReference('ubuntu:latest'), (e: Error) => e instanceof TransportError && /unsupported transport "ubuntu:"/.test(e.message));
  assert.throws(() => parseImageReference('/tmp/dir'), /no transport \(expected oci:DIR\[:TAG\] or docker:\/\//);
  assert.throws(() => parseImageReference('containers-storage:x'), /unsupported transport "containers-storage:"/);
});

test('openImageSource/openImageDestination open OCI layouts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-transport-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const built = await buildImage(join(dir, 'img'), { layers: [{ files: { a: 'a' } }] }, 'v1');
  const src = await openImageSource(`oci:${join(dir, 'img')}:v1`);
  assert.ok(src instanceof OciLayoutSource);
  assert.equal((await src.resolveRoot()).descriptor.digest, built.root.digest);
  assert.equal(src.description, `oci:${join(dir, 'img')}:v1`);
  const dst = await openImageDestination(`oci:${join(dir, 'out')}`);
  assert.ok(dst instanceof OciLayoutDestination);
  await assert.rejects(openImageSource(`oci:${join(dir, 'missing')}:v1`), /does not exist/);
});
