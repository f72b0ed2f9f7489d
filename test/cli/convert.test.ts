// `starling convert` and `starling convert-layer`: argument handling, JSON output, the oci: and
// docker:// transports against a real Distribution registry, and user-facing errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { command as convert } from '../../src/cli/convert.js';
import { command as convertLayer } from '../../src/cli/convert-layer.js';
import { UserError } from '../../src/cli/command.js';
import { formatBytes, ProgressBar } from '../../src/cli/_progress.js';
import { sha256 } from '../../src/oci/digest.js';
import { buildImage, writeFilesTar, type BuiltImage } from '../fixtures/image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { realTar } from '../fixtures/real-tar.js';

const run = promisify(execFile);
let work: string;
let src: string;
let built: BuiltImage;
let reg: RunningRegistry;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-cli-convert-'));
  src = join(work, 'src');
  built = await buildImage(
    src,
    {
      layers: [{ files: { 'etc/os-release': 'ID=starling\n', 'usr/bin/app': Buffer.alloc(150_000, 9) } }, { files: { 'data/x': 'x'.repeat(70_000) } }],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      annotations: { 'org.opencontainers.image.title': 'cli' },
    },
    'v1',
  );
  reg = await startRegistry();
});

after(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

/**
 * Runs `starling NAME ARGS` in a child process (stdout of this process carries the test runner's
 * reports), the way main.ts runs a command: UserError → "starling: message" on stderr + its exit code.
 */
function commandScript(name: string): string {
  return `
    const { command } = await import(${JSON.stringify(new URL(`../../src/cli/${name}.ts`, import.meta.url).href)});
    const { UserError } = await import(${JSON.stringify(new URL('../../src/cli/command.ts', import.meta.url).href)});
    try { process.exitCode = await command.run(process.argv.slice(1)); }
    catch (e) { if (!(e instanceof UserError)) throw e; process.stderr.write('starling: ' + e.message + '\\n'); process.exitCode = e.exitCode; }`;
}

async function runCommand(name: string, args: string[], stdin?: Buffer): Promise<{ code: number; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', commandScript(name), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end(stdin ?? Buffer.alloc(0));
  const code = await new Promise<number | null>((resolve, reject) => child.once('error', reject).once('close', resolve));
  return { code: code ?? -1, out, err };
}

async function userError(p: Promise<unknown>, re: RegExp, exitCode: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.match(e.message, re);
    assert.equal(e.exitCode, exitCode);
    return true;
  });
}

