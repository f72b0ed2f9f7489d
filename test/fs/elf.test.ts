import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cString, parseDynamic, parseElfHead, type ElfHead } from '../../src/fs/elf.js';
import { buildPrograms, cc1Path, readelf, type ReadelfView } from './helpers/elf-programs.js';

/** What our parser reads from a whole file, in readelf's terms. */
function view(file: Buffer, headBytes = 4 << 20): ReadelfView | undefined {
  const head = parseElfHead(file.subarray(0, headBytes), file.length);
  if (!head) return undefined;
  const out: ReadelfView = { needed: [] };
  if (head.interp) out.interp = cString(file.subarray(head.interp.offset, head.interp.offset + head.interp.size), 0);
  const dyn = head.dynamic && parseDynamic(head, file.subarray(head.dynamic.offset, head.dynamic.offset + head.dynamic.size));
  if (dyn) {
    const names = file.subarray(dyn.names.offset, dyn.names.offset + dyn.names.size);
    out.needed = dyn.needed.map((at) => cString(names, at)!);
    if (dyn.runpath !== undefined) out.runpath = cString(names, dyn.runpath);
  }
  return out;
}

test('interpreter, needed libraries and run path are what readelf reads, for programs and libraries of the machine', { timeout: 60_000 }, async () => {
  const built = await buildPrograms();
  try {
    const files = ['/usr/bin/dash', '/usr/lib/x86_64-linux-gnu/libc.so.6', await cc1Path(), join(built.dir, 'prog'), join(built.dir, 'libfoo.so')];
    for (const f of files) {
      const ours = view(await readFile(f));
      assert.deepEqual(ours, await readelf(f), f);
    }
    assert.deepEqual(view(built.prog)?.needed, ['libfoo.so', 'libc.so.6']);
    assert.equal(view(built.prog)?.runpath, '$ORIGIN/../lib:/loop');
  } finally {
    await rm(built.dir, { recursive: true, force: true });
  }
});

test('cc1: its string table is megabytes long; only the span holding the names is asked for', { timeout: 30_000 }, async () => {
  const cc1 = await readFile(await cc1Path());
  const head = parseElfHead(cc1.subarray(0, 64 << 10), cc1.length)!;
  assert.ok(head.dynamic, 'cc1 is dynamically linked');
  const dyn = parseDynamic(head, cc1.subarray(head.dynamic.offset, head.dynamic.offset + head.dynamic.size))!;
  assert.ok(dyn.names.size <= 256 << 10, `names span ${dyn.names.size} bytes`);
  assert.ok(dyn.needed.length >= 3);
});

test('anything that is not a well-formed ELF64 LE program gives undefined, never an exception or a read out of bounds', { timeout: 60_000 }, async () => {
  const dash = await readFile('/usr/bin/dash');
  const real = parseElfHead(dash, dash.length)!;
  assert.ok(real.dynamic && real.interp && real.loads.length > 0);
  assert.equal(parseElfHead(Buffer.from('#!/bin/sh\necho hi\n'.padEnd(128)), 128), undefined, 'a script');
  assert.equal(parseElfHead(dash.subarray(0, 63), dash.length), undefined, 'shorter than the ELF header');
  // The program headers must be inside what was read: a head cut before their end is not followed.
  const phEnd = Number(dash.readBigUInt64LE(32)) + dash.readUInt16LE(56) * 56;
  assert.equal(parseElfHead(dash.subarray(0, phEnd - 1), dash.length), undefined);
  const elf32 = Buffer.from(dash.subarray(0, 4096));
  elf32[4] = 1;
  assert.equal(parseElfHead(elf32, dash.length), undefined, 'ELFCLASS32');
  const bigEndian = Buffer.from(dash.subarray(0, 4096));
  bigEndian[5] = 2;
  assert.equal(parseElfHead(bigEndian, dash.length), undefined, 'ELFDATA2MSB');
  // Segments past the file's end are ignored: a file claimed shorter keeps none of them.
  const shortFile = parseElfHead(dash, 1024);
  assert.equal(shortFile?.dynamic, undefined);
  // Every byte of the header and program headers set to each of a few values: parse never throws,
  // and whatever it gives points inside the file.
  const check = (h: ElfHead | undefined) => {
    for (const r of [h?.dynamic, h?.interp].filter((x) => x !== undefined)) assert.ok(r.offset + r.size <= dash.length);
  };
  for (let i = 0; i < phEnd; i++) {
    for (const v of [0x00, 0x7f, 0xff]) {
      const bad = Buffer.from(dash.subarray(0, 8192));
      bad[i] = v;
      const h = parseElfHead(bad, dash.length);
      check(h);
      if (h?.dynamic) parseDynamic(h, dash.subarray(h.dynamic.offset, h.dynamic.offset + h.dynamic.size));
    }
  }
  // A dynamic section of garbage, of zeros, or cut short names nothing it cannot back.
  assert.equal(parseDynamic(real, Buffer.alloc(496)), undefined);
  assert.equal(parseDynamic(real, Buffer.alloc(7)), undefined);
  const dyn = Buffer.from(dash.subarray(real.dynamic.offset, real.dynamic.offset + real.dynamic.size));
  for (let at = 0; at + 16 <= dyn.length; at += 16) dyn.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, at + 8);
  assert.equal(parseDynamic(real, dyn), undefined, 'values beyond 2^53');
  assert.equal(cString(Buffer.from('abc'), 0), undefined, 'a string without its NUL');
  assert.equal(cString(Buffer.from('abc\0'), 3), undefined, 'an empty string');
  assert.equal(cString(Buffer.from('abc\0'), 9), undefined, 'an offset past the table');
});
