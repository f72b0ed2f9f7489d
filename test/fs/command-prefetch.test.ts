import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup } from './helpers/fixture.js';
import { buildLayer, noise, type SpecEntry } from './helpers/layer.js';

const PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * An image with a Python, a shell, a compiler and a few tools. Every file sits 1 MiB of other
 * bytes away from the next in the blob, so that a neighbourhood window never brings one along
 * with another: whatever a read finds already there was fetched ahead.
 */
function image(): SpecEntry[] {
  const lib = 'usr/lib/python3.11';
  let pad = 0;
  const apart = (s: SpecEntry): SpecEntry[] => [{ path: `pad${pad++}`, content: noise(1 << 20, pad) }, s];
  const dirs = ['bin', 'usr', 'usr/bin', 'usr/include', 'usr/lib', lib, `${lib}/encodings`, `${lib}/json`, 'srv', 'src', 'data'];
  const files: Record<string, string | Buffer> = {
    // Programs of several chunks (64 KiB each here): fetched whole.
    'usr/bin/python3.11': noise(300 << 10, 1),
    'bin/sh': noise(200 << 10, 2),
    'usr/bin/gcc-12': noise(200 << 10, 3),
    'usr/bin/sha256sum': noise(100 << 10, 4),
    'usr/bin/unused': noise(100 << 10, 5),
    [`${lib}/encodings/__init__.py`]: 'from . import aliases\n',
    [`${lib}/encodings/aliases.py`]: '',
    [`${lib}/encodings/utf_8.py`]: '',
    [`${lib}/json/__init__.py`]: 'from .decoder import JSONDecoder\n',
    [`${lib}/json/decoder.py`]: 'import re\n',
    [`${lib}/json/tool.py`]: 'import argparse\n',
    [`${lib}/re.py`]: '',
    [`${lib}/argparse.py`]: '',
    [`${lib}/unrelated.py`]: 'U = 1\n',
    'srv/app.py': 'import helper\n',
    'srv/helper.py': '',
    'srv/main.py': 'import json\n',
    'src/hello.c': '#include "hello.h"\n#include <stdio.h>\nint main(void) { return 0; }\n',
    'src/hello.h': '#define X 1\n',
    'usr/include/stdio.h': '#include <stddef.h>\n',
    'usr/include/stddef.h': '',
    'usr/include/stdc-predef.h': '',
    'data/blob': noise(2 << 20, 6),
  };
  const entries: SpecEntry[] = dirs.map((path) => ({ path }));
  entries.push({ path: 'usr/bin/python3', type: 'symlink', linkName: 'python3.11' }, { path: 'usr/bin/gcc', type: 'symlink', linkName: 'gcc-12' });
  for (const [path, content] of Object.entries(files)) entries.push(...apart({ path, content, mode: path.includes('bin/') ? 0o755 : 0o644 }));
  return entries;
}

/** Sends `argv` through the command prefetch, waits for every prefetch to settle, and returns a counter of requests from then on. */
async function prefetched(argv: string[], workingDir: string) {
  const f = await setup([buildLayer(image())]);
  f.fs.commands.fetch({ argv, env: { PATH }, workingDir });
  await f.fs.commands.idle();
  for (let settled = false; !settled; ) {
    await Promise.all([f.fs.libraries!.idle(), f.fs.modules!.idle(), f.fs.includes!.idle()]);
    const before = f.layerMetrics[0]!.requests;
    await new Promise((r) => setTimeout(r, 50));
    settled = f.layerMetrics[0]!.requests === before;
  }
  const requests = f.layerMetrics[0]!.requests;
  return { ...f, since: () => f.layerMetrics[0]!.requests - requests };
}

test("a Python command line: the interpreter (found along PATH, through its symlink) is fetched whole, with what CPython imports as it starts, what -c's code imports and theirs, and modules from the working directory; nothing else", { timeout: 60_000 }, async () => {
  const { fs, metrics, readAll, since, cleanup } = await prefetched(['python3', '-c', 'import json, app; print(1)'], '/srv');
  try {
    assert.equal(metrics.commandFiles, 1, 'the interpreter (the code is no file)');
    const lib = '/usr/lib/python3.11';
    for (const p of ['/usr/bin/python3', `${lib}/encodings/__init__.py`, `${lib}/encodings/aliases.py`, `${lib}/encodings/utf_8.py`, `${lib}/json/__init__.py`, `${lib}/json/decoder.py`, `${lib}/re.py`, '/srv/app.py', '/srv/helper.py']) {
      await readAll(p);
      assert.equal(since(), 0, `${p} was fetched ahead`);
    }
    await fs.read(`${lib}/unrelated.py`, 0, 4096);
    assert.equal(since(), 1, 'a module nothing imports is not fetched');
    await fs.read('/usr/bin/unused', 0, 4096);
    assert.equal(since(), 2, 'nor another program');
  } finally {
    await cleanup();
  }
});

