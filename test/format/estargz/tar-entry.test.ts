// Unit tests of src/format/tar-entry.ts (shared with the zstd:chunked writer): Go's appendTar rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cleanEntryName,
  formatModtime,
  normalizeEntryPath,
  OwnerNames,
  TarEntryError,
  tocEntryFromTarHeader,
} from '../../../src/format/tar-entry.js';

test('entry fields: types, zero values omitted, names only when they change', () => {
  const names = new OwnerNames();
  const mtime = new Date('2024-05-06T07:08:09Z');
  assert.deepEqual(tocEntryFromTarHeader({ name: 'a/', type: 'directory', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime }, names), {
    name: 'a/',
    type: 'dir',
    modtime: '2024-05-06T07:08:09Z',
    mode: 0o755,
    userName: 'root',
    groupName: 'root',
  });
  // Same names for the same ids: omitted; a new id gets its name.
  const f = tocEntryFromTarHeader({ name: 'a/f', type: 'file', size: 3, mode: 0o4755, uid: 0, gid: 7, uname: 'root', gname: 'staff' }, names);
  assert.deepEqual(f, { name: 'a/f', type: 'reg', size: 3, mode: 0o4755, gid: 7, groupName: 'staff' });
  const dev = tocEntryFromTarHeader({ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }, names);
  assert.deepEqual(dev, { name: 'null', type: 'char', devMajor: 1, devMinor: 3 });
  const link = tocEntryFromTarHeader({ name: 'l', type: 'link', linkname: 'a/f', size: 0 }, names);
  assert.deepEqual(link, { name: 'l', type: 'hardlink', linkName: 'a/f' });
  assert.throws(() => tocEntryFromTarHeader({ name: 'v', type: 'gnu-long-path' }, names), TarEntryError);
});

test('xattrs from SCHILY.xattr PAX records become base64, binary-safe with latin1 PAX values', () => {
  const e = tocEntryFromTarHeader(
    { name: 'x', type: 'file', pax: { 'SCHILY.xattr.user.b': '\u0000\u00ff', 'SCHILY.xattr.user.a': 'v', mtime: '1.5' }, paxEncoding: 'latin1' },
    new OwnerNames(),
  );
  assert.deepEqual(e.xattrs, { 'user.a': 'dg==', 'user.b': 'AP8=' });
  assert.deepEqual(Object.keys(e.xattrs!), ['user.a', 'user.b']);
});

test('modtime: whole seconds rounded half away from zero, PAX wins, epoch and none omitted', () => {
  assert.equal(formatModtime({ name: 'x', mtime: new Date(1_700_000_000_499) }), '2023-11-14T22:13:20Z');
  assert.equal(formatModtime({ name: 'x', mtime: new Date(1_700_000_000_500) }), '2023-11-14T22:13:21Z');
  assert.equal(formatModtime({ name: 'x', mtime: new Date(0), pax: { mtime: '1700000000.5' } }), '2023-11-14T22:13:21Z');
  assert.equal(formatModtime({ name: 'x', mtime: new Date(0) }), undefined);
  assert.equal(formatModtime({ name: 'x' }), undefined);
});

test('path rules: Go clean for matching, strict normalisation for untrusted paths', () => {
  assert.equal(cleanEntryName('./a//b/../c/'), 'a/c');
  assert.equal(cleanEntryName('../../x'), 'x');
  assert.equal(normalizeEntryPath('/abs/./p/'), 'abs/p');
  assert.equal(normalizeEntryPath('./'), '');
  assert.equal(normalizeEntryPath('a/b/../c'), 'a/c');
  assert.throws(() => normalizeEntryPath('../x'), /escapes the layer root/);
  assert.throws(() => normalizeEntryPath('a/../../x'), /escapes the layer root/);
  assert.throws(() => normalizeEntryPath('a\0b'), /NUL/);
});
