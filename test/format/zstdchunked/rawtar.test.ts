// The raw tar parser on tars written by GNU tar in each format: names (prefix, GNU long names, PAX),
// base-256 ids, nanosecond PAX times, legacy '\0' typeflags, and every byte accounted for.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { formatGoTime } from '../../../src/format/zstdchunked/manifest.js';
import { RawTarParser, TarFormatError, type TarHeader } from '../../../src/format/zstdchunked/rawtar.js';
import { tempDir } from '../../helpers/temp-dir.js';

const run = promisify(execFile);

/** Parses a tar, returning its headers and all bytes handed out, in order. */
function parse(tar: Buffer, piece = 333): { headers: TarHeader[]; bytes: Buffer } {
  const headers: TarHeader[] = [];
  const parts: Buffer[] = [];
  const p = new RawTarParser({
    entry: (h, raw) => {
      headers.push(h);
      parts.push(...raw);
    },
    payload: (b) => parts.push(Buffer.from(b)),
    entryEnd: () => undefined,
    end: (raw) => parts.push(...raw),
    trailing: (b) => parts.push(Buffer.from(b)),
  });
  for (let i = 0; i < tar.length; i += piece) p.feed(tar.subarray(i, i + piece));
  p.finish();
  return { headers, bytes: Buffer.concat(parts) };
}

describe('RawTarParser', () => {
  let root: string;
  const long = `${'d'.repeat(90)}/${'e'.repeat(90)}/file-with-a-long-name.txt`;
  // ustar holds > 100 bytes only through its 155-byte prefix field.
  const prefixed = `${'d'.repeat(90)}/${'f'.repeat(60)}-in-the-prefix-case.txt`;
  before(async () => {
    const dir = await tempDir('starling-rawtar-');
    root = join(dir, 'root');
    await mkdir(join(root, 'd'.repeat(90), 'e'.repeat(90)), { recursive: true });
    await writeFile(join(root, long), 'x'.repeat(700));
    await run('touch', ['-d', '2021-03-04 05:06:07.123456789 UTC', join(root, long)]);
    await writeFile(join(root, prefixed), 'y'.repeat(700));
  });

  const pathFor = (format: string) => (format === 'ustar' ? prefixed : long);
  async function tarOf(format: string, extra: string[] = []): Promise<Buffer> {
    const out = join(root, '..', `t-${format}.tar`);
    await run('tar', ['-C', root, '-cf', out, `--format=${format}`, ...extra, pathFor(format)]);
    return readFile(out);
  }

  for (const format of ['gnu', 'pax', 'ustar']) {
    it(`reads the long name of a ${format} tar and accounts for every byte`, async () => {
      const tar = await tarOf(format);
      const { headers, bytes } = parse(tar);
      assert.equal(headers.length, 1);
      assert.equal(headers[0]!.name, pathFor(format));
      assert.equal(headers[0]!.size, 700);
      assert.equal(headers[0]!.typeflag, '0');
      assert.deepEqual(bytes, tar);
      assert.deepEqual(parse(tar, 1).bytes, tar);
    });
  }

  it('keeps PAX times to the nanosecond and formats them as Go does', async () => {
    const { headers } = parse(await tarOf('pax'));
    assert.deepEqual(headers[0]!.mtime, { sec: 1614834367, nsec: 123456789 });
    assert.equal(formatGoTime(headers[0]!.mtime), '2021-03-04T05:06:07.123456789Z');
    assert.equal(formatGoTime({ sec: 0, nsec: 500_000_000 }), '1970-01-01T00:00:00.5Z');
  });

  it('reads base-256 ids (GNU tar writes them for ids beyond octal)', async () => {
    const { headers } = parse(await tarOf('gnu', ['--owner=3000000000', '--group=77777777', '--numeric-owner']));
    assert.equal(headers[0]!.uid, 3000000000);
    assert.equal(headers[0]!.gid, 77777777);
  });

  it("maps the legacy '\\0' typeflag to a file, or to a directory for a name ending in '/'", async () => {
    // An empty file, so the header can become a directory's without leaving payload behind.
    await writeFile(join(root, 'empty'), '');
    await run('tar', ['-C', root, '-cf', join(root, '..', 'empty.tar'), '--format=ustar', 'empty']);
    const tar = await readFile(join(root, '..', 'empty.tar'));
    const setType = (name: string, type: number) => {
      tar.fill(0, 0, 100);
      tar.write(name, 0, 'latin1');
      tar.fill(0, 345, 500); // no prefix
      tar[156] = type;
      tar.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += tar[i]!;
      tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    };
    setType('legacy-file', 0);
    assert.equal(parse(tar).headers[0]!.typeflag, '0');
    setType('legacy-dir/', 0);
    assert.equal(parse(tar).headers[0]!.typeflag, '5');
  });

  it('refuses a zero block followed by data, and a corrupt header', async () => {
    const tar = await tarOf('gnu');
    assert.throws(() => parse(Buffer.concat([Buffer.alloc(512), tar])), (e: Error) => e instanceof TarFormatError && /zero block followed by a non-zero block/.test(e.message));
    const bad = Buffer.from(tar);
    bad[10] ^= 1;
    assert.throws(() => parse(bad), /checksum mismatch/);
  });
});