test('convert --json prints one summary line; the human summary names every platform', async () => {
  const dst = join(work, 'out-json');
  const { code, out } = await runCommand('convert', [`oci:${src}:v1`, `oci:${dst}:conv`, '--format', 'estargz', '--level', '1', '--chunk-size', '64KiB', '--json']);
  assert.equal(code, 0);
  const lines = out.trim().split('\n');
  assert.equal(lines.length, 1);
  const summary = JSON.parse(lines[0]!) as { format: string; root: { digest: string }; layersConverted: number; manifests: Array<{ platform: string; source: string }>; source: string; destination: string };
  assert.deepEqual(summary.manifests.map((m) => m.source), built.manifests.map((m) => m.descriptor.digest));
  assert.equal(summary.format, 'estargz');
  assert.equal(summary.layersConverted, 2);
  assert.deepEqual(summary.manifests.map((m) => m.platform), ['linux/amd64', 'linux/arm64']);
  assert.equal(summary.source, `oci:${src}:v1`);
  const index = JSON.parse(await readFile(join(dst, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  assert.deepEqual(index.manifests.map((m) => [m.digest, m.annotations['org.opencontainers.image.ref.name']]), [[summary.root.digest, 'conv']]);

  const human = await runCommand('convert', [`oci:${src}:v1`, `oci:${join(work, 'out-human')}`, '--format', 'zstd:chunked', '--platform', 'linux/arm64']);
  assert.match(human.out, /^converted oci:.* → oci:.* \(zstd:chunked\)\n {2}linux\/arm64 +sha256:[0-9a-f]{64} {2}2 converted, 0 passed through\n/);
  assert.doesNotMatch(human.out, /linux\/amd64/);
});

test('convert through a registry: oci: → docker:// (eStargz) → oci: (zstd:chunked); skopeo reads the pushed image', async () => {
  const ref = `docker://${reg.host}/starling/converted:v1`;
  const up = await runCommand('convert', [`oci:${src}:v1`, ref, '--format', 'estargz', '--level', '1', '--json']);
  assert.equal(up.code, 0);
  const pushed = JSON.parse(up.out) as { root: { digest: string } };
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', ref]);
  assert.equal(sha256(stdout), pushed.root.digest);
  const inspected = await run('skopeo', ['inspect', '--tls-verify=false', '--override-arch', 'arm64', ref]);
  assert.equal((JSON.parse(inspected.stdout) as { Architecture: string; Layers: string[] }).Layers.length, 2);
  // The platform manifest as stored in the registry carries the eStargz layer annotations.
  const index = JSON.parse(stdout) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
  const arm = index.manifests.find((m) => m.platform.architecture === 'arm64')!;
  const rawManifest = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/starling/converted@${arm.digest}`]);
  const layers = (JSON.parse(rawManifest.stdout) as { layers: Array<{ annotations: Record<string, string> }> }).layers;
  assert.equal(layers.length, 2);
  for (const l of layers) assert.match(l.annotations['containerd.io/snapshot/stargz/toc.digest'] ?? '', /^sha256:/);

  // inspect reads the TOCs over the registry (range requests) and verifies them.
  const inspected2 = await runCommand('inspect', [ref, '--json']);
  assert.equal(inspected2.code, 0, inspected2.err);
  const report = JSON.parse(inspected2.out) as { manifests: Array<{ platform?: string; layers: Array<{ format: string; lazy: boolean; toc?: { tocDigest: string } }> }> };
  assert.deepEqual(report.manifests.map((m) => m.platform), ['linux/amd64', 'linux/arm64']);
  for (const l of report.manifests[1]!.layers) assert.deepEqual([l.format, l.lazy, /^sha256:/.test(l.toc?.tocDigest ?? '')], ['estargz', true, true]);

  const back = join(work, 'from-registry');
  const down = await runCommand('convert', [ref, `oci:${back}:z`, '--format', 'zstd:chunked', '--json']);
  const summary = JSON.parse(down.out) as { layersConverted: number; manifests: unknown[] };
  assert.equal(summary.layersConverted, 2);
  assert.equal(summary.manifests.length, 2);
  await run('skopeo', ['inspect', `oci:${back}:z`]);
});

test('convert: usage and input errors are UserErrors with clear messages; nothing is written', async () => {
  const dst = join(work, 'never');
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`]), /--format is required/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'gzip']), /--format: unknown format "gzip"/, 2);
  await userError(convert.run([`oci:${src}:v1`, '--format', 'estargz']), /expected SRC and DST, got 1/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'zstd:chunked', '--chunk-size', '1MiB']), /--chunk-size applies to estargz only/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'zstd:chunked', '--prioritize', 'a']), /apply to estargz only/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--level', '12']), /--level: expected an integer from 0 to 9/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--platform', 'linux/amd64/v2/x']), /--platform: platform "linux\/amd64\/v2\/x"/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--platform', 'all,linux/amd64']), /cannot be combined/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--prioritize-file', join(work, 'missing')]), /--prioritize-file: cannot read/, 2);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--bogus']), /Unknown option '--bogus'/, 2);
  await userError(convert.run([`oci:${src}:nosuchtag`, `oci:${dst}`, '--format', 'estargz']), /no image tagged "nosuchtag" in index.json \(tags: v1\)/, 1);
  await userError(convert.run([`${src}`, `oci:${dst}`, '--format', 'estargz']), /no transport/, 1);
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--platform', 'linux/ppc64le']), /has no image for platform linux\/ppc64le/, 1);
  // Prioritised files that are not in the layer fail the conversion (as Go's Build does).
  await writeFile(join(work, 'prio'), '# comment\n/etc/os-release\n/not/there\n');
  await userError(convert.run([`oci:${src}:v1`, `oci:${dst}`, '--format', 'estargz', '--prioritize-file', join(work, 'prio')]), /not\/there/, 1);
  // The failed runs may have created the layout and blobs, never an index.json.
  assert.ok(!(await readdir(dst).catch(() => [] as string[])).includes('index.json'));
});

