// For signal-cleanup.test.ts: a test file that mounts (a daemon, its FUSE mount, a spare, a registry)
// and then waits, to be stopped by a signal. Writes what it started to the file $SIGNAL_FIXTURE_OUT, as
// JSON once mounted: {work, daemon, registry}.
import { test } from 'node:test';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildImage } from '../fixtures/image.js';
import { startRegistry } from './registry.js';
import { cleanupOnSignal } from './signal-cleanup.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));

test('mounts, then waits for a signal', async () => {
  const work = await mkdtemp(join(tmpdir(), 'starling-signal-'));
  cleanupOnSignal(work);
  const env = { ...process.env, STARLING_RUN_DIR: join(work, 'run') };
  const starling = (...args: string[]) => run(process.execPath, ['--import', 'tsx', cli, ...args], { env });
  const registry = await startRegistry();
  await buildImage(join(work, 'src'), { layers: [{ files: { 'etc/hello': 'hello\n' } }] }, 'v1');
  const ref = `docker://${registry.host}/test/signal:v1`;
  await starling('convert', `oci:${join(work, 'src')}:v1`, ref, '--format', 'estargz');
  await mkdir(join(work, 'mnt'));
  const { stderr } = await starling('mount', ref, join(work, 'mnt'), '--no-background-fetch');
  const registryPid = Number((await run('pgrep', ['-f', `${registry.dir}/config.yml`])).stdout.trim());
  await writeFile(process.env.SIGNAL_FIXTURE_OUT!, JSON.stringify({ work, daemon: Number(/daemon pid (\d+)/.exec(stderr)![1]), registry: registryPid }));
  setInterval(() => {}, 1 << 30);
  await new Promise(() => {});
});
