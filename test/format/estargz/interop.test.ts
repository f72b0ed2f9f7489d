// Interop with the Go reference implementation (Debian's stargz-snapshotter 0.12.0 estargz package,
// test/interop/estargz): Go opens and verifies our blobs file by file and chunk by chunk; our reader
// reads blobs written by Go's estargz.Build (plain, prioritised, 2-part parallel, legacy footer);
// and for the same input both write the same TOC apart from compressed offsets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';
import { BufferBlob } from '../../../src/blob/source.js';
import { sha256, type Digest } from '../../../src/oci/digest.js';
import { legacyStargzFooter } from '../../../src/format/estargz/footer.js';
import { openEstargz, readFileRange } from '../../../src/format/estargz/reader.js';
import { normalizeEntryPath } from '../../../src/format/tar-entry.js';
import type { FileEntry, LayerToc } from '../../../src/format/toc.js';
import { realTar } from '../../fixtures/real-tar.js';
import { convert, ensureGoEstargz, goEstargz, readSourceTar, type GoVerifyResult, type SourceEntry } from './helpers.js';

const PRIORITIZED = ['links/hardlink-to-empty', '/usr/lib/python3/json/decoder.py', './etc/passwd', 'data/big.bin'];

let dir: string;
let tarPath: string;
let source: SourceEntry[];

