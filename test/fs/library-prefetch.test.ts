import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import type { BlobSource } from '../../src/blob/source.js';
import { FsError } from '../../src/fs/errors.js';
import { setup } from './helpers/fixture.js';
import { buildLayer, noise, recording, type SpecEntry } from './helpers/layer.js';
import { buildPrograms, type BuiltPrograms } from './helpers/elf-programs.js';
import { gccNextFiles } from '../../src/fs/toolchain-prefetch.js';

const LIBC = '/usr/lib/x86_64-linux-gnu/libc.so.6';
const LD = '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';

/**
 * A merged-/usr image as Debian lays it out (`lib` and `lib64` are symlinks), with the program and
 * its libraries far apart in the blob (1 MiB of other bytes between any two), so that a neighbourhood
 * window never brings one along with another: whatever arrives early was fetched ahead.
 */
async function image(built: BuiltPrograms): Promise<SpecEntry[]> {
  let pad = 0;
  const apart = (s: SpecEntry): SpecEntry[] => [{ path: `pad${pad++}`, content: noise(1 << 20, pad) }, s];
  return [
    { path: 'lib', type: 'symlink', linkName: 'usr/lib' },
    { path: 'lib64', type: 'symlink', linkName: 'usr/lib64' },
    { path: 'loop', type: 'symlink', linkName: 'loop' },
    { path: 'etc' },
    ...apart({ path: 'etc/ld.so.cache', content: 'ld.so-1.7.0 (a cache the loader reads first)' }),
    { path: 'usr' },
    { path: 'usr/lib' },
    { path: 'usr/lib/x86_64-linux-gnu' },
    ...apart({ path: 'usr/lib/x86_64-linux-gnu/libc.so.6', content: await readFile(LIBC), mode: 0o755 }),
    ...apart({ path: 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', content: await readFile(LD), mode: 0o755 }),
    { path: 'usr/lib64' },
    { path: 'usr/lib64/ld-linux-x86-64.so.2', type: 'symlink', linkName: '../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' },
    { path: 'app' },
    { path: 'app/bin' },
    ...apart({ path: 'app/bin/prog', content: built.prog, mode: 0o755 }),
    ...apart({ path: 'app/bin/script', content: '#!/bin/sh\nexec /app/bin/prog\n', mode: 0o755 }),
    { path: 'app/lib' },
    ...apart({ path: 'app/lib/libfoo.so', content: built.libfoo, mode: 0o755 }),
    ...apart({ path: 'app/lib/libbar.so', content: built.libbar, mode: 0o755 }),
  ];
}

test('a program read from offset 0: its interpreter, its libraries and theirs (run paths, symlinks, a symlink loop) are fetched ahead; the loader then reads them without a request', { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  const layer = buildLayer(await image(built));
  const rec = recording(layer.blob);
  const { fs, metrics, cleanup } = await setup([{ ...layer, blob: rec.blob }]);
  /** Where a file's first chunk lies in the blob: what the loader's first read of it needs. */
  const firstChunk = (path: string) => layer.toc.entries.find((e) => `/${e.path}` === path)!.chunks[0]!;
  try {
    const head = await fs.read('/app/bin/prog', 0, 4096);
    assert.deepEqual(head, built.prog.subarray(0, 4096));
    await fs.libraries!.idle();
    // libfoo (RUNPATH $ORIGIN/../lib), libbar (libfoo's own RUNPATH $ORIGIN), libc (the multiarch
    // directory through the lib -> usr/lib symlink), the interpreter (/lib64/... -> ../lib/...), and
    // the loader's cache. (LazyFs reads take resolved paths: the kernel follows symlinks.) The /loop entry of the run path (a symlink to itself) resolves to nothing.
    assert.equal(metrics.filesAhead, 5);
    const before = rec.seen.length;
    const libraries = [
      ['/app/lib/libfoo.so', built.libfoo],
      ['/app/lib/libbar.so', built.libbar],
      [LIBC, await readFile(LIBC)],
      [LD, await readFile(LD)],
    ] as const;
    for (const [path, bytes] of libraries) assert.deepEqual(await fs.read(path, 0, 832), bytes.subarray(0, 832), path);
    // The reads may start read-ahead of what follows in each file; none asks for a first chunk again.
    for (const [path] of libraries) {
      const c = firstChunk(path);
      const again = rec.seen.slice(before).filter((r) => r.offset < c.end && r.offset + r.length > c.start);
      assert.deepEqual(again, [], `${path}: the loader finds its first chunk already fetched`);
    }
    // Each library is fetched ahead once: reading the program again, or another program needing
    // the same libraries, fetches nothing more.
    await fs.read('/app/bin/prog', 0, 4096);
    await fs.libraries!.idle();
    assert.equal(metrics.filesAhead, 5);
  } finally {
    await cleanup();
    await rm(built.dir, { recursive: true, force: true });
  }
});

test("glibc's start-up files the image has (NSS configuration and databases, the C.UTF-8 locale's LC_CTYPE, the gconv cache) are fetched ahead with libc, together and once; one over 1 MiB is not", { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  const start = {
    '/etc/nsswitch.conf': 'passwd: files\ngroup: files\n',
    '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
    '/etc/group': 'root:x:0:\n',
    '/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache': noise(30_000, 7),
  };
  const lcCtype = noise((1 << 20) + 1, 8); // too large to guess at
  const layer = buildLayer([
    ...(await image(built)),
    { path: 'etc/nsswitch.conf', content: start['/etc/nsswitch.conf'] },
    { path: 'etc/passwd', content: start['/etc/passwd'] },
    { path: 'etc/group', content: start['/etc/group'] },
    { path: 'pad-start', content: noise(1 << 20, 9) },
    { path: 'usr/lib/x86_64-linux-gnu/gconv' },
    { path: 'usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache', content: start['/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache'] },
    { path: 'usr/lib/locale' },
    { path: 'usr/lib/locale/C.utf8' },
    { path: 'usr/lib/locale/C.utf8/LC_CTYPE', content: lcCtype },
  ]);
  const rec = recording(layer.blob);
  const { fs, metrics, cleanup } = await setup([{ ...layer, blob: rec.blob }]);
  try {
    await fs.read('/app/bin/prog', 0, 4096);
    await fs.libraries!.idle();
    // The five of the first test, and the four start files of a size to guess at.
    assert.equal(metrics.filesAhead, 9);
    // The three of /etc, next to one another in the blob, came in one request.
    const chunk = (path: string) => layer.toc.entries.find((e) => `/${e.path}` === path)!.chunks[0]!;
    const readsOf = (path: string) => rec.seen.filter((r) => r.offset < chunk(path).end && r.offset + r.length > chunk(path).start);
    const etc = ['/etc/nsswitch.conf', '/etc/passwd', '/etc/group'].map(readsOf);
    assert.deepEqual(etc.map((reads) => reads.length), [1, 1, 1]);
    assert.equal(new Set(etc.map((reads) => reads[0])).size, 1);
    const before = rec.seen.length;
    for (const [path, content] of Object.entries(start)) assert.deepEqual(await fs.read(path, 0, 1 << 16), Buffer.from(content).subarray(0, 1 << 16), path);
    assert.deepEqual(rec.seen.slice(before), [], 'the start files were all there when read');
    await fs.read('/usr/lib/locale/C.utf8/LC_CTYPE', 0, 4096);
    assert.ok(rec.seen.length > before, 'the oversized one is fetched when read');
    await fs.read('/app/lib/libfoo.so', 0, 4096); // another program start: nothing more ahead
    await fs.libraries!.idle();
    assert.equal(metrics.filesAhead, 9);
  } finally {
    await cleanup();
    await rm(built.dir, { recursive: true, force: true });
  }
});

test("a mount's loader ahead of any program: the loader (through /lib64's symlinks), libc, the loader's cache and glibc's start files, once; a program then fetches only its own libraries; an image without a known loader, nothing", { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  const layer = buildLayer([...(await image(built)), { path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' }]);
  const rec = recording(layer.blob);
  const { fs, metrics, cleanup } = await setup([{ ...layer, blob: rec.blob }]);
  const chunk = (path: string) => layer.toc.entries.find((e) => `/${e.path}` === path)!.chunks[0]!;
  const readsOf = (path: string, from = 0) => rec.seen.slice(from).filter((r) => r.offset < chunk(path).end && r.offset + r.length > chunk(path).start);
  try {
    fs.libraries!.fetchLoader();
    fs.libraries!.fetchLoader();
    await fs.libraries!.idle();
    assert.equal(metrics.filesAhead, 4, 'loader, libc, /etc/ld.so.cache, /etc/passwd');
    for (const path of [LD, LIBC, '/etc/ld.so.cache', '/etc/passwd']) assert.equal(readsOf(path).length, 1, path);
    assert.deepEqual(readsOf('/app/bin/prog'), [], 'no program is guessed at');
    const before = rec.seen.length;
    await fs.read('/app/bin/prog', 0, 4096);
    await fs.libraries!.idle();
    assert.equal(metrics.filesAhead, 6, 'then libfoo and libbar only');
    for (const path of [LD, LIBC, '/etc/ld.so.cache']) assert.deepEqual(readsOf(path, before), [], `${path}: not fetched again`);
    for (const path of ['/app/lib/libfoo.so', '/app/lib/libbar.so']) assert.equal(readsOf(path, before).length, 1, path);
  } finally {
    await cleanup();
  }
  // A static image (no loader at any known path): nothing.
  const bare = await setup([buildLayer([{ path: 'app' }, { path: 'app/prog', content: built.prog, mode: 0o755 }, { path: 'etc' }, { path: 'etc/ld.so.cache', content: 'x' }])]);
  try {
    bare.fs.libraries!.fetchLoader();
    await bare.fs.libraries!.idle();
    assert.equal(bare.metrics.filesAhead, 0);
    assert.equal(bare.layerMetrics[0]!.requests, 0);
  } finally {
    await bare.cleanup();
    await rm(built.dir, { recursive: true, force: true });
  }
});

test("GCC's compiler proper starting: the programs the driver runs next (with their libraries) and the link inputs are fetched ahead, once; a link input over 4 MiB is not", { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  const gcc = 'usr/lib/gcc/x86_64-linux-gnu/12';
  const multiarch = 'usr/lib/x86_64-linux-gnu';
  let pad = 100;
  const apart = (s: SpecEntry): SpecEntry[] => [{ path: `gcc-pad${pad++}`, content: noise(1 << 20, pad) }, s];
  // Programs of the same bytes would share their chunks (content-addressed): each its own bytes.
  const own = (elf: Buffer, tag: string) => Buffer.concat([elf, Buffer.from(tag)]);
  const inputs = [`${gcc}/crtbeginS.o`, `${gcc}/crtendS.o`, `${gcc}/libgcc_s.so`, `${multiarch}/Scrt1.o`, `${multiarch}/crti.o`, `${multiarch}/crtn.o`, `${multiarch}/libc.so`, `${multiarch}/libc_nonshared.a`];
  const layer = buildLayer([
    ...(await image(built)),
    { path: 'usr/lib/gcc' },
    { path: 'usr/lib/gcc/x86_64-linux-gnu' },
    { path: gcc },
    ...apart({ path: `${gcc}/cc1`, content: own(built.libbar, 'cc1'), mode: 0o755 }),
    ...apart({ path: `${gcc}/collect2`, content: own(built.libbar, 'collect2'), mode: 0o755 }),
    ...apart({ path: `${gcc}/liblto_plugin.so`, content: own(built.libbar, 'liblto_plugin.so'), mode: 0o755 }),
    ...apart({ path: `${gcc}/cc1plus`, content: own(built.libbar, 'cc1plus'), mode: 0o755 }),
    ...apart({ path: `${gcc}/libgcc.a`, content: noise((4 << 20) + 1, 3), mode: 0o644 }),
    ...inputs.filter((p) => p.startsWith(gcc)).map((path, i) => ({ path, content: noise(5000 + i, 40 + i) })),
    { path: 'usr/bin' },
    // binutils' assembler needs libfoo (and so libbar), found in the multiarch directory.
    ...apart({ path: 'usr/bin/x86_64-linux-gnu-as', content: own(built.prog, 'as'), mode: 0o755 }),
    { path: 'usr/bin/as', type: 'symlink', linkName: 'x86_64-linux-gnu-as' },
    ...apart({ path: 'usr/bin/x86_64-linux-gnu-ld.bfd', content: own(built.prog, 'ld'), mode: 0o755 }),
    ...apart({ path: `${multiarch}/libfoo.so`, content: own(built.libfoo, 'foo'), mode: 0o755 }),
    ...apart({ path: `${multiarch}/libbar.so`, content: own(built.libbar, 'bar'), mode: 0o755 }),
    ...inputs.filter((p) => p.startsWith(multiarch)).map((path, i) => ({ path, content: noise(3000 + i, 60 + i) })),
  ]);
  const rec = recording(layer.blob);
  const { fs, cleanup } = await setup([{ ...layer, blob: rec.blob }]);
  try {
    const chunk = (path: string) => layer.toc.entries.find((e) => e.path === path)!.chunks[0]!;
    const fetched = (path: string) => rec.seen.some((r) => r.offset < chunk(path).end && r.offset + r.length > chunk(path).start);
    await fs.read(`/${gcc}/cc1`, 0, 4096);
    await fs.libraries!.idle();
    const ahead = [`${gcc}/collect2`, `${gcc}/liblto_plugin.so`, 'usr/bin/x86_64-linux-gnu-as', 'usr/bin/x86_64-linux-gnu-ld.bfd', `${multiarch}/libfoo.so`, `${multiarch}/libbar.so`, ...inputs];
    assert.deepEqual(ahead.filter((p) => !fetched(p)), [], 'fetched ahead of the driver');
    assert.ok(!fetched(`${gcc}/libgcc.a`) && !fetched(`${gcc}/cc1plus`));
    const before = rec.seen.length;
    for (const path of ahead) await fs.read(`/${path}`, 0, 1 << 20);
    assert.deepEqual(rec.seen.slice(before), [], 'all there when read');
    await fs.read(`/${gcc}/cc1plus`, 0, 4096); // another compiler start: nothing more ahead
    await fs.libraries!.idle();
    assert.ok(!fetched(`${gcc}/libgcc.a`), 'the oversized archive is left to the linker');
  } finally {
    await cleanup();
    await rm(built.dir, { recursive: true, force: true });
  }
});

test('gccNextFiles: only a compiler proper in GCC\'s directory, Debian\'s or /usr/libexec', () => {
  assert.equal(gccNextFiles('/app/bin/cc1'), undefined);
  assert.equal(gccNextFiles('/usr/lib/gcc/x86_64-linux-gnu/12/cc1.py'), undefined);
  const rh = gccNextFiles('/usr/libexec/gcc/x86_64-redhat-linux/13/cc1plus')!;
  assert.ok(rh.programs.includes('/usr/libexec/gcc/x86_64-redhat-linux/13/collect2'));
  assert.ok(rh.programs.includes('/usr/bin/x86_64-redhat-linux-as'));
  assert.ok(rh.inputs.includes('/usr/lib/gcc/x86_64-redhat-linux/13/crtbeginS.o'));
  assert.ok(rh.inputs.includes('/usr/lib/x86_64-redhat-linux/crti.o'));
});

test('no library is fetched ahead for a file that is not an ELF program, for a read not at offset 0, or with the prefetch turned off', { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  const layer = buildLayer(await image(built));
  const on = await setup([layer]);
  try {
    await on.fs.read('/app/bin/script', 0, 4096);
    await on.fs.read('/app/bin/prog', 4096, 4096);
    await on.fs.libraries!.idle();
    assert.equal(on.metrics.filesAhead, 0);
    assert.equal(on.layerMetrics[0]!.requests, 2);
  } finally {
    await on.cleanup();
  }
  const off = await setup([layer], { libraries: false });
  try {
    assert.equal(off.fs.libraries, undefined);
    await off.fs.read('/app/bin/prog', 0, 4096);
    assert.equal(off.metrics.filesAhead, 0);
    assert.equal(off.layerMetrics[0]!.requests, 1, 'only the program itself');
  } finally {
    await off.cleanup();
    await rm(built.dir, { recursive: true, force: true });
  }
});

test('a library fetch ahead of the loader that fails is not surfaced: the program reads, nothing is logged, the library is not followed; a later read of it fetches again (EIO while the blob fails, its bytes once it answers)', { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  const layer = buildLayer(await image(built));
  const libfoo = layer.toc.entries.find((e) => e.path === 'app/lib/libfoo.so')!.chunks[0]!;
  let failing = true;
  let failures = 0;
  const blob: BlobSource = {
    size: layer.blob.size,
    description: layer.blob.description,
    async read(offset, length) {
      if (failing && offset < libfoo.end && offset + length > libfoo.start) {
        failures++;
        throw new Error('the registry answered 503');
      }
      return layer.blob.read(offset, length);
    },
    close: () => layer.blob.close(),
  };
  const { fs, metrics, logs, cleanup } = await setup([{ ...layer, blob }]);
  try {
    assert.deepEqual(await fs.read('/app/bin/prog', 0, 4096), built.prog.subarray(0, 4096));
    await fs.libraries!.idle();
    assert.equal(failures, 1, 'the fetch of libfoo ahead of the loader failed');
    // libfoo, libc, the interpreter and the loader's cache; libbar, which only libfoo needs, is not reached.
    assert.equal(metrics.filesAhead, 4);
    assert.deepEqual(logs, []);
    // The failure was not kept: the loader's read fetches again, and fails as long as the blob does.
    await assert.rejects(fs.read('/app/lib/libfoo.so', 0, 832), (err: unknown) => err instanceof FsError && err.code === 'EIO');
    assert.equal(failures, 2);
    assert.equal(logs.length, 1);
    assert.match(logs[0]!, /app\/lib\/libfoo\.so.*503/);
    failing = false;
    assert.deepEqual(await fs.read('/app/lib/libfoo.so', 0, 832), built.libfoo.subarray(0, 832));
    assert.equal(failures, 2);
  } finally {
    await cleanup();
    await rm(built.dir, { recursive: true, force: true });
  }
});
