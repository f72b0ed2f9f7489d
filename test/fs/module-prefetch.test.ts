import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup } from './helpers/fixture.js';
import { buildLayer, noise, type SpecEntry } from './helpers/layer.js';
import { compileModules, type CompiledModules } from './helpers/python-modules.js';

const SOURCES = {
  'main.py': 'import os\nimport helper\nfrom pkg import sub\nimport _speedups\n\ndef later():\n    import lazy\n',
  'helper.py': 'X = 1\n',
  'lazy.py': 'Y = 2\n',
  'os.py': 'Z = 3\n',
  'pkg/__init__.py': '',
  'pkg/sub.py': 'from ._native import run\n',
  'encodings/__init__.py': 'import codecs\nfrom . import aliases\n',
  'encodings/aliases.py': 'aliases = {}\n',
  'encodings/utf_8.py': 'import codecs\n',
  'encodings/latin_1.py': 'import codecs\n',
  'sitecustomize.py': '',
};

/**
 * A Debian-like Python: the standard library with its __pycache__ (compiled by the machine's
 * python3), an extension module in lib-dynload and one in a package, and a source-only package in
 * dist-packages. Every file sits 1 MiB of other bytes away from the next in the blob, so that a
 * neighbourhood window never brings one along with another: whatever arrives early was fetched ahead.
 */
function image(m: CompiledModules): SpecEntry[] {
  const lib = `usr/lib/python${m.version}`;
  const so = `${m.tag}-x86_64-linux-gnu.so`;
  let pad = 0;
  const apart = (s: SpecEntry): SpecEntry[] => [{ path: `pad${pad++}`, content: noise(1 << 20, pad) }, s];
  const dirs = ['usr', 'usr/bin', 'usr/lib', lib, `${lib}/encodings`, `${lib}/encodings/__pycache__`, `${lib}/__pycache__`, `${lib}/lib-dynload`, `${lib}/pkg`, `${lib}/pkg/__pycache__`, 'usr/lib/python3', 'usr/lib/python3/dist-packages', 'usr/lib/python3/dist-packages/app'];
  const entries: SpecEntry[] = dirs.map((path) => ({ path }));
  for (const [src, text] of Object.entries(SOURCES)) {
    const slash = src.lastIndexOf('/');
    const cached = `${lib}/${src.slice(0, slash + 1)}__pycache__/${src.slice(slash + 1, -3)}.${m.tag}.pyc`;
    entries.push(...apart({ path: `${lib}/${src}`, content: text }), ...apart({ path: cached, content: m.pyc.get(src)! }));
  }
  entries.push(
    ...apart({ path: `usr/bin/python${m.version}`, content: noise(60 << 10, 49), mode: 0o755 }),
    // One chunk each: the loader's first read then starts no read-ahead of its own.
    ...apart({ path: `${lib}/lib-dynload/_speedups.${so}`, content: noise(60 << 10, 50) }),
    ...apart({ path: `${lib}/pkg/_native.${so}`, content: noise(60 << 10, 51) }),
    ...apart({ path: 'usr/lib/python3/dist-packages/app/__init__.py', content: 'from .core import run\nimport helper\nfrom ............ import escape\nif TYPE_CHECKING:\n    import typing_only\n' }),
    ...apart({ path: 'usr/lib/python3/dist-packages/app/core.py', content: 'import pkg.sub\n' }),
    ...apart({ path: 'usr/lib/python3/dist-packages/typing_only.py', content: 'T = 1\n' }),
    ...apart({ path: 'usr/lib/python3/dist-packages/escape.py', content: 'E = 1\n' }),
  );
  return entries;
}

