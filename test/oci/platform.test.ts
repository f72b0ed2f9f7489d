import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatPlatform,
  hostPlatform,
  isAttestationManifest,
  normalizePlatform,
  parsePlatform,
  platformMatcher,
  PlatformError,
} from '../../src/oci/platform.js';
import type { Platform } from '../../src/oci/types.js';

const P = (s: string): Platform => {
  const [os, architecture, variant] = s.split('/');
  return variant ? { os: os!, architecture: architecture!, variant } : { os: os!, architecture: architecture! };
};

test('normalizePlatform applies containerd aliases and default variants', () => {
  const cases: Array<[Platform, string]> = [
    [{ os: 'Linux', architecture: 'x86_64' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'x86-64', variant: 'v1' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'amd64', variant: 'v3' }, 'linux/amd64/v3'],
    [{ os: 'linux', architecture: 'i386', variant: 'whatever' }, 'linux/386'],
    [{ os: 'linux', architecture: 'aarch64' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm64', variant: '8' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8.0' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8.2' }, 'linux/arm64/v8.2'],
    [{ os: 'linux', architecture: 'arm64', variant: '9' }, 'linux/arm64/v9'],
    [{ os: 'linux', architecture: 'arm64', variant: 'v9.0' }, 'linux/arm64/v9'],
    [{ os: 'linux', architecture: 'armhf' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'armel' }, 'linux/arm/v6'],
    [{ os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'arm', variant: '7' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'arm', variant: '5' }, 'linux/arm/v5'],
    [{ os: 'MacOS', architecture: 'arm64' }, 'darwin/arm64'],
    [{ os: 'linux', architecture: 's390x' }, 'linux/s390x'],
  ];
  for (const [input, want] of cases) assert.equal(formatPlatform(normalizePlatform(input)), want, JSON.stringify(input));
  assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'amd64', 'os.features': ['b', 'a', 'b'] })['os.features'], ['a', 'b']);
  assert.equal(normalizePlatform({ os: '', architecture: 'amd64' }).os, hostPlatform().os);
});

test('parsePlatform reads os/arch[/variant] and containerd OS options, and rejects bad specifiers', () => {
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatform('linux/arm/v6'), { os: 'linux', architecture: 'arm', variant: 'v6' });
  assert.deepEqual(parsePlatform('Linux/AArch64'), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(parsePlatform('windows(10.0.17763+win32k)/amd64'), {
    os: 'windows',
    architecture: 'amd64',
    'os.version': '10.0.17763',
    'os.features': ['win32k'],
  });
  assert.deepEqual(parsePlatform('arm64'), { os: hostPlatform().os, architecture: 'arm64' });
  assert.equal(parsePlatform('linux').architecture, hostPlatform().architecture);
  for (const bad of ['', 'linux/', 'linux/amd64/v2/extra', 'linux/*', 'not a platform', 'nosuchthing', 'linux/am d64']) {
    assert.throws(() => parsePlatform(bad), (e: Error) => e instanceof PlatformError && e.message.includes(JSON.stringify(bad)), bad);
  }
});

test('formatPlatform round-trips through parsePlatform', () => {
  for (const s of ['linux/amd64', 'linux/arm64/v8.2', 'linux/arm/v5', 'linux/386', 'linux/riscv64']) {
    assert.equal(formatPlatform(parsePlatform(s)), s);
  }
  assert.equal(formatPlatform({ os: '', architecture: '' }), 'unknown');
});

