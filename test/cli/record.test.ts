// starling record end to end: an image whose workload is a static reader program, converted to
// eStargz and pushed to a real Distribution, run on a real lazy FUSE mount; the trace must list
// exactly the image files the workload opened, in first-open order, and feed convert --prioritize-file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pack } from 'tar-stream';
import { FileBlob } from '../../src/blob/source.js';
import { openLayerToc } from '../../src/format/open.js';
import type { ImageManifest } from '../../src/oci/types.js';
import { buildImage } from '../fixtures/image.js';
import { buildReader } from '../fixtures/reader.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));


let registry: RunningRegistry;
let work: string;
let ref: string;
const sizes = new Map<string, number>();

function starling(...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', cli, ...args], { maxBuffer: 16 << 20 });
}

async function layerTar(out: string, entries: Array<{ name: string; mode: number; content?: Buffer }>): Promise<string> {
  const p = pack();
  const done = pipeline(p, createWriteStream(out));
  for (const e of entries) {
    if (e.content === undefined) p.entry({ name: e.name, type: 'directory', mode: e.mode });
    else {
      p.entry({ name: e.name, mode: e.mode, size: e.content.length }, e.content);
      sizes.set(`/${e.name}`, e.content.length);
    }
  }
  p.finalize();
  await done;
  return out;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-record-test-'));
  registry = await startRegistry();
  const reader = await buildReader(work);
  const real = await readFile('/usr/bin/python3.11');
  const lower = await layerTar(join(work, 'lower.tar'), [
    { name: 'bin', mode: 0o755 },
    { name: 'bin/reader', mode: 0o755, content: reader },
    { name: 'data', mode: 0o755 },
    { name: 'data/a.txt', mode: 0o644, content: Buffer.from('alpha\n') },
    { name: 'data/b.bin', mode: 0o644, content: real.subarray(0, 300_000) },
    { name: 'data/unused.bin', mode: 0o644, content: real.subarray(300_000, 400_000) },
  ]);
  const upper = await layerTar(join(work, 'upper.tar'), [
    { name: 'data', mode: 0o755 },
    { name: 'data/c.txt', mode: 0o644, content: Buffer.from('gamma from the upper layer\n') },
  ]);
  await buildImage(join(work, 'gzip'), { layers: [{ tar: lower }, { tar: upper }], config: { config: { Env: ['PATH=/bin'], WorkingDir: '/data' } } }, 'latest');
  ref = `docker://${registry.host}/record/test:estargz`;
  await starling('convert', `oci:${join(work, 'gzip')}:latest`, ref, '--format', 'estargz');
});

after(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('record lists the files the workload opened, in first-open order, relative paths resolved in WorkingDir', async () => {
  const out = join(work, 'trace.txt');
  const { stdout } = await starling('record', ref, '--out', out, '--json', '--', 'reader', 'b.bin', '/data/c.txt', 'a.txt', 'b.bin');
  const trace = (await readFile(out, 'utf8')).split('\n').filter((l) => l !== '');
  // The kernel opens the executable through the mount too; nothing the workload did not open is listed.
  assert.deepEqual(trace, ['/bin/reader', '/data/b.bin', '/data/c.txt', '/data/a.txt']);
  const summary = JSON.parse(stdout) as { files: number; bytes: number; exitCode: number };
  assert.equal(summary.files, 4);
  assert.equal(summary.bytes, trace.reduce((n, p) => n + sizes.get(p)!, 0));
  assert.equal(summary.exitCode, 0);
});

test('the trace feeds convert --prioritize-file: the listed files come first, before the landmark', async () => {
  const out = join(work, 'trace2.txt');
  await starling('record', ref, '--out', out, '--', 'reader', 'c.txt', 'b.bin');
  const optimised = join(work, 'opt');
  await starling('convert', `oci:${join(work, 'gzip')}:latest`, `oci:${optimised}:latest`, '--format', 'estargz', '--prioritize-file', out);
  const index = JSON.parse(await readFile(join(optimised, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const blob = (d: string) => join(optimised, 'blobs/sha256', d.slice(7));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as ImageManifest;
  const prioritised: string[] = [];
  for (const desc of manifest.layers) {
    const src = await FileBlob.open(blob(desc.digest));
    try {
      const opened = await openLayerToc(src, desc);
      assert.ok(opened.ok, `layer ${desc.digest} is not lazy`);
      const { toc } = opened;
      assert.ok(toc.prefetchEnd !== undefined, `layer ${desc.digest} has no .prefetch.landmark`);
      for (const e of toc.entries) if (e.type === 'reg' && e.chunks.length && e.chunks[0]!.start < toc.prefetchEnd!) prioritised.push(`/${e.path}`);
    } finally {
      await src.close();
    }
  }
  assert.deepEqual(prioritised.sort(), ['/bin/reader', '/data/b.bin', '/data/c.txt']);
});

test('a failing workload fails record and writes no list; usage errors exit 2', async () => {
  const out = join(work, 'never.txt');
  await assert.rejects(starling('record', ref, '--out', out, '--', 'reader', '/data/missing.txt'), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1);
    assert.match(err.stderr, /workload .*reader \/data\/missing\.txt.* failed \(1\)/);
    return true;
  });
  await assert.rejects(access(out));
  await assert.rejects(starling('record', ref, '--', 'reader'), (err: { code: number; stderr: string }) => err.code === 2 && /--out, --push or --profile-out is required/.test(err.stderr));
  await assert.rejects(starling('record', '--out', out), (err: { code: number }) => err.code === 2);
});