before(async () => {
  await ensureGoEstargz();
  dir = await mkdtemp(join(tmpdir(), 'starling-esgz-interop-'));
  tarPath = await realTar('pax');
  source = await readSourceTar(tarPath);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function goBuild(name: string, args: string[] = [], input = tarPath): Promise<{ blob: Buffer; tocDigest: Digest; diffID: Digest }> {
  const out = join(dir, name);
  // Level 1: the TOC does not depend on the level, and level 9 is slow on a shared machine.
  const res = JSON.parse(await goEstargz(['build', input, out, '-level', '1', ...args])) as { tocDigest: Digest; diffID: Digest; digest: Digest };
  const blob = await readFile(out);
  assert.equal(sha256(blob), res.digest);
  return { blob, tocDigest: res.tocDigest, diffID: res.diffID };
}

async function goVerify(blob: Buffer, tocDigest: string): Promise<GoVerifyResult> {
  const file = join(dir, `verify-${sha256(blob).slice(7, 19)}.blob`);
  await writeFile(file, blob);
  return JSON.parse(await goEstargz(['verify', file, tocDigest])) as GoVerifyResult;
}

/** The TOC JSON of a blob with every "offset" line removed (offsets differ between gzip implementations). */
function tocWithoutOffsets(b: Buffer): string {
  const tocOffset = parseInt(b.toString('latin1', b.length - 51 + 16, b.length - 51 + 32), 16);
  const tar = gunzipSync(b.subarray(tocOffset, b.length - 51));
  const json = tar.toString('utf8', 512, 512 + parseInt(tar.toString('latin1', 124, 136), 8));
  return json.replace(/\n\t*"offset": \d+,/g, '');
}

/** Every file's bytes through our reader must hash to the source tar's content. */
async function assertContentMatchesSource(layer: LayerToc, blob: Buffer): Promise<void> {
  const src = new BufferBlob(blob);
  let files = 0;
  for (const s of source) {
    if (s.type !== 'file') continue;
    const e = layer.entries.find((x) => x.path === normalizeEntryPath(s.name));
    assert.ok(e, s.name);
    assert.equal(sha256(await readFileRange(layer, src, e, 0, e.size)), s.sha256, s.name);
    files++;
  }
  assert.ok(files > 50);
}

function metadata(e: FileEntry): unknown {
  return { ...e, chunks: e.chunks.map((c) => ({ fileOffset: c.fileOffset, size: c.size, digest: c.digest })) };
}

test('Go opens, verifies and reads every file and chunk of our blob; its view equals ours', async () => {
  const { blob, result } = await convert(tarPath, { level: 1 });
  const go = await goVerify(blob, result.tocDigest);
  assert.equal(go.tocDigest, result.tocDigest);
  const ours = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
  const regs = ours.entries.filter((e) => e.type === 'reg');
  assert.ok(go.verifiedChunks >= regs.filter((e) => e.size > 0).length);
  assert.equal(go.bytesRead, go.entries.filter((e) => e.type === 'reg').reduce((n, e) => n + e.size, 0));
  for (const g of go.entries) {
    if (g.name === '.no.prefetch.landmark') continue;
    const e = ours.entries.find((x) => x.path === g.name);
    assert.ok(e, `Go lists ${g.name}, we do not`);
    // Go's tree shows a hardlink as its target's entry.
    const t = e.type === 'hardlink' ? ours.entries.find((x) => x.path === e.linkName)! : e;
    assert.equal(g.type, t.type, g.name);
    assert.equal(g.size, t.size, g.name);
    assert.equal(g.mode & 0o7777, t.mode, g.name);
    assert.deepEqual([g.uid, g.gid], [t.uid, t.gid], g.name);
    assert.deepEqual(g.xattrs, Object.fromEntries([...t.xattrs].map(([k, v]) => [k, v.toString('base64')])), g.name);
    if (t.type === 'reg') assert.equal(g.readDigest, t.digest, g.name);
    if (t.type === 'symlink') assert.equal(g.linkName, t.linkName, g.name);
    if (t.type === 'char' || t.type === 'block') assert.deepEqual([g.devMajor, g.devMinor], [t.devMajor, t.devMinor], g.name);
  }
  assert.equal(go.entries.length - 1, ours.entries.filter((e) => e.path !== '').length);
});

test('Go refuses our blob against a different TOC digest (the check is not vacuous)', async () => {
  const { blob } = await convert(tarPath, { level: 1 });
  await assert.rejects(goVerify(blob, sha256('something else')), /invalid TOC JSON/);
});

test('our reader reads a Go-built blob; same TOC as ours apart from offsets, same entries', async () => {
  const go = await goBuild('go.blob');
  const layer = await openEstargz(new BufferBlob(go.blob), { tocDigest: go.tocDigest });
  await assertContentMatchesSource(layer, go.blob);
  const { blob, result } = await convert(tarPath, { level: 1 });
  assert.equal(tocWithoutOffsets(blob), tocWithoutOffsets(go.blob));
  const ours = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
  assert.deepEqual(ours.entries.map(metadata), layer.entries.map(metadata));
  assert.equal(layer.prefetchEnd, undefined);
});

test('prioritised files: Go-built blob readable with prefetchEnd; ours has the same order and Go verifies it', async () => {
  const go = await goBuild('go-prio.blob', ['-prioritize', PRIORITIZED.join(',')]);
  const layer = await openEstargz(new BufferBlob(go.blob), { tocDigest: go.tocDigest });
  await assertContentMatchesSource(layer, go.blob);
  assert.ok(layer.prefetchEnd !== undefined && layer.prefetchEnd > 0);
  const first = layer.entries.filter((e) => e.chunks.length > 0 && e.chunks[0]!.start < layer.prefetchEnd!).map((e) => e.path);
  assert.deepEqual(first, ['data/empty', 'usr/lib/python3/json/decoder.py', 'etc/passwd', 'data/big.bin'].filter((p) => p !== 'data/empty'));

  const { blob, result } = await convert(tarPath, { level: 1, prioritizedFiles: PRIORITIZED });
  assert.equal(tocWithoutOffsets(blob), tocWithoutOffsets(go.blob), 'same entry order and fields as Go');
  const ours = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
  assert.deepEqual(
    ours.entries.slice(0, 12).map((e) => e.path),
    layer.entries.slice(0, 12).map((e) => e.path),
  );
  assert.ok(ours.prefetchEnd !== undefined);
  const go2 = await goVerify(blob, result.tocDigest);
  assert.ok(go2.entries.some((e) => e.name === '.prefetch.landmark'));
});

test('prioritising a path that is not in the layer fails like Go', async () => {
  await assert.rejects(convert(tarPath, { level: 1, prioritizedFiles: ['no/such/file'] }), /prioritized file "no\/such\/file".*not in the layer/);
  await assert.rejects(goBuild('missing.blob', ['-prioritize', 'no/such/file']), /not found/);
});

test('a blob Go built in two parallel parts (GOMAXPROCS=2) reads back', async () => {
  const go = await goBuild('go-2.blob', ['-procs', '2']);
  const layer = await openEstargz(new BufferBlob(go.blob), { tocDigest: go.tocDigest });
  await assertContentMatchesSource(layer, go.blob);
});

test('legacy 47-byte footer: a Go-built blob with its footer rewritten (0.12.0 cannot write one) reads back', async () => {
  // Debian's estargz 0.12.0 has no option for the legacy footer, so the legacy blob is the Go-built
  // blob with its 51-byte footer replaced by the 47-byte CRFS footer pointing at the same TOC.
  const go = await goBuild('go-legacy-src.blob');
  const tocOffset = parseInt(go.blob.toString('latin1', go.blob.length - 51 + 16, go.blob.length - 51 + 32), 16);
  const legacy = Buffer.concat([go.blob.subarray(0, go.blob.length - 51), legacyStargzFooter(tocOffset)]);
  const layer = await openEstargz(new BufferBlob(legacy), { tocDigest: go.tocDigest });
  assert.equal(layer.tocOffset, tocOffset);
  await assertContentMatchesSource(layer, legacy);
  // Go's own reader accepts the rewritten footer too, so it is a real legacy footer.
  const v = await goVerify(legacy, go.tocDigest);
  assert.equal(v.tocDigest, go.tocDigest);
});

test('JSON escaping and user/group name elision match Go byte for byte (names with <>&, \\b, \\f, U+2028)', async () => {
  const names = ['x<y>&z.txt', 'bell\bform\ffeed', 'line\u2028sep', 'quote"back\\slash', 'tab\tnl\nend', 'ünï'];
  const p = pack();
  p.entry({ name: 'd/', type: 'directory', mode: 0o755, uid: 5, gid: 6, uname: 'u5', gname: 'g6', mtime: new Date(1_700_000_000_600) } as Header);
  for (const [i, n] of names.entries()) {
    p.entry({ name: `d/${n}`, mode: 0o644, uid: i % 2 ? 5 : 7, gid: 6, uname: i % 2 ? 'u5' : 'u7', gname: i < 3 ? 'g6' : 'other', mtime: new Date(1_700_000_000_000 + i) } as Header, `content ${i}`);
  }
  p.finalize();
  const parts: Buffer[] = [];
  for await (const d of p as AsyncIterable<Buffer>) parts.push(d);
  const input = join(dir, 'odd-names.tar');
  await writeFile(input, Buffer.concat(parts));
  const go = await goBuild('odd-names-go.blob', [], input);
  const { blob, result } = await convert(input, { level: 1 });
  assert.equal(tocWithoutOffsets(blob), tocWithoutOffsets(go.blob));
  assert.match(tocWithoutOffsets(blob), /x\\u003cy\\u003e\\u0026z/);
  const layer = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
  assert.deepEqual(layer.entries.map((e) => e.path).slice(1), names.map((n) => `d/${n}`));
});

test('a GNU-format input (long names as GNU L/K blocks, passed through raw) is verified by Go too', async () => {
  const gnu = await realTar('gnu');
  const { blob, result } = await convert(gnu, { level: 1 });
  const go = await goVerify(blob, result.tocDigest);
  const long = go.entries.find((e) => e.name.endsWith('file-with-long-name-as-well.txt'));
  assert.ok(long && long.name.length > 150, 'long name read back by Go');
  const gnuSource = await readSourceTar(gnu);
  assert.equal(go.entries.filter((e) => e.type === 'reg').length - 1, gnuSource.filter((s) => s.type === 'file' || s.type === 'link').length);
});
