import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { convertLayer } from '../../src/convert/layer.js';
import { hasEstargzFooter, stripEstargzEntries } from '../../src/convert/strip-estargz.js';
import { FileBlob } from '../../src/blob/source.js';
import { sha256 } from '../../src/oci/digest.js';
import { writeFilesTar } from '../fixtures/image.js';

const run = promisify(execFile);

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-convert-layer-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function drain(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const FILES = {
  'etc/hello': 'hello world\n',
  'usr/bin/tool': Buffer.alloc(300_000, 7),
  'usr/share/doc/readme': 'r'.repeat(5000),
  'empty': '',
};

async function fixtureTar(dir: string): Promise<{ path: string; bytes: Buffer }> {
  const path = join(dir, 'in.tar');
  await writeFilesTar(FILES, path);
  return { path, bytes: await readFile(path) };
}

async function tarList(path: string, flag: string): Promise<string[]> {
  const { stdout } = await run('tar', [`-t${flag}f`, path]);
  return stdout.split('\n').filter((l) => l !== '');
}

test('gzip tar → eStargz: a valid tar.gz whose diffID is the sha256 of its decompressed bytes', async (t) => {
  const dir = await tmp(t);
  const { bytes } = await fixtureTar(dir);
  const out = join(dir, 'out.estargz');
  const r = await convertLayer(Readable.from([gzipSync(bytes)]), out, { format: 'estargz', chunkSize: 100_000, level: 6 });
  const blob = await readFile(out);
  assert.equal(r.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.equal(r.digest, sha256(blob));
  assert.equal(r.size, blob.length);
  assert.equal(r.inputCompression, 'gzip');
  assert.equal(r.inputDiffID, sha256(bytes));
  assert.equal(r.diffID, sha256(gunzipSync(blob)));
  assert.notEqual(r.diffID, r.inputDiffID);
  assert.equal(r.annotations['containerd.io/snapshot/stargz/toc.digest'], r.tocDigest);
  assert.equal(r.annotations['io.containers.estargz.uncompressed-size'], String(gunzipSync(blob).length));
  await run('gzip', ['-t', out]);
  const names = await tarList(out, 'z');
  assert.ok(names.includes('stargz.index.json') && names.includes('.no.prefetch.landmark') && names.includes('usr/bin/tool'));
  // No temporary file left next to the output.
  assert.deepEqual((await readdir(dir)).sort(), ['in.tar', 'out.estargz']);
  const fb = await FileBlob.open(out);
  assert.equal(await hasEstargzFooter(fb), true);
  await fb.close();
});

test('plain tar → zstd:chunked keeps every byte: zstd -d gives the input, diffID unchanged', async (t) => {
  const dir = await tmp(t);
  const { path, bytes } = await fixtureTar(dir);
  const out = join(dir, 'out.zst');
  const r = await convertLayer(createReadStream(path), out, { format: 'zstd:chunked', level: 3 });
  assert.equal(r.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  assert.equal(r.inputCompression, 'none');
  assert.equal(r.diffID, sha256(bytes));
  assert.equal(r.inputDiffID, r.diffID);
  assert.equal(r.annotations['io.github.containers.zstd-chunked.manifest-checksum'], r.tocDigest);
  assert.ok(!('containerd.io/snapshot/stargz/toc.digest' in r.annotations));
  const { stdout } = await run('sh', ['-c', `zstd -dc '${out}' | sha256sum`]);
  assert.equal(`sha256:${stdout.split(' ')[0]}`, sha256(bytes));
  const fb = await FileBlob.open(out);
  assert.equal(await hasEstargzFooter(fb), false);
  await fb.close();
});

test('eStargz → zstd:chunked drops the TOC entry and landmarks, and nothing else', async (t) => {
  const dir = await tmp(t);
  const { bytes } = await fixtureTar(dir);
  const esgz = join(dir, 'a.estargz');
  await convertLayer(Readable.from([bytes]), esgz, { format: 'estargz', prioritizedFiles: ['etc/hello'] });
  const out = join(dir, 'b.zst');
  const r = await convertLayer(createReadStream(esgz), out, { format: 'zstd:chunked', stripEstargz: true });
  const names = await run('sh', ['-c', `zstd -dc '${out}' | tar -t`]);
  const list = names.stdout.split('\n').filter((l) => l !== '');
  assert.ok(!list.some((n) => n === 'stargz.index.json' || n.endsWith('landmark')), list.join(','));
  assert.deepEqual([...list].sort(), (await tarList(join(dir, 'in.tar'), '')).sort());
  // The input digest is of the eStargz tar (what the source config records), the output's of the stripped tar.
  assert.equal(r.inputDiffID, sha256(gunzipSync(await readFile(esgz))));
  assert.notEqual(r.diffID, r.inputDiffID);
  // Without prioritized files eStargz keeps entry order, so stripping restores tar-stream's exact bytes.
  const plain = join(dir, 'c.estargz');
  await convertLayer(Readable.from([bytes]), plain, { format: 'estargz' });
  assert.equal(sha256(await drain(stripEstargzEntries(Readable.from([gunzipSync(await readFile(plain))])))), sha256(bytes));
});

test('bad input fails with a clear error and leaves no output', async (t) => {
  const dir = await tmp(t);
  const { bytes } = await fixtureTar(dir);
  const out = join(dir, 'out');
  const cases: Array<[string, () => Readable, RegExp]> = [
    ['not a tar', () => Readable.from([Buffer.alloc(4096, 0x41)]), /not a tar|tar header/],
    ['empty input', () => Readable.from([Buffer.alloc(0)]), /not a tar|empty/],
    ['truncated tar', () => Readable.from([bytes.subarray(0, 2048 + 100)]), /truncated|ended/i],
    ['truncated gzip', () => Readable.from([gzipSync(bytes).subarray(0, gzipSync(bytes).length - 30)]), /unexpected end|truncated/i],
    ['corrupt zstd', () => Readable.from([Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100, 0x55)])]), /zstd/],
    [
      'input stream error at the end',
      () => {
        const s = new PassThrough();
        s.write(bytes);
        setTimeout(() => s.destroy(new Error('blob sha256:abc: digest mismatch')), 20);
        return s;
      },
      /digest mismatch/,
    ],
  ];
  for (const format of ['estargz', 'zstd:chunked'] as const) {
    for (const [what, input, re] of cases) {
      await assert.rejects(convertLayer(input(), out, { format }), re, `${format}: ${what}`);
      assert.deepEqual((await readdir(dir)).sort(), ['in.tar'], `${format}: ${what} left files behind`);
    }
  }
  await assert.rejects(convertLayer(Readable.from([bytes]), out, { format: 'zstd:chunked', chunkSize: 1000 }), /chunk size applies to estargz only/);
  await assert.rejects(convertLayer(Readable.from([bytes]), out, { format: 'zstd:chunked', prioritizedFiles: ['a'] }), /prioritized files apply to estargz only/);
  await assert.rejects(convertLayer(Readable.from([bytes]), out, { format: 'estargz', prioritizedFiles: ['no/such/file'] }), /no\/such\/file/);
  assert.deepEqual((await readdir(dir)).sort(), ['in.tar']);
  // An output that cannot be written fails promptly for both writers.
  for (const format of ['estargz', 'zstd:chunked'] as const) {
    await assert.rejects(convertLayer(Readable.from([bytes]), join(dir, 'no/such/dir/out'), { format }), /ENOENT/);
  }
});

