// parseDockerReference: Docker's normalisation and clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultsToPlainHttp, formatDockerReference, parseDockerReference } from '../../src/registry/reference.js';

const D = `sha256:${'ab'.repeat(32)}`;

test('normalises names the way Docker does', () => {
  const cases: Array<[string, Record<string, string | undefined>]> = [
    ['docker://ubuntu', { domain: 'docker.io', host: 'registry-1.docker.io', repository: 'library/ubuntu', tag: 'latest' }],
    ['ubuntu:22.04', { domain: 'docker.io', repository: 'library/ubuntu', tag: '22.04' }],
    ['docker://bitnami/redis', { domain: 'docker.io', repository: 'bitnami/redis', tag: 'latest' }],
    ['docker://index.docker.io/nginx', { domain: 'docker.io', repository: 'library/nginx' }],
    ['docker://localhost/app', { domain: 'localhost', host: 'localhost', repository: 'app', tag: 'latest' }],
    ['docker://localhost:5000/a/b/c:v1', { domain: 'localhost:5000', repository: 'a/b/c', tag: 'v1' }],
    ['docker://127.0.0.1:5000/x@' + D, { domain: '127.0.0.1:5000', repository: 'x', tag: undefined, digest: D }],
    ['docker://ghcr.io/o/r:t@' + D, { domain: 'ghcr.io', repository: 'o/r', tag: 't', digest: D }],
    ['docker://[::1]:5000/img:tag', { domain: '[::1]:5000', host: '[::1]:5000', repository: 'img', tag: 'tag' }],
    ['docker://[2001:db8::5]/img', { domain: '[2001:db8::5]', repository: 'img' }],
    ['docker://Registry.Example/img', { domain: 'Registry.Example', repository: 'img' }],
    ['docker://a.b/c__d/e-f/g.h_i', { repository: 'c__d/e-f/g.h_i' }],
  ];
  for (const [input, want] of cases) {
    const r = parseDockerReference(input) as unknown as Record<string, string | undefined>;
    for (const [k, v] of Object.entries(want)) assert.equal(r[k], v, `${input}: ${k}`);
  }
  assert.equal(formatDockerReference(parseDockerReference('ubuntu')), 'docker://docker.io/library/ubuntu:latest');
});

test('refuses malformed references with the reason', () => {
  const bad: Array<[string, RegExp]> = [
    ['docker://', /empty/],
    ['docker://Upper', /bad repository name component "Upper"/],
    ['docker://host.io/a//b', /bad repository name component ""/],
    ['docker://x:bad tag', /bad tag/],
    ['docker://x@sha256:123', /bad digest/],
    ['docker://x@md5:' + 'a'.repeat(32), /bad digest/],
    ['docker://host.io:99999/x', /port 99999 out of range/],
    ['docker://[::1/x', /bad registry host|bad repository/],
    ['docker://[zz::1]:5/x', /bad (registry host|IPv6)/],
    ['docker://[fe80::1%25eth0]/img', /bad registry host/], // Docker's grammar has no zone IDs
    ['docker://host.io/', /missing repository name/],
    [`docker://h.io/${'a'.repeat(260)}`, /longer than 255/],
    ['docker://x:' + 't'.repeat(129), /bad tag/],
  ];
  for (const [input, re] of bad) assert.throws(() => parseDockerReference(input), re, input);
});

test('loopback registries default to plain HTTP', () => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000']) assert.ok(defaultsToPlainHttp(h), h);
  for (const h of ['ghcr.io', 'registry-1.docker.io', '10.0.0.1:5000', 'localhost.example.com', '[fe80::1]']) assert.ok(!defaultsToPlainHttp(h), h);
});
