// Crash safety of the snapshotter's metadata: a process making snapshots as fast as it can is
// killed with SIGKILL; everything it was answered survives, every snapshot still has its
// directory, and Cleanup removes only what the interrupted call left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';

const CHURN = fileURLToPath(new URL('./helpers/churn.ts', import.meta.url));

test('kill -9 in the middle of Prepares and Commits loses nothing that was answered', { timeout: 60_000 }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'starling-crash-'));
  const child = spawn(process.execPath, ['--import', 'tsx', CHURN, root], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('\n').length > 60) resolve();
      });
      child.once('exit', (code) => reject(new Error(`churn exited (${code})`)));
    });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const answered = out.split('\n').slice(0, -1); // the last line may be cut short

    const sn = await Snapshotter.open(root);
    try {
      const infos = sn.list([]);
      const committed = new Set(infos.filter((i) => i.kind === 'committed').map((i) => i.name));
      for (const name of answered) assert.ok(committed.has(name), `${name} was committed before the kill`);
      // Every snapshot on the parent it was given; through a view, every layer's file in its own dir.
      for (const info of infos) {
        const i = Number(/layer-(\d+)$/.exec(info.name)![1]);
        assert.equal(info.parent, i === 0 ? '' : `layer-${i - 1}`);
      }
      const top = answered.at(-1)!;
      const [view] = await sn.view('check', top, {});
      const lowers = view!.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length).split(':');
      assert.equal(lowers.length, Number(/\d+$/.exec(top)![0]) + 1);
      for (const [depth, dir] of lowers.entries()) {
        const i = lowers.length - 1 - depth;
        assert.equal(await readFile(join(dir, `file-${i}`), 'utf8'), `content ${i}\n`);
      }
      await sn.cleanup();
      const owned = (await readdir(join(root, 'snapshots'))).sort();
      assert.equal(owned.length, infos.length + 1, 'one directory per snapshot (and the view), nothing else');
      for (const d of owned) assert.ok(existsSync(join(root, 'snapshots', d, 'fs')));
    } finally {
      await sn.close();
    }
  } finally {
    child.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
  }
});