test('a Python command line with options before -m fetches that module and its package; one naming a script follows the script', { timeout: 60_000 }, async () => {
  const lib = '/usr/lib/python3.11';
  const m = await prefetched(['/usr/bin/python3', '-X', 'dev', '-Bm', 'json.tool'], '/');
  try {
    for (const p of [`${lib}/json/__init__.py`, `${lib}/json/tool.py`, `${lib}/argparse.py`, `${lib}/json/decoder.py`]) {
      await m.readAll(p);
      assert.equal(m.since(), 0, `${p} was fetched ahead`);
    }
  } finally {
    await m.cleanup();
  }
  const s = await prefetched(['python3', '-u', 'main.py', '--verbose'], '/srv');
  try {
    for (const p of ['/srv/main.py', `${lib}/json/__init__.py`, `${lib}/json/decoder.py`]) {
      await s.readAll(p);
      assert.equal(s.since(), 0, `${p} was fetched ahead`);
    }
  } finally {
    await s.cleanup();
  }
});

test("a shell's -c script: each command's program (assignments and wrappers skipped), the small files its arguments name and what a C source includes; a large file is left to its reader", { timeout: 60_000 }, async () => {
  const { fs, metrics, readAll, since, cleanup } = await prefetched(['/bin/sh', '-ec', 'CC=cc exec gcc -O2 -o /tmp/hello hello.c && /tmp/hello; env LANG=C sha256sum /data/blob'], '/src');
  try {
    assert.equal(metrics.commandFiles, 4, 'sh, gcc, sha256sum, hello.c');
    for (const p of ['/bin/sh', '/usr/bin/gcc', '/usr/bin/sha256sum', '/src/hello.c', '/src/hello.h', '/usr/include/stdio.h', '/usr/include/stddef.h', '/usr/include/stdc-predef.h']) {
      await readAll(p);
      assert.equal(since(), 0, `${p} was fetched ahead`);
    }
    await fs.read('/data/blob', 0, 4096);
    assert.equal(since(), 1, 'a 2 MiB argument is not fetched ahead');
  } finally {
    await cleanup();
  }
});

test('nothing is fetched for a command the image does not have, an empty one, or one whose program is named through a variable', { timeout: 60_000 }, async () => {
  for (const argv of [['node', 'server.js'], [], ['/bin/sh', '-c', '$RUNNER --fast'], ['/srv/missing']]) {
    const { layerMetrics, since, cleanup } = await prefetched(argv, '/srv');
    try {
      const shell = argv[0] === '/bin/sh';
      assert.equal(layerMetrics[0]!.requests, shell ? 1 : 0, `${JSON.stringify(argv)}: ${shell ? 'the shell alone (its first chunk and the rest in one request)' : 'nothing'}`);
      assert.equal(since(), 0);
    } finally {
      await cleanup();
    }
  }
});

test('a command prefetch whose fetches fail settles quietly and caches nothing; reading the files then fetches them, right, once the registry answers', { timeout: 60_000 }, async () => {
  const layer = buildLayer(image());
  let down = true;
  const failing = {
    ...layer.blob,
    read: (offset: number, length: number) => (down ? Promise.reject(new Error('registry went away')) : layer.blob.read(offset, length)),
    close: () => layer.blob.close(),
  };
  const f = await setup([{ ...layer, blob: failing }]);
  try {
    f.fs.commands.fetch({ argv: ['python3', '-c', 'import json'], env: { PATH }, workingDir: '/srv' });
    await f.fs.commands.idle();
    await Promise.all([f.fs.libraries!.idle(), f.fs.modules!.idle()]);
    assert.equal(f.metrics.commandFiles, 1, 'the interpreter was sent for');
    down = false;
    const python = layer.toc.entries.find((e) => e.path === 'usr/bin/python3.11')!;
    const before = f.layerMetrics[0]!.requests;
    assert.deepEqual(await f.readAll('/usr/bin/python3.11'), noise(300 << 10, 1));
    assert.ok(f.layerMetrics[0]!.requests > before, `the interpreter (${python.chunks.length} chunks) was fetched when read: the failed prefetch cached none of it`);
    assert.deepEqual(await f.readAll('/usr/lib/python3.11/json/__init__.py'), Buffer.from('from .decoder import JSONDecoder\n'));
  } finally {
    await f.cleanup();
  }
});