// The ordered fallback list of containerd's platforms.Only (compare.go platformVector).
const VECTORS: Array<[string, string[]]> = [
  ['linux/amd64', ['linux/amd64', 'linux/386']],
  ['linux/amd64/v3', ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']],
  ['linux/arm/v7', ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
  ['linux/arm/v5', ['linux/arm/v5']],
  ['linux/arm64', ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
  ['linux/arm64/v8.2', ['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
  [
    'linux/arm64/v9.1',
    ['linux/arm64/v9.1', 'linux/arm64/v9', 'linux/arm64/v8.6', 'linux/arm64/v8.5', 'linux/arm64/v8.4', 'linux/arm64/v8.3', 'linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'],
  ],
];

test('platformMatcher ranks candidates in containerd fallback order', () => {
  for (const [target, order] of VECTORS) {
    const m = platformMatcher(parsePlatform(target));
    order.forEach((cand, i) => {
      assert.ok(m.matches(P(cand)), `${target} should match ${cand}`);
      assert.equal(Math.floor(m.rank(P(cand))), i, `${target}: rank of ${cand}`);
    });
  }
});

test('platformMatcher rejects what the target cannot run', () => {
  const cases: Array<[string, string[]]> = [
    ['linux/amd64', ['linux/arm64', 'windows/amd64', 'linux/amd64/v2', 'linux/arm/v7']],
    ['linux/amd64/v2', ['linux/amd64/v3', 'linux/arm64']],
    ['linux/arm64', ['linux/arm64/v8.1', 'linux/arm64/v9', 'linux/amd64', 'linux/386']],
    ['linux/arm/v6', ['linux/arm/v7', 'linux/arm64']],
    ['linux/arm64/v8.2', ['linux/arm64/v8.3', 'linux/arm64/v9']],
  ];
  for (const [target, cands] of cases) {
    const m = platformMatcher(parsePlatform(target));
    for (const c of cands) {
      assert.equal(m.matches(P(c)), false, `${target} must not match ${c}`);
      assert.equal(m.rank(P(c)), Infinity);
    }
  }
});

test('platformMatcher normalises candidates (aliases in an index still match)', () => {
  const m = platformMatcher(parsePlatform('linux/arm64'));
  assert.ok(m.matches({ os: 'linux', architecture: 'aarch64', variant: 'v8' }));
  assert.ok(m.matches({ os: 'linux', architecture: 'armhf' }));
  assert.ok(platformMatcher(parsePlatform('linux/amd64')).matches({ os: 'Linux', architecture: 'x86_64' }));
});

test('os.features: a candidate must need a subset of the target features; more features win a tie', () => {
  const target: Platform = { os: 'windows', architecture: 'amd64', 'os.features': ['win32k', 'zfeat'] };
  const m = platformMatcher(target);
  const plain: Platform = { os: 'windows', architecture: 'amd64' };
  const one: Platform = { ...plain, 'os.features': ['win32k'] };
  const both: Platform = { ...plain, 'os.features': ['zfeat', 'win32k'] };
  const other: Platform = { ...plain, 'os.features': ['gpu'] };
  assert.ok(m.matches(plain) && m.matches(one) && m.matches(both));
  assert.equal(m.matches(other), false);
  assert.ok(m.rank(both) < m.rank(one) && m.rank(one) < m.rank(plain));
  // A better vector position beats more features.
  const noFeat = platformMatcher({ os: 'linux', architecture: 'amd64', 'os.features': ['x'] });
  assert.ok(noFeat.rank({ os: 'linux', architecture: 'amd64' }) < noFeat.rank({ os: 'linux', architecture: '386', 'os.features': ['x'] }));
  // Target without features accepts no candidate that needs one.
  assert.equal(platformMatcher(parsePlatform('linux/amd64')).matches({ os: 'linux', architecture: 'amd64', 'os.features': ['x'] }), false);
});

test('os.version is only compared for Windows', () => {
  const linux = platformMatcher({ os: 'linux', architecture: 'amd64', 'os.version': '5.10' });
  assert.ok(linux.matches({ os: 'linux', architecture: 'amd64', 'os.version': '6.1' }));
  const win = platformMatcher({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1234' });
  assert.ok(win.matches({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.5' }));
  assert.equal(win.matches({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348.1' }), false);
});

test('hostPlatform is normalised and matches itself first', () => {
  const h = hostPlatform();
  assert.deepEqual(normalizePlatform(h), h);
  assert.equal(platformMatcher(h).rank(h) < 1, true);
  if (process.arch === 'x64') assert.deepEqual(h, { os: 'linux', architecture: 'amd64' });
});

test('isAttestationManifest recognises BuildKit attestation entries', () => {
  const base = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 1 } as const;
  assert.ok(isAttestationManifest({ ...base, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': `sha256:${'b'.repeat(64)}` } }));
  assert.equal(isAttestationManifest({ ...base, platform: { os: 'linux', architecture: 'amd64' } }), false);
});
