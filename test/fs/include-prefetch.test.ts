import { test } from 'node:test';
import assert from 'node:assert/strict';
import { includesOf } from '../../src/fs/c-includes.js';
import type { FsError } from '../../src/fs/errors.js';
import { setup } from './helpers/fixture.js';
import { buildLayer, noise, type SpecEntry } from './helpers/layer.js';

const GCC = 'usr/lib/gcc/x86_64-linux-gnu/12/include';

/** A Debian-like toolchain's headers and a source tree; every file 1 MiB of other bytes away from the next in the blob, so that a neighbourhood window never brings one along with another. */
function image(): SpecEntry[] {
  const files: Record<string, string> = {
    'src/hello.c': '#include <stdio.h>\n#include "hello.h"\n/* #include <commented.h> */\n// #include <commented.h>\n#include CONFIG_H\nint main(void) { return 0; }\n',
    'src/hello.h': '#include <stddef.h>\n#include "missing-local.h"\n',
    'src/app.cc': '#include <vector>\n',
    'usr/include/stdc-predef.h': '/* predefined */\n',
    'usr/include/stdio.h': '#include <bits/libc-header-start.h>\n#define __need_size_t\n#include <stddef.h>\n#include <bits/types.h>\n',
    'usr/include/x86_64-linux-gnu/bits/libc-header-start.h': '#include <features.h>\n',
    'usr/include/x86_64-linux-gnu/bits/types.h': '#include <features.h>\n#include <bits/wordsize.h>\n',
    'usr/include/x86_64-linux-gnu/bits/wordsize.h': '#define __WORDSIZE 64\n',
    'usr/include/features.h': '#include <stdio.h>\n', // a cycle
    'usr/include/stddef.h': '/* glibc has none; ours is only for #include_next */\n',
    [`${GCC}/stddef.h`]: '#include_next <stddef.h>\n',
    'usr/include/c++/12/vector': '#include <bits/stl_vector.h>\n#include <stdlib.h>\n',
    'usr/include/c++/12/bits/stl_vector.h': '/* vector */\n',
    'usr/include/c++/12/stdlib.h': '#include_next <stdlib.h>\n',
    'usr/include/stdlib.h': '/* stdlib */\n',
    // Apart from the headers read (reading files of one directory in turn preloads their siblings).
    'usr/local/include/commented.h': '/* not included */\n',
  };
  const dirs = ['src', 'usr', 'usr/local', 'usr/local/include', 'usr/include', 'usr/include/x86_64-linux-gnu', 'usr/include/x86_64-linux-gnu/bits', 'usr/include/c++', 'usr/include/c++/12', 'usr/include/c++/12/bits', 'usr/lib', 'usr/lib/gcc', 'usr/lib/gcc/x86_64-linux-gnu', 'usr/lib/gcc/x86_64-linux-gnu/12', GCC];
  const entries: SpecEntry[] = dirs.map((path) => ({ path }));
  let pad = 0;
  for (const [path, content] of Object.entries(files)) entries.push({ path: `pad${pad++}`, content: noise(1 << 20, pad) }, { path, content });
  return entries;
}

test('#include lines as the preprocessor sees them: angle, quoted and include_next; not in comments; a macro names nothing', () => {
  assert.deepEqual(includesOf('#include <a.h>\n  #  include "b/c.h"\n/* #include <no.h>\n#include <no2.h> */ #include <d.h>\n// #include <no3.h>\nint x; #include <no4.h>\n#include_next <e.h>\n#include FOO\n#import <f.h>\n'), [
    { name: 'a.h', quoted: false, next: false },
    { name: 'b/c.h', quoted: true, next: false },
    { name: 'd.h', quoted: false, next: false },
    { name: 'e.h', quoted: false, next: true },
    { name: 'f.h', quoted: false, next: false },
  ]);
  assert.equal(includesOf('#include <x.h>\n'.repeat(1000)).length, 256, 'bounded');
});

