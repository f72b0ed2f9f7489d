// Test helper: a small two-layer image as hand-made layers, and a LazyFs over them with a fresh
// (or given) cache directory, wired the way a mount wires it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkCache } from '../../../src/fs/chunk-cache.js';
import { ChunkStore } from '../../../src/fs/chunk-store.js';
import { CountingBlob } from '../../../src/fs/counting-blob.js';
import { DEFAULT_SCHEDULER, FetchScheduler, type SchedulerOptions } from '../../../src/fs/fetch-scheduler.js';
import { indexLayer } from '../../../src/fs/layer-index.js';
import { LazyFs } from '../../../src/fs/lazyfs.js';
import { LayerMetrics, MountMetrics } from '../../../src/fs/metrics.js';
import { buildMergedTree } from '../../../src/fs/tree.js';
import { buildLayer, noise, type BuiltLayer } from './layer.js';

export const big = noise(1 << 20, 7);

export function image() {
  return [
    buildLayer([
      { path: 'bin' },
      { path: 'bin/tool', content: big, mode: 0o755, uid: 10, gid: 20, mtimeMs: 1_600_000_000_000 },
      { path: 'bin/link', type: 'hardlink', linkName: 'bin/tool' },
      { path: 'bin/sh', type: 'symlink', linkName: 'tool' },
      { path: 'dev' },
      { path: 'dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
      { path: 'dev/sda', type: 'block', devMajor: 8, devMinor: 0 },
      { path: 'dev/pipe', type: 'fifo' },
      { path: 'etc' },
      { path: 'etc/hosts', content: 'lower hosts\n' },
      { path: 'etc/gone', content: 'gone\n' },
      { path: 'empty', content: '' },
    ]),
    buildLayer([
      { path: 'etc/.wh.gone', content: '' },
      { path: 'etc/hosts', content: '127.0.0.1 upper\n', xattrs: { 'user.note': 'hi' } },
      { path: 'etc/motd', content: 'x'.repeat(100_000) },
    ]),
  ];
}

export async function setup(layers: BuiltLayer[], opts: { cacheDir?: string; memoryBytes?: number; scheduler?: Partial<SchedulerOptions>; libraries?: boolean; modules?: boolean; includes?: boolean; directories?: boolean } = {}) {
  const dir = opts.cacheDir ?? (await mkdtemp(join(tmpdir(), 'starling-fs-')));
  const metrics = new MountMetrics();
  const cache = await ChunkCache.open({ dir, diskBytes: 1 << 30, memoryBytes: opts.memoryBytes ?? 64 << 20, counters: metrics.cache });
  const logs: string[] = [];
  const layerMetrics = layers.map(() => new LayerMetrics());
  const indexes = layers.map((l) => indexLayer(l.toc.entries, 'test'));
  const scheduler = new FetchScheduler({ ...DEFAULT_SCHEDULER, ...opts.scheduler });
  const store = new ChunkStore(
    cache,
    scheduler,
    layers.map((l, i) => ({
      name: `layer${i}`,
      decodeChunk: l.toc.decodeChunk,
      blob: new CountingBlob(l.blob, layerMetrics[i]!, metrics.latency),
      metrics: layerMetrics[i]!,
      entries: indexes[i]!.entries,
      remote: true,
    })),
    (m) => logs.push(m),
  );
  const tree = buildMergedTree(indexes);
  const fs = new LazyFs(tree, store, metrics, { libraries: opts.libraries, modules: opts.modules, includes: opts.includes, directories: opts.directories });
  const readAll = async (p: string) => {
    const parts: Buffer[] = [];
    for (let off = 0; ; off += 128 * 1024) {
      const b = await fs.read(p, off, 128 * 1024);
      if (b.length === 0) break;
      parts.push(Buffer.from(b));
    }
    return Buffer.concat(parts);
  };
  const cleanup = async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { fs, dir, cache, metrics, layerMetrics, logs, readAll, store, scheduler, indexes, cleanup };
}