test('convert-layer prints {mediaType, digest, size, diffID, tocDigest, annotations} and writes OUT', async () => {
  const tar = join(work, 'layer.tar');
  await writeFilesTar({ 'a/b.txt': 'bee', 'a/c.bin': Buffer.alloc(100_000, 1) }, tar);
  const esgz = join(work, 'layer.esgz');
  const { code, out } = await runCommand('convert-layer', [tar, esgz, '--format', 'estargz', '--prioritize', 'a/b.txt', '--level', '1']);
  assert.equal(code, 0);
  const r = JSON.parse(out) as Record<string, unknown>;
  assert.deepEqual(Object.keys(r), ['mediaType', 'digest', 'size', 'diffID', 'tocDigest', 'annotations']);
  const blob = await readFile(esgz);
  assert.equal(r.digest, sha256(blob));
  assert.equal(r.size, blob.length);
  assert.equal(r.diffID, sha256(gunzipSync(blob)));
  assert.equal((r.annotations as Record<string, string>)['containerd.io/snapshot/stargz/toc.digest'], r.tocDigest);
  const listing = await run('tar', ['-tzf', esgz]);
  assert.deepEqual(listing.stdout.split('\n').slice(0, 4), ['a/', 'a/b.txt', '.prefetch.landmark', 'a/c.bin']);

  // eStargz in, zstd:chunked out: the input is recognised by its footer and its TOC/landmark dropped.
  const zst = join(work, 'layer.zst');
  const z = JSON.parse((await runCommand('convert-layer', [esgz, zst, '--format', 'zstd:chunked'])).out) as Record<string, unknown>;
  assert.equal(z.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  const names = await run('sh', ['-c', `zstd -dc '${zst}' | tar -t`]);
  assert.deepEqual(names.stdout.split('\n').filter((n) => n !== '').sort(), ['a/', 'a/b.txt', 'a/c.bin']);

  // IN = - reads the blob from stdin (here gzip-compressed).
  const fromStdin = await runCommand('convert-layer', ['-', join(work, 'stdin.zst'), '--format', 'zstd:chunked'], gzipSync(await readFile(tar)));
  assert.equal(fromStdin.code, 0, fromStdin.err);
  assert.equal((JSON.parse(fromStdin.out) as { diffID: string }).diffID, sha256(await readFile(tar)));

  await userError(convertLayer.run([join(work, 'missing.tar'), join(work, 'o'), '--format', 'estargz']), /ENOENT/, 1);
  await userError(convertLayer.run([tar, join(work, 'o'), '--format', 'zstd:chunked', '--chunk-size', '1k']), /estargz only/, 2);
  await userError(convertLayer.run([tar, '--format', 'estargz']), /expected IN and OUT/, 2);
  const junk = join(work, 'junk');
  await writeFile(junk, Buffer.alloc(2048, 0x41));
  await userError(convertLayer.run([junk, join(work, 'o'), '--format', 'estargz']), /not a tar|tar header/, 1);
  assert.ok(!(await readdir(work)).some((n) => n === 'o' || n.startsWith('o.tmp-')));
});

test('SIGINT during a conversion: exit 130, no index.json, no temporary files left', async () => {
  const big = join(work, 'big');
  await buildImage(big, { layers: [{ tar: await realTar('pax') }] }, 'v1');
  const dst = join(work, 'interrupted');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', commandScript('convert'), `oci:${big}:v1`, `oci:${dst}:x`, '--format', 'estargz', '--level', '9'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Wait until the layer conversion has started (its temp dir exists), then interrupt.
  for (let i = 0; i < 600; i++) {
    if ((await readdir(dst).catch(() => [] as string[])).some((n) => n.startsWith('.starling-convert-'))) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGINT');
  assert.equal(await exited, 130, err);
  assert.match(err, /interrupted: oci:.* was not updated/);
  assert.deepEqual((await readdir(dst)).sort(), ['blobs', 'oci-layout']);
});

test('progress bar: drawn only on a TTY, throttled, cleared', () => {
  const written: string[] = [];
  const tty = { isTTY: true, columns: 120, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
  const bar = new ProgressBar('converting', tty);
  bar.setTotal(4 << 20);
  bar.add(1 << 20);
  bar.setNote('layer 1/2');
  assert.equal(written.at(-1), '\r\x1b[Kconverting [########......................]  25% 1.0 MiB/4.0 MiB layer 1/2');
  const narrow: string[] = [];
  const small = new ProgressBar('converting', { isTTY: true, columns: 40, write: (s: string) => narrow.push(s) } as unknown as NodeJS.WriteStream);
  small.setTotal(100);
  assert.equal(narrow.at(-1)!.length, '\r\x1b[K'.length + 39, 'cut to the terminal width');
  const before = written.length;
  for (let i = 0; i < 100; i++) bar.add(1);
  assert.ok(written.length - before <= 1, 'redraws are throttled');
  bar.clear();
  assert.equal(written.at(-1), '\r\x1b[K');

  const piped: string[] = [];
  const pipe = new ProgressBar('converting', { isTTY: false, write: (s: string) => piped.push(s) } as unknown as NodeJS.WriteStream);
  pipe.setTotal(10);
  pipe.add(5);
  pipe.clear();
  assert.deepEqual(piped, []);
  assert.deepEqual([formatBytes(0), formatBytes(1023), formatBytes(1536), formatBytes(5 * 1024 ** 3)], ['0 B', '1023 B', '1.5 KiB', '5.0 GiB']);
});