test("a C source's first read fetches the headers the compiler will open (gcc's directories in gcc's order, quoted beside the file, include_next past the including directory), and theirs, at once; reading them then costs no request", { timeout: 60_000 }, async () => {
  const { fs, metrics, layerMetrics, cleanup } = await setup([buildLayer(image())]);
  try {
    await fs.read('/src/hello.c', 0, 4096);
    await fs.includes!.idle();
    const ahead = ['/usr/include/stdc-predef.h', '/usr/include/stdio.h', '/src/hello.h', `/${GCC}/stddef.h`, '/usr/include/stddef.h', '/usr/include/x86_64-linux-gnu/bits/libc-header-start.h', '/usr/include/x86_64-linux-gnu/bits/types.h', '/usr/include/features.h', '/usr/include/x86_64-linux-gnu/bits/wordsize.h'];
    assert.equal(metrics.headersAhead, ahead.length);
    const requests = layerMetrics[0]!.requests;
    for (const path of ahead) await fs.read(path, 0, 4096);
    await fs.includes!.idle();
    assert.equal(layerMetrics[0]!.requests, requests, 'every header the compiler opens next was fetched ahead');
    await fs.read('/usr/local/include/commented.h', 0, 4096);
    assert.equal(layerMetrics[0]!.requests, requests + 1, 'a header named only in comments was not fetched ahead');

    // C++: the library's headers (no suffix) first, and its stdlib.h wrapping glibc's.
    await fs.read('/src/app.cc', 0, 4096);
    await fs.includes!.idle();
    assert.equal(metrics.headersAhead, ahead.length + 4, 'vector, bits/stl_vector.h, c++/12/stdlib.h, stdlib.h');
    const after = layerMetrics[0]!.requests;
    for (const path of ['/usr/include/c++/12/vector', '/usr/include/c++/12/bits/stl_vector.h', '/usr/include/c++/12/stdlib.h', '/usr/include/stdlib.h']) await fs.read(path, 0, 4096);
    assert.equal(layerMetrics[0]!.requests, after);
  } finally {
    await cleanup();
  }
});

test('nothing is fetched ahead of the compiler for a read not at offset 0, for a file that is neither source nor header, or with the prefetch turned off', { timeout: 60_000 }, async () => {
  const entries = [...image(), { path: 'src/notes.txt', content: '#include <stdio.h>\n' }, { path: 'src/binary.h', content: noise(64 << 10, 7) }];
  const on = await setup([buildLayer(entries)]);
  try {
    await on.fs.read('/src/hello.c', 1, 4096);
    await on.fs.read('/src/notes.txt', 0, 4096);
    await on.fs.read('/src/binary.h', 0, 128 << 10);
    await on.fs.includes!.idle();
    assert.equal(on.metrics.headersAhead, 0);
    assert.deepEqual(on.logs, []);
  } finally {
    await on.cleanup();
  }
  const off = await setup([buildLayer(entries)], { includes: false });
  try {
    assert.equal(off.fs.includes, undefined);
    await off.fs.read('/src/hello.c', 0, 4096);
    assert.equal(off.metrics.headersAhead, 0);
    assert.equal(off.layerMetrics[0]!.requests, 1, 'only the source itself');
  } finally {
    await off.cleanup();
  }
});

test('a header fetched ahead whose chunk does not verify: the others still come, the compiler reading it gets EIO, never wrong bytes', { timeout: 60_000 }, async () => {
  const layers = [buildLayer(image())];
  const stdio = layers[0]!.toc.entries.find((e) => e.path === 'usr/include/stdio.h')!;
  layers[0]!.bytes[stdio.chunks[0]!.start + 12] ^= 0xff;
  const { fs, metrics, layerMetrics, cleanup } = await setup(layers);
  try {
    await fs.read('/src/hello.c', 0, 4096);
    await fs.includes!.idle();
    // stdio.h was sent for, but not followed: its own includes are not fetched.
    assert.equal(metrics.headersAhead, 5, 'stdc-predef.h, stdio.h, hello.h, then stddef.h (gcc\'s) and the stddef.h it includes next');
    assert.equal(layerMetrics[0]!.verificationFailures, 1);
    const requests = layerMetrics[0]!.requests;
    assert.equal((await fs.read('/src/hello.h', 0, 4096)).toString(), '#include <stddef.h>\n#include "missing-local.h"\n');
    assert.equal(layerMetrics[0]!.requests, requests);
    await assert.rejects(fs.read('/usr/include/stdio.h', 0, 4096), (e: FsError) => e.code === 'EIO');
  } finally {
    await cleanup();
  }
});
