// extractLayer: real content with every entry type, overlay whiteouts and opaque directories, and
// the classic layer-extraction attacks (nothing may be created or changed outside DIR).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pack, type Header } from 'tar-stream';
import { sha256 } from '../../src/oci/digest.js';
import { extractLayer } from '../../src/oci/extract.js';
import { realTar } from '../fixtures/real-tar.js';

const run = promisify(execFile);

type Entry = Partial<Header> & { name: string; content?: string };

/** A tar built entry by entry, names taken literally (tar-stream does not sanitise them). */
async function tarOf(entries: Entry[]): Promise<Readable> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const { content, ...h } of entries) {
    const header = { mode: h.type === 'directory' ? 0o755 : 0o644, mtime: new Date('2024-05-06T07:08:09Z'), ...h };
    if (content === undefined) p.entry(header);
    else p.entry({ ...header, size: Buffer.byteLength(content) }, content);
  }
  p.finalize();
  await done;
  return Readable.from([Buffer.concat(chunks)]);
}

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-extract-'));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Every path under `dir` with a fingerprint of what it is, to prove nothing changed there. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const st = await lstat(p);
      out.set(p, `${st.mode}:${st.size}:${st.mtimeMs}:${e.isFile() ? sha256(await readFile(p)) : e.isSymbolicLink() ? await readlink(p) : ''}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

test('extracts real files with every entry type, metadata and binary xattrs', async () => {
  const root = join(work, 'real');
  await mkdir(root);
  const r = await extractLayer(createReadStream(await realTar('pax')), root);
  assert.ok(r.entries > 50);
  assert.equal(sha256(await readFile(join(root, 'data/big.bin'))), sha256(await readFile('/usr/lib/go-1.19/pkg/tool/linux_amd64/compile')));
  assert.equal((await stat(join(root, 'data/exact-8MiB.bin'))).size, 8 << 20);
  assert.equal((await stat(join(root, 'data/with-zeros.bin'))).mode & 0o7777, 0o4755);
  const x = await stat(join(root, 'data/xattr-file'));
  assert.equal(x.uid, 1000);
  assert.equal(x.gid, 1000);
  const { stdout } = await run('getfattr', ['-d', '-e', 'hex', '-m', '-', join(root, 'data/xattr-file')]);
  assert.match(stdout, /user\.binary=0x00ff10/);
  assert.match(stdout, /user\.starling\.test=0x76616c75652d31/);
  assert.equal(await readlink(join(root, 'links/abs-symlink')), '/usr/bin/zstd');
  assert.equal(await readlink(join(root, 'links/rel-symlink')), '../usr/bin/ls');
  assert.equal(await readlink(join(root, 'links/dangling')), 'does/not/exist');
  assert.equal((await stat(join(root, 'links/hardlink-to-ls'))).ino, (await stat(join(root, 'usr/bin/ls'))).ino);
  const nul = await stat(join(root, 'dev-nodes/null'));
  assert.ok(nul.isCharacterDevice());
  assert.equal(nul.rdev, (1 << 8) | 3);
  assert.ok((await stat(join(root, 'dev-nodes/loop7'))).isBlockDevice());
  assert.ok((await stat(join(root, 'dev-nodes/fifo'))).isFIFO());
  assert.equal(await readFile(join(root, 'names/ÄÖÜ-größe-日本語-файл.txt'), 'utf8'), 'non-ascii name\n');
  assert.equal(await readFile(join(root, 'names/space and tab\tname'), 'utf8'), 'odd characters\n');
  // Every name GNU tar lists is there.
  const { stdout: listing } = await run('tar', ['--quoting-style=literal', '-tf', await realTar('pax')], { maxBuffer: 1 << 24 });
  for (const name of listing.split('\n').filter(Boolean)) await lstat(join(root, name));
});

test('whiteouts and opaque directories remove what lower layers put there, never the own layer', async () => {
  const root = join(work, 'overlay');
  await mkdir(root);
  await extractLayer(
    await tarOf([
      { name: 'a/', type: 'directory' },
      { name: 'a/x', content: 'x' },
      { name: 'a/y', content: 'y' },
      { name: 'b/', type: 'directory' },
      { name: 'b/z', content: 'z' },
      { name: 'c/', type: 'directory' },
      { name: 'c/k', content: 'k' },
      { name: 'c/sub/', type: 'directory' },
      { name: 'c/sub/deep', content: 'deep' },
      { name: 'e/', type: 'directory' },
      { name: 'e/old', content: 'old' },
      { name: 'f', content: 'file becomes dir' },
    ]),
    root,
  );
  const r = await extractLayer(
    await tarOf([
      { name: 'a/.wh.x', content: '' },
      { name: '.wh.b', content: '' },
      { name: 'c/new', content: 'new' }, // before the opaque marker: still this layer's
      { name: 'c/sub/', type: 'directory' },
      { name: 'c/sub/mine', content: 'mine' },
      { name: 'c/.wh..wh..opq', content: '' },
      { name: 'e/fresh', content: 'fresh' },
      { name: 'e/.wh.fresh', content: '' }, // a whiteout never hides its own layer's entry
      { name: 'f/', type: 'directory' },
      { name: 'f/inside', content: 'inside' },
      { name: 'a/.wh..wh.plnk', content: '' }, // aufs metadata: ignored, not created
    ]),
    root,
  );
  assert.equal(r.whiteouts, 5);
  assert.deepEqual((await readdir(join(root, 'a'))).sort(), ['y']);
  await assert.rejects(lstat(join(root, 'b')), { code: 'ENOENT' });
  assert.deepEqual((await readdir(join(root, 'c'))).sort(), ['new', 'sub']);
  assert.deepEqual(await readdir(join(root, 'c/sub')), ['mine']);
  assert.deepEqual((await readdir(join(root, 'e'))).sort(), ['fresh', 'old']);
  assert.equal(await readFile(join(root, 'f/inside'), 'utf8'), 'inside');
  // Directory times are set after their children were written.
  for (const p of ['c/sub', 'c/new', 'f']) assert.equal((await lstat(join(root, p))).mtime.toISOString(), '2024-05-06T07:08:09.000Z', p);
});

test('entries of one layer touching the same paths apply in tar order', async () => {
  const root = join(work, 'order');
  await mkdir(root);
  const many = Array.from({ length: 100 }, (_, i) => ({ name: `d/f${i}`, content: `v1-${i}` }));
  await extractLayer(
    await tarOf([
      ...many,
      { name: 'd/f7', content: 'second f7' }, // a later duplicate wins
      { name: 'd/hard', type: 'link', linkname: 'd/f8' }, // a hardlink to a file just written
      { name: 'd/f9', type: 'symlink', linkname: 'f8' }, // a file replaced by a symlink
      { name: 'd/f10/', type: 'directory' }, // and by a directory
      { name: 'd/f10/in', content: 'in' },
      { name: 'modes/group-writable', content: 'g', mode: 0o664 }, // a bit the umask would strip
      { name: 'modes/read-only', content: 'r', mode: 0o400 },
      { name: 'modes/sticky-dir/', type: 'directory', mode: 0o1777 },
    ]),
    root,
  );
  assert.equal((await stat(join(root, 'modes/group-writable'))).mode & 0o7777, 0o664);
  assert.equal((await stat(join(root, 'modes/read-only'))).mode & 0o7777, 0o400);
  assert.equal(await readFile(join(root, 'modes/read-only'), 'utf8'), 'r');
  assert.equal((await stat(join(root, 'modes/sticky-dir'))).mode & 0o7777, 0o1777);
  assert.equal(await readFile(join(root, 'd/f7'), 'utf8'), 'second f7');
  assert.equal((await stat(join(root, 'd/hard'))).ino, (await stat(join(root, 'd/f8'))).ino);
  assert.equal(await readFile(join(root, 'd/hard'), 'utf8'), 'v1-8');
  assert.equal(await readlink(join(root, 'd/f9')), 'f8');
  assert.equal(await readFile(join(root, 'd/f10/in'), 'utf8'), 'in');
  for (let i = 11; i < 100; i++) assert.equal(await readFile(join(root, `d/f${i}`), 'utf8'), `v1-${i}`);
  // The next layer replaces the directory d with a file: every write below d was finished first.
  await extractLayer(await tarOf([{ name: 'd', content: 'now a file' }]), root);
  assert.equal(await readFile(join(root, 'd'), 'utf8'), 'now a file');
});

test('layer-extraction attacks write nothing outside DIR', async (t) => {
  const sandbox = join(work, 'sandbox');
  const root = join(sandbox, 'root');
  await mkdir(root, { recursive: true });
  await writeFile(join(sandbox, 'victim'), 'do not touch\n');
  const passwd = sha256(await readFile('/etc/passwd'));
  const before = await snapshot(sandbox);
  const outside = () => snapshot(sandbox).then((s) => [...s.keys()].filter((k) => !k.startsWith(`${root}/`) && !before.has(k)));

  const attacks: Array<[string, Entry[], RegExp]> = [
    ['../ in a name', [{ name: '../victim', content: 'owned' }], /"\.\.\/victim" contains '\.\.'/],
    ['../ deeper in a name', [{ name: 'a/../../victim', content: 'owned' }], /contains '\.\.'/],
    ['an absolute name', [{ name: `${sandbox}/victim`, content: 'owned' }], /is an absolute path/],
    ['a hardlink to /etc/passwd', [{ name: 'pw', type: 'link', linkname: '/etc/passwd' }], /target "\/etc\/passwd" is an absolute path/],
    ['a hardlink with ../', [{ name: 'pw', type: 'link', linkname: '../../../../../../etc/passwd' }], /contains '\.\.'/],
    [
      'a file written through a symlink that climbs out',
      [
        { name: 'up', type: 'symlink', linkname: '../..' },
        { name: 'up/victim', content: 'owned' },
      ],
      /leads through a symlink out of the target directory/,
    ],
    [
      'a hardlink through a symlink that climbs out',
      [
        { name: 'up2', type: 'symlink', linkname: '../../../../../../../etc' },
        { name: 'pw', type: 'link', linkname: 'up2/passwd' },
      ],
      /leads through a symlink out of the target directory/,
    ],
  ];
  for (const [what, entries, expected] of attacks) {
    await t.test(what, async () => {
      await assert.rejects(extractLayer(await tarOf(entries), root), expected);
      assert.deepEqual(await outside(), []);
      assert.equal(await readFile(join(sandbox, 'victim'), 'utf8'), 'do not touch\n');
    });
  }

  await t.test('an absolute symlink is followed inside DIR, as the container sees it', async () => {
    await extractLayer(
      await tarOf([
        { name: 'evil', type: 'symlink', linkname: '/etc' },
        { name: 'evil/owned', content: 'inside' },
        { name: 'sbx', type: 'symlink', linkname: sandbox },
        { name: 'sbx/victim', content: 'owned' },
      ]),
      root,
    );
    assert.equal(await readlink(join(root, 'evil')), '/etc');
    await assert.rejects(lstat('/etc/owned'), { code: 'ENOENT' });
    assert.equal(await readFile(join(root, 'etc/owned'), 'utf8'), 'inside');
    // DIR/<sandbox path>/victim: directories made under DIR, the symlink left as it is.
    assert.equal(await readFile(join(root, sandbox, 'victim'), 'utf8'), 'owned');
    assert.equal(await readFile(join(sandbox, 'victim'), 'utf8'), 'do not touch\n');
    assert.deepEqual(await outside(), []);
  });

  await t.test('a symlink to an outside file is replaced by a later regular file, not written through', async () => {
    await extractLayer(await tarOf([{ name: 'lnk', type: 'symlink', linkname: join(sandbox, 'victim') }]), root);
    await extractLayer(await tarOf([{ name: 'lnk', content: 'replaced' }]), root);
    assert.equal(await readFile(join(root, 'lnk'), 'utf8'), 'replaced');
    assert.ok((await lstat(join(root, 'lnk'))).isFile());
    assert.equal(await readFile(join(sandbox, 'victim'), 'utf8'), 'do not touch\n');
  });

  await t.test('a hardlink to a symlink pointing out links the symlink itself', async () => {
    await extractLayer(
      await tarOf([
        { name: 'pwlink', type: 'symlink', linkname: '/etc/passwd' },
        { name: 'hard', type: 'link', linkname: 'pwlink' },
      ]),
      root,
    );
    assert.ok((await lstat(join(root, 'hard'))).isSymbolicLink());
  });

  assert.equal(sha256(await readFile('/etc/passwd')), passwd);
  assert.deepEqual(await outside(), []);
});