test("a module's first read fetches the modules its top-level code imports (compiled and source, packages, extension modules), and theirs, at once; Python then reads them without a request", { timeout: 60_000 }, async () => {
  const m = await compileModules(SOURCES);
  const lib = `/usr/lib/python${m.version}`;
  const so = `${m.tag}-x86_64-linux-gnu.so`;
  const pyc = (name: string) => `${lib}/${name.includes('/') ? name.replace(/\/([^/]+)$/, '/__pycache__/$1') : `__pycache__/${name}`}.${m.tag}.pyc`;
  const { fs, metrics, layerMetrics, cleanup } = await setup([buildLayer(image(m))]);
  try {
    assert.deepEqual(await fs.read(pyc('main'), 0, 128 << 10), m.pyc.get('main.py'));
    await fs.modules!.idle();
    // helper, pkg/__init__, pkg/sub, lib-dynload/_speedups, then (from pkg/sub) pkg/_native. Not
    // `lazy` (imported in a function) nor `os` (frozen into CPython 3.11 and later).
    assert.ok(Number(m.tag.slice('cpython-3'.length)) >= 11, `this test expects CPython 3.11 or later, not ${m.tag}`);
    assert.equal(metrics.modulesAhead, 5);
    const requests = layerMetrics[0]!.requests;
    for (const name of ['helper', 'pkg/__init__', 'pkg/sub']) assert.deepEqual(await fs.read(pyc(name), 0, 128 << 10), m.pyc.get(`${name}.py`), name);
    for (const ext of [`${lib}/lib-dynload/_speedups.${so}`, `${lib}/pkg/_native.${so}`]) await fs.read(ext, 0, 4096);
    await fs.modules!.idle();
    assert.equal(layerMetrics[0]!.requests, requests, 'every module Python opens next was fetched ahead');
    for (const name of ['lazy', 'os']) {
      const before = layerMetrics[0]!.requests;
      await fs.read(pyc(name), 0, 4096);
      assert.equal(layerMetrics[0]!.requests, before + 1, `${name} was not fetched ahead`);
      await fs.modules!.idle();
    }

    // A source-only package: `.core` is fetched (helper already was); nothing under TYPE_CHECKING,
    // nothing for a relative import that climbs above the root.
    await fs.read('/usr/lib/python3/dist-packages/app/__init__.py', 0, 4096);
    await fs.modules!.idle();
    assert.equal(metrics.modulesAhead, 6);
    const after = layerMetrics[0]!.requests;
    assert.equal((await fs.read('/usr/lib/python3/dist-packages/app/core.py', 0, 4096)).toString(), 'import pkg.sub\n');
    assert.equal(layerMetrics[0]!.requests, after);
  } finally {
    await cleanup();
  }
});

test('nothing is fetched ahead of the importer for a read not at offset 0, for a file that is not a module, for modules that are garbage, or with the prefetch turned off', { timeout: 60_000 }, async () => {
  const m = await compileModules(SOURCES);
  const lib = `usr/lib/python${m.version}`;
  const garbage = Buffer.from(m.pyc.get('main.py')!);
  garbage.fill(0x28, 16); // a tuple of tuples of tuples… cut short
  const entries = [
    ...image(m),
    { path: `${lib}/__pycache__/broken.${m.tag}.pyc`, content: garbage },
    { path: `${lib}/broken_source.py`, content: noise(64 << 10, 9) },
    { path: `${lib}/not_python.txt`, content: 'import helper\n' },
  ];
  const on = await setup([buildLayer(entries)]);
  try {
    await on.fs.read(`/${lib}/__pycache__/main.${m.tag}.pyc`, 16, 4096);
    for (const path of [`/${lib}/__pycache__/broken.${m.tag}.pyc`, `/${lib}/broken_source.py`, `/${lib}/not_python.txt`]) await on.fs.read(path, 0, 128 << 10);
    await on.fs.modules!.idle();
    assert.equal(on.metrics.modulesAhead, 0);
    assert.deepEqual(on.logs, []);
  } finally {
    await on.cleanup();
  }
  const off = await setup([buildLayer(entries)], { modules: false });
  try {
    assert.equal(off.fs.modules, undefined);
    await off.fs.read(`/${lib}/__pycache__/main.${m.tag}.pyc`, 0, 128 << 10);
    assert.equal(off.metrics.modulesAhead, 0);
    assert.equal(off.layerMetrics[0]!.requests, 1, 'only the module itself');
  } finally {
    await off.cleanup();
  }
});