test('an existing output is replaced only on success', async (t) => {
  const dir = await tmp(t);
  const { bytes } = await fixtureTar(dir);
  const out = join(dir, 'out');
  await writeFile(out, 'previous');
  await assert.rejects(convertLayer(Readable.from([Buffer.alloc(1024, 1)]), out, { format: 'estargz' }));
  assert.equal(await readFile(out, 'utf8'), 'previous');
  await convertLayer(Readable.from([bytes]), out, { format: 'estargz' });
  assert.notEqual(await readFile(out, 'utf8'), 'previous');
});

test('expectedDiffID: a mismatch fails; missing trailing tar padding is restored', async (t) => {
  const dir = await tmp(t);
  const { bytes } = await fixtureTar(dir);
  const out = join(dir, 'out');
  await assert.rejects(
    convertLayer(Readable.from([bytes]), out, { format: 'zstd:chunked', expectedDiffID: sha256('other') }),
    /its uncompressed content is sha256:[0-9a-f]{64}, but the config's rootfs.diff_ids says sha256:/,
  );
  assert.deepEqual(await readdir(dir), ['in.tar']);
  const exact = await convertLayer(Readable.from([bytes]), out, { format: 'zstd:chunked', expectedDiffID: sha256(bytes) });
  assert.equal(exact.restoredZeros, 0);
  // The last zero block lost (as containers/storage 1.43 does): restored, so the diffID is unchanged.
  const cut = bytes.subarray(0, bytes.length - 512);
  const r = await convertLayer(Readable.from([cut]), out, { format: 'zstd:chunked', expectedDiffID: sha256(bytes) });
  assert.equal(r.restoredZeros, 512);
  assert.equal(r.inputDiffID, sha256(cut));
  assert.equal(r.diffID, sha256(bytes));
  const { stdout } = await run('sh', ['-c', `zstd -dc '${out}' | sha256sum`]);
  assert.equal(`sha256:${stdout.split(' ')[0]}`, sha256(bytes));
  const e = await convertLayer(Readable.from([cut]), out, { format: 'estargz', expectedDiffID: sha256(bytes) });
  assert.equal(e.restoredZeros, 512);
});
