// `starling bench` from an installed package, not a checkout: the package npm packs (from the
// build `npm ci` made) is installed into a temporary directory whose dependencies are the
// repository's own (linked: no download, no native build), where tsx, a dev dependency, cannot be
// resolved. The compiled harness must load and run there, and its installed-package paths must
// work: Starling measured is the package itself, the relay is its compiled module, and the stargz
// mode, whose program is built only in a checkout, fails at once saying how to get it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));

/** Runs a command; resolves with its exit code and output whether it fails or not. */
async function capture(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { cwd, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Packs the repository and installs the tarball into `dir` with the repository's dependencies linked in. */
async function install(dir: string): Promise<string> {
  const packed = JSON.parse((await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repo })).stdout) as Array<{ filename: string }>;
  const app = join(dir, 'app');
  await mkdir(join(app, 'node_modules'), { recursive: true });
  await writeFile(join(app, 'package.json'), '{"name":"app","private":true}\n');
  const { dependencies } = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const dep of Object.keys(dependencies)) {
    await mkdir(dirname(join(app, 'node_modules', dep)), { recursive: true });
    await symlink(join(repo, 'node_modules', dep), join(app, 'node_modules', dep));
  }
  await run('npm', ['install', join(dir, packed[0]!.filename), '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app });
  return app;
}

test('starling bench runs its compiled harness from an installed package, without tsx', { timeout: 180_000 }, async () => {
  assert.ok(existsSync(join(repo, 'dist/harness/bench/startup/main.js')), 'the compiled harness is missing: run npm run build (npm ci does)');
  const dir = await mkdtemp(join(tmpdir(), 'starling-installed-'));
  try {
    const app = await install(dir);
    const pkg = join(app, 'node_modules/starling');
    // What makes this a test of the installed form: no sources to run under tsx, and no tsx.
    assert.ok(!existsSync(join(pkg, 'bench')) && !existsSync(join(pkg, 'src/cli/main.ts')), 'the package ships TypeScript sources');
    assert.throws(() => createRequire(join(pkg, 'package.json')).resolve('tsx'), { code: 'MODULE_NOT_FOUND' });
    const starling = join(app, 'node_modules/.bin/starling');

    const help = await capture(starling, ['bench', '--help'], app);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /--images A,B\s+python, pydata, gcc, data/);

    // The harness loads and checks its modes before it starts anything (the report directory is not made).
    const out = join(dir, 'out');
    const stargz = await capture(starling, ['bench', '--images', 'python', '--modes', 'stargz', '--samples', '1', '--out', out], app);
    assert.equal(stargz.code, 1, stargz.stderr);
    assert.match(stargz.stderr, /the stargz mode needs stargz-snapshotter's filesystem as a program at \S*node_modules\/starling\/\.interop-bin\/stargz/);
    assert.match(stargz.stderr, /build it in a checkout of Starling with scripts\/build-interop\.sh/);
    assert.match(stargz.stderr, /node_modules\/starling\/dist\/harness\/bench\/startup\/modes\.js/);
    assert.ok(!existsSync(out));

    // The measured Starling is the installed one, and the relay starts from its compiled module,
    // in a plain node process (no tsx loader to inherit).
    const probe = join(app, 'probe.mjs');
    await writeFile(
      probe,
      [
        `import { createServer } from 'node:net';`,
        `import { buildEngine, starling } from ${JSON.stringify(join(pkg, 'dist/harness/bench/startup/engine.js'))};`,
        `import { RelayProcess } from ${JSON.stringify(join(pkg, 'dist/harness/bench/net/relay-process.js'))};`,
        `const engine = await buildEngine(${JSON.stringify(pkg)}, '/nonexistent');`,
        `const convertHelp = await starling(engine, ['convert', '--help']);`,
        `const server = createServer((s) => s.end()).listen(0, '127.0.0.1');`,
        `await new Promise((r) => server.once('listening', r));`,
        `const relay = await RelayProcess.start({ host: '127.0.0.1', port: server.address().port }, { rttMs: 1, rateMbit: 100 });`,
        `const counters = await relay.counters();`,
        `await relay.close();`,
        `server.close();`,
        `console.log(JSON.stringify({ argv: engine.argv, version: engine.version, convertHelp, counters }));`,
      ].join('\n'),
    );
    const probed = await capture(process.execPath, [probe], app);
    assert.equal(probed.code, 0, probed.stderr);
    const result = JSON.parse(probed.stdout) as { argv: string[]; version: string; convertHelp: string; counters: { getRequests: number } };
    assert.deepEqual(result.argv, [join(pkg, 'bin/starling')]);
    assert.match(result.version, /^package starling@\d+\.\d+\.\d+/);
    assert.match(result.convertHelp, /estargz/);
    assert.equal(result.counters.getRequests, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
