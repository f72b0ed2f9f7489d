// containerd's filter syntax, as List receives it from containerd (its filters package's cases).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { matches, parseFilters } from '../../src/snapshotter/filters.js';

const obj: Record<string, string> = { name: 'default/3/sha256:abc', parent: '', kind: 'committed', 'labels.containerd.io/snapshot.ref': 'sha256:abc', 'labels.x': 'a,b' };
const read = (path: string[]) => obj[path.join('.')];
const match = (...filters: string[]) => matches(parseFilters(filters), read);

test('the filter containerd sends after a remote Prepare, and the other operators', () => {
  assert.equal(match('labels."containerd.io/snapshot.ref"==sha256:abc,parent==""'), true);
  assert.equal(match('labels."containerd.io/snapshot.ref"==sha256:abd,parent==""'), false);
  assert.equal(match('labels."containerd.io/snapshot.ref"==sha256:abc,parent=="sha256:up"'), false);
  assert.equal(match('kind==active', 'kind==committed'), true, 'filters are or-ed');
  assert.equal(match('kind!=committed'), false);
  assert.equal(match('labels.missing'), false, 'a bare field tests presence');
  assert.equal(match('labels.x'), true);
  assert.equal(match('labels.x=="a,b"'), true, 'a quoted value may hold a comma');
  assert.equal(match('name~=/^default\\/3\\//'), true, 'regular expressions in /…/');
  assert.equal(match('name~=^other'), false);
  assert.equal(match(), true);
  assert.equal(match(''), true);
});

test('bad filters are INVALID_ARGUMENT with the place of the error', () => {
  for (const bad of ['kind==', 'kind==a b', 'kind=>a', '"unterminated', 'kind~=(', 'labels.x==|a|', ',kind']) {
    assert.throws(
      () => parseFilters([bad]),
      (err: unknown) => err instanceof SnapshotError && err.code === status.INVALID_ARGUMENT && err.message.startsWith('filters: parse error'),
      bad,
    );
  }
});
