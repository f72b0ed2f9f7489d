// The prefetch profile format: built from a trace (top-most layer holding each path), stable
// serialisation, and parsing as untrusted input (sizes, paths, ranges, digests), selection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sha256 } from '../../src/oci/digest.js';
import type { Descriptor, ImageManifest } from '../../src/oci/types.js';
import { addRange, buildProfile, checkProfileLayers, MAX_PROFILE_BYTES, parseProfile, rankProfiles, serializeProfile, type ByteRange } from '../../src/image/profile.js';

const L0 = sha256('layer 0');
const L1 = sha256('layer 1');
const G = 128 << 10;

test('addRange keeps ranges sorted and disjoint, merging what touches', () => {
  const r: ByteRange[] = [];
  addRange(r, 100, 200);
  addRange(r, 0, 10);
  addRange(r, 300, 400);
  assert.deepEqual(r, [[0, 10], [100, 200], [300, 400]]);
  addRange(r, 200, 300); // touches both neighbours
  assert.deepEqual(r, [[0, 10], [100, 400]]);
  addRange(r, 5, 5); // empty
  addRange(r, 2, 8); // inside
  assert.deepEqual(r, [[0, 10], [100, 400]]);
});

test('buildProfile puts each file in the top-most layer holding it, in first-read order, and serialises stably', () => {
  const layers = [
    { digest: L0, has: (p: string) => ['bin/sh', 'etc/passwd', 'lib/libc.so'].includes(p) },
    { digest: L1, has: (p: string) => ['etc/passwd', 'app/main'].includes(p) },
  ];
  const reads = new Map<string, { size: number; ranges: ByteRange[] }>([
    ['/bin/sh', { size: 500_000, ranges: [[0, 4096]] }],
    ['/app/main', { size: 2_000_000, ranges: [[0, 10], [1_000_000, 1_000_100]] }],
    ['/etc/passwd', { size: 100, ranges: [[0, 100]] }],
    ['/lib/libc.so', { size: 200_000, ranges: [[0, 65536], [150_000, 200_000]] }],
    ['/not/there', { size: 1, ranges: [[0, 1]] }],
  ]);
  const { profile, unplaced } = buildProfile(reads, layers);
  assert.deepEqual(unplaced, ['/not/there']);
  assert.deepEqual(profile, {
    version: 1,
    layers: [
      // Ranges rounded out to 128 KiB, up to the end of the file.
      { digest: L0, files: [{ path: 'bin/sh', ranges: [[0, G]] }, { path: 'lib/libc.so', ranges: [[0, 200_000]] }] },
      { digest: L1, files: [{ path: 'app/main', ranges: [[0, G], [7 * G, 8 * G]] }, { path: 'etc/passwd', ranges: [[0, 100]] }] },
    ],
  });
  const bytes = serializeProfile(profile);
  assert.deepEqual(parseProfile(bytes), profile);
  assert.equal(sha256(serializeProfile(parseProfile(bytes))), sha256(bytes), 'the same profile, the same bytes');
});

test('a file read in many places keeps at most 64 ranges (rounded to 128 KiB), covering every byte read', () => {
  const ranges: ByteRange[] = [];
  for (let i = 0; i < 200; i++) addRange(ranges, i * 2 ** 20 + 5000, i * 2 ** 20 + 5010 + (i % 7) * G);
  const { profile } = buildProfile(new Map([['/f', { size: 2 ** 40, ranges }]]), [{ digest: L0, has: () => true }]);
  const kept = profile.layers[0]!.files[0]!.ranges;
  assert.equal(kept.length, 64);
  for (const [s, e] of ranges) assert.ok(kept.some(([ks, ke]) => ks <= s && e <= ke), `[${s}, ${e}) is covered`);
  parseProfile(serializeProfile(profile));
});

const doc = (files: unknown, digest: unknown = L0) => Buffer.from(JSON.stringify({ version: 1, layers: [{ digest, files }] }));

test('parseProfile refuses hostile or broken input with the field at fault', () => {
  const bad: Array<[Buffer, RegExp]> = [
    [Buffer.from('{"version":1,'), /not JSON/],
    [Buffer.from('{"version":2,"layers":[]}'), /profile\.version/],
    [doc([{ path: '../etc/shadow', ranges: [[0, 1]] }]), /files\[0\]\.path: .*escapes|not a normalised/],
    [doc([{ path: 'a/../../etc/shadow', ranges: [[0, 1]] }]), /files\[0\]\.path/],
    [doc([{ path: '/etc/passwd', ranges: [[0, 1]] }]), /not a normalised relative path/],
    [doc([{ path: 'a//b', ranges: [[0, 1]] }]), /not a normalised relative path/],
    [doc([{ path: 'a/./b', ranges: [[0, 1]] }]), /not a normalised relative path/],
    [doc([{ path: 'a\0b', ranges: [[0, 1]] }]), /NUL/],
    [doc([{ path: 'x'.repeat(5000), ranges: [[0, 1]] }]), /path of 1-4096 bytes/],
    [doc([{ path: 'a', ranges: [] }]), /ranges: expected 1-64 ranges/],
    [doc([{ path: 'a', ranges: [[5, 5]] }]), /ranges\[0\]/],
    [doc([{ path: 'a', ranges: [[-1, 5]] }]), /ranges\[0\]/],
    [doc([{ path: 'a', ranges: [[0, 10], [5, 20]] }]), /ranges\[1\]: .*disjoint/],
    [doc([{ path: 'a', ranges: [[0, 2 ** 60]] }]), /ranges\[0\]/],
    [doc([{ path: 'a', ranges: [[0, 1, 2]] }]), /ranges\[0\]/],
    [doc([{ path: 'a', ranges: [[0, 1]] }, { path: 'a', ranges: [[0, 1]] }]), /appears twice/],
    [doc([], 'sha256:nothex'), /digest: not a sha256 digest/],
    [Buffer.from(JSON.stringify({ version: 1, layers: [{ digest: L0, files: [] }, { digest: L0, files: [] }] })), /appears twice/],
    [Buffer.alloc(MAX_PROFILE_BYTES + 1, 0x20), /more than the 4194304 allowed/],
  ];
  for (const [bytes, why] of bad) assert.throws(() => parseProfile(bytes), why, bytes.subarray(0, 80).toString());
});

test('checkProfileLayers: a profile for layers the image does not have is refused', () => {
  const manifest = { schemaVersion: 2, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('c'), size: 1 }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: L0, size: 1 }] } as ImageManifest;
  checkProfileLayers(parseProfile(doc([])), manifest);
  assert.throws(() => checkProfileLayers(parseProfile(doc([], L1)), manifest), new RegExp(`layer ${L1} of the profile is not a layer of the image`));
});

test('rankProfiles: newest first, by name when asked; undated ones last', () => {
  const d = (name: string, created?: string): Descriptor => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: sha256(name + created),
    size: 1,
    annotations: { 'dev.starling.profile.name': name, ...(created ? { 'org.opencontainers.image.created': created } : {}) },
  });
  const old = d('web', '2026-01-01T00:00:00Z');
  const newer = d('web', '2026-02-01T00:00:00Z');
  const batch = d('batch', '2026-03-01T00:00:00Z');
  const undated = d('web');
  assert.deepEqual(rankProfiles([undated, old, batch, newer]), [batch, newer, old, undated]);
  assert.deepEqual(rankProfiles([undated, old, batch, newer], 'web'), [newer, old, undated]);
  assert.deepEqual(rankProfiles([old], 'missing'), []);
});
