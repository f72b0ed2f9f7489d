// The streaming tar reader against tars written by Python's tarfile (an independent writer): GNU
// long names/links and base-256 numbers, PAX records incl. a global header, raw header pass-through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { TarReader, type RawTarEntry } from '../../../src/format/estargz/tar-reader.js';

const run = promisify(execFile);

/** A tar made by Python's tarfile; `body` adds members to `t` (a TarFile writing to a BytesIO). */
async function pythonTar(format: 'GNU_FORMAT' | 'PAX_FORMAT', body: string, extra = ''): Promise<Buffer> {
  const script = `
import io, sys, tarfile
buf = io.BytesIO()
t = tarfile.open(fileobj=buf, mode='w', format=tarfile.${format}${extra})
def add(name, data=b'', **kw):
    info = tarfile.TarInfo(name)
    for k, v in kw.items(): setattr(info, k, v)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
${body}
t.close()
sys.stdout.buffer.write(buf.getvalue())
`;
  const { stdout } = await run('python3', ['-c', script], { encoding: 'buffer', maxBuffer: 16 << 20 });
  return stdout;
}

async function readAll(tar: Buffer, pieceSize = 7): Promise<{ entry: RawTarEntry; content: Buffer }[]> {
  // Feed the tar in odd-sized pieces so headers and payloads straddle chunk boundaries.
  const pieces: Buffer[] = [];
  for (let i = 0; i < tar.length; i += pieceSize) pieces.push(tar.subarray(i, i + pieceSize));
  const reader = new TarReader(Readable.from(pieces));
  const out: { entry: RawTarEntry; content: Buffer }[] = [];
  for (let e = await reader.next(); e; e = await reader.next()) {
    const parts: Buffer[] = [];
    for (let p = await reader.readPayload(1000); p; p = await reader.readPayload(1000)) parts.push(Buffer.from(p));
    out.push({ entry: e, content: Buffer.concat(parts) });
  }
  return out;
}

test('GNU format: long names and link names, base-256 uid, every entry type', async () => {
  const long = 'd/' + 'n'.repeat(150);
  const tar = await pythonTar(
    'GNU_FORMAT',
    `
add('${long}', b'long content', uid=0o77777777 + 5, mtime=1700000000)
add('sym', type=tarfile.SYMTYPE, linkname='${'t'.repeat(120)}')
add('hard', type=tarfile.LNKTYPE, linkname='${long}')
add('dir/', type=tarfile.DIRTYPE, mode=0o1777)
add('cdev', type=tarfile.CHRTYPE, devmajor=4, devminor=64)
add('fifo', type=tarfile.FIFOTYPE)
`,
  );
  const entries = await readAll(tar);
  assert.deepEqual(
    entries.map(({ entry }) => [entry.header.name, entry.header.type]),
    [[long, 'file'], ['sym', 'symlink'], ['hard', 'link'], ['dir/', 'directory'], ['cdev', 'character-device'], ['fifo', 'fifo']],
  );
  const first = entries[0]!;
  assert.equal(first.content.toString(), 'long content');
  assert.equal(first.entry.header.uid, 0o77777777 + 5);
  assert.equal(first.entry.header.mtime?.getTime(), 1_700_000_000_000);
  assert.equal(entries[1]!.entry.header.linkname, 't'.repeat(120));
  assert.equal(entries[2]!.entry.header.linkname, long);
  assert.equal(entries[3]!.entry.header.mode, 0o1777);
  assert.deepEqual([entries[4]!.entry.header.devmajor, entries[4]!.entry.header.devminor], [4, 64]);
  // raw = the GNU 'L' block + name data + the header block, byte for byte as in the input.
  assert.equal(first.entry.raw.length, 512 + 512 + 512);
  assert.deepEqual(first.entry.raw, tar.subarray(0, first.entry.raw.length));
});

test('PAX format: global header, path/uid/mtime records and binary xattrs', async () => {
  const tar = await pythonTar(
    'PAX_FORMAT',
    `
info = tarfile.TarInfo('${'p'.repeat(120)}/ü.txt')
info.size = 3
info.uid = 1 << 30
info.mtime = 1700000000.75
info.pax_headers = {'SCHILY.xattr.user.bin': '\\udcff\\x00a'}
t.addfile(info, io.BytesIO(b'abc'))
`,
    ", pax_headers={'comment': 'global'}, encoding='utf-8', errors='surrogateescape'",
  );
  const entries = await readAll(tar, 13);
  assert.equal(entries.length, 1);
  const h = entries[0]!.entry.header;
  assert.equal(h.name, `${'p'.repeat(120)}/ü.txt`);
  assert.equal(h.uid, 1 << 30);
  assert.equal(h.pax?.mtime, '1700000000.75');
  assert.equal(h.pax?.comment, 'global', 'global records apply to later entries');
  assert.deepEqual(Buffer.from(h.pax!['SCHILY.xattr.user.bin']!, 'latin1'), Buffer.from([0xff, 0x00, 0x61]));
  assert.equal(entries[0]!.content.toString(), 'abc');
});
