import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compiledImports } from '../../src/fs/pyc.js';
import { importsOfSource } from '../../src/fs/python-imports.js';
import { noise } from './helpers/layer.js';
import { compileModules } from './helpers/python-modules.js';

/** A module using every import form, with imports that never run at import time mixed in. */
const MODULE = `"""A docstring that mentions
import not_a_module
"""
import os, json.decoder as d
from . import sibling, other as o
from ..up import thing
from pkg.sub import (
    a,  # a comment
    b,
)
from mod import \\
    c
try:
    import fast
except ImportError:
    import slow
if TYPE_CHECKING:
    import typing_only

class K:
    import in_class

def f():
    import in_function
    if x:
        from lazy import y

async def g():
    import in_coroutine

import after_functions; import second
x = "import in_a_string"  # import in_a_comment
`;

const EXPECTED = [
  { level: 0, name: 'os' },
  { level: 0, name: 'json.decoder' },
  { level: 1, name: 'sibling' },
  { level: 1, name: 'other' },
  { level: 2, name: 'up' },
  { level: 2, name: 'up.thing' },
  { level: 0, name: 'pkg.sub' },
  { level: 0, name: 'pkg.sub.a' },
  { level: 0, name: 'pkg.sub.b' },
  { level: 0, name: 'mod' },
  { level: 0, name: 'mod.c' },
  { level: 0, name: 'fast' },
  { level: 0, name: 'slow' },
  { level: 0, name: 'in_class' },
  { level: 0, name: 'after_functions' },
  { level: 0, name: 'second' },
];

test('a source file: its module-level imports in order (try/except and class bodies included), not those in functions, under TYPE_CHECKING, in strings or comments', () => {
  assert.deepEqual(importsOfSource(MODULE), EXPECTED);
});

test('a pyc compiled by python3: the imports of its top-level code, with their levels, read from the bytecode', { timeout: 60_000 }, async () => {
  const { pyc } = await compileModules({ 'pkg/mod.py': MODULE.replace('if TYPE_CHECKING:\n    import typing_only\n', '') });
  // Class bodies are code objects of their own, run at import but not read here: the one thing the source scan finds and the bytecode reading does not.
  assert.deepEqual(
    compiledImports(pyc.get('pkg/mod.py')!),
    EXPECTED.filter((i) => i.name !== 'in_class'),
  );
});

test('a damaged pyc gives undefined, never an exception: every truncation, flipped bytes, another magic number, hostile lengths and nesting', { timeout: 60_000 }, async () => {
  const { pyc } = await compileModules({ 'm.py': MODULE });
  const good = pyc.get('m.py')!;
  assert.ok(compiledImports(good)!.length > 0);
  for (let n = 0; n < good.length; n++) assert.equal(compiledImports(good.subarray(0, n)), undefined, `truncated to ${n} bytes`);
  // Flipped bytes after the header: any answer but an exception (a flip inside a string still parses).
  const rand = noise(4096, 7);
  for (let i = 0; i < 2000; i++) {
    const bad = Buffer.from(good);
    const at = 16 + (rand.readUInt16LE((i * 2) % 4094) % (good.length - 16));
    bad[at] = rand[i % 4096]!;
    const got = compiledImports(bad);
    assert.ok(got === undefined || Array.isArray(got));
  }
  const header = good.subarray(0, 16);
  const other = Buffer.from(good);
  other.writeUInt16LE(3000, 0);
  assert.equal(compiledImports(other), undefined, 'a magic number of no layout known here');
  const hostile = (body: number[]) => compiledImports(Buffer.concat([header, Buffer.from(body)]));
  assert.equal(hostile([0x28, 0xff, 0xff, 0xff, 0x7f]), undefined, 'a tuple of 2^31 - 1 items');
  assert.equal(hostile([0x73, 0x00, 0x00, 0x00, 0x80]), undefined, 'a negative bytes length');
  assert.equal(hostile([0x72, 0x05, 0x00, 0x00, 0x00]), undefined, 'a reference to nothing');
  assert.equal(hostile(new Array(100_000).fill(0x5b).flatMap((b) => [b, 1, 0, 0, 0])), undefined, 'lists nested 100 000 deep');
});