test('the interpreter read from offset 0 brings what CPython imports as it starts: the encodings package (and its own imports), the UTF-8 codec, sitecustomize', { timeout: 60_000 }, async () => {
  const m = await compileModules(SOURCES);
  const cached = (name: string) => `/usr/lib/python${m.version}/${name.replace(/([^/]+)$/, '__pycache__/$1')}.${m.tag}.pyc`;
  const { fs, metrics, layerMetrics, cleanup } = await setup([buildLayer(image(m))]);
  try {
    await fs.read(`/usr/bin/python${m.version}`, 0, 4096);
    await fs.modules!.idle();
    assert.equal(metrics.modulesAhead, 4, 'encodings/__init__, encodings/aliases, encodings/utf_8, sitecustomize');
    const requests = layerMetrics[0]!.requests;
    for (const name of ['encodings/__init__', 'encodings/aliases', 'encodings/utf_8', 'sitecustomize']) await fs.read(cached(name), 0, 128 << 10);
    assert.equal(layerMetrics[0]!.requests, requests);
    await fs.read(cached('encodings/latin_1'), 0, 128 << 10);
    assert.equal(layerMetrics[0]!.requests, requests + 1, 'another codec is not guessed');
  } finally {
    await cleanup();
  }
});

test('a third-party package an import finds is fetched whole, in a few requests: modules, extension modules, not its tests nor data; one over the bound is left to the chain', { timeout: 120_000 }, async () => {
  const site = '/usr/lib/python3/dist-packages';
  let pad = 0;
  const apart = (path: string, content: string | Buffer): SpecEntry[] => [{ path: `pad${pad++}`, content: noise(1 << 20, pad) }, { path, content }];
  // The files of one package lie together in a layer, as tar order puts them.
  const together = (path: string, content: string | Buffer): SpecEntry => ({ path, content });
  const dirs = ['usr', 'usr/lib', 'usr/lib/python3.11', 'usr/lib/python3', 'usr/lib/python3/dist-packages', ...['big', 'big/sub', 'big/tests', 'huge', 'huge/sub'].map((d) => `usr/lib/python3/dist-packages/${d}`)];
  const so = 'cpython-311-x86_64-linux-gnu.so';
  const entries: SpecEntry[] = [
    ...dirs.map((path) => ({ path })),
    ...apart('usr/lib/python3.11/main.py', 'import big\nimport huge\n'),
    ...apart(`${site.slice(1)}/big/__init__.py`, 'from . import core\n'),
    together(`${site.slice(1)}/big/core.py`, 'X = 1\n'),
    together(`${site.slice(1)}/big/sub/__init__.py`, 'Y = 1\n'),
    together(`${site.slice(1)}/big/sub/deep.py`, 'Z = 1\n'),
    together(`${site.slice(1)}/big/_ext.${so}`, noise(200 << 10, 7)),
    ...apart(`${site.slice(1)}/big/tests/test_core.py`, 'T = 1\n'),
    ...apart(`${site.slice(1)}/big/data.json`, '{}\n'),
    ...apart(`${site.slice(1)}/huge/__init__.py`, 'H = 1\n'),
    together(`${site.slice(1)}/huge/sub/__init__.py`, 'S = 1\n'),
    together(`${site.slice(1)}/huge/_blob.${so}`, noise(33 << 20, 8)),
    ...apart(`${site.slice(1)}/huge/sub/mod.py`, 'M = 1\n'),
  ];
  const { fs, layerMetrics, cleanup } = await setup([buildLayer(entries)]);
  const requests = () => layerMetrics[0]!.requests;
  try {
    await fs.read('/usr/lib/python3.11/main.py', 0, 4096);
    await fs.modules!.idle();
    const ahead = requests();
    assert.ok(ahead <= 4, `main's imports and big whole: ${ahead} requests`);
    for (const p of ['big/__init__.py', 'big/core.py', 'big/sub/__init__.py', 'big/sub/deep.py', `big/_ext.${so}`, 'huge/__init__.py']) {
      for (let off = 0; ; off += 128 << 10) if ((await fs.read(`${site}/${p}`, off, 128 << 10)).length === 0) break;
      assert.equal(requests(), ahead, `${p} was fetched ahead`);
    }
    for (const p of ['big/tests/test_core.py', 'big/data.json', 'huge/sub/mod.py']) {
      const before = requests();
      await fs.read(`${site}/${p}`, 0, 4096);
      assert.equal(requests(), before + 1, `${p} was not fetched ahead`);
    }
  } finally {
    await cleanup();
  }
});
