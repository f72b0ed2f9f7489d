// Mounts one image: resolve the reference, open every layer (lazily when it has a usable TOC,
// whole otherwise), build the tree(s), mount what the planner (plan.ts) describes — one merged
// FUSE mount, one per layer stacked by kernel overlayfs (--mode overlay), or one per lazy layer
// for containerd to stack (--mode layers) — optionally under a writable overlay (--upper), then
// start prefetch. `close()` undoes all of it in reverse order.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { EarlyReadBlob } from '../blob/early-read.js';
import type { BlobSource } from '../blob/source.js';
import { TocError } from '../format/toc.js';
import type { PrefetchProfile } from '../image/profile.js';
import { findGzipIndexes } from '../image/gzip-index-registry.js';
import { findPrefetchProfile, profileStatus, type ProfileStatus } from '../image/profile-registry.js';
import { containerCommand } from '../oci/container-command.js';
import type { Digest } from '../oci/digest.js';
import { layerCompression } from '../oci/mediatypes.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, Platform } from '../oci/types.js';
import { ChunkCache } from '../fs/chunk-cache.js';
import { ChunkStore, type StoreLayer } from '../fs/chunk-store.js';
import { CountingBlob } from '../fs/counting-blob.js';
import { DEFAULT_SCHEDULER, FetchScheduler, Priority } from '../fs/fetch-scheduler.js';
import { indexLayer, type LayerIndex } from '../fs/layer-index.js';
import { mayUseGzipIndex, openLayerToc, type GzipIndexLookup } from '../format/open.js';
import { LazyFs } from '../fs/lazyfs.js';
import { LayerMetrics, MountMetrics } from '../fs/metrics.js';
import { chunksOfFiles, type PrefetchFile } from '../fs/prefetch-files.js';
import { Prefetcher } from '../fs/prefetcher.js';
import { buildLayerTree, buildMergedTree, type Tree } from '../fs/tree.js';
import { TocRangeCache } from '../fs/toc-cache.js';
import { openWholeLayer } from '../fs/whole-layer.js';
import { PlanMounts } from './executor.js';
import { openMountImage, type MountImage } from './mount-image.js';
import { planImageMount, type MountMode } from './plan.js';

export interface ImageMountOptions {
  ref: string;
  mountpoint: string;
  /** Private directory of this mount (FUSE mounts below an overlay, the empty lower dir). */
  workDir: string;
  platform?: Platform;
  plainHttp?: boolean;
  /** The image opened and resolved already, or on its way (openMountImage of ref, platform, plainHttp, cacheDir); opened here if absent. Closed with the mount. */
  image?: Promise<MountImage>;
  cacheDir: string;
  cacheBytes: number;
  memoryCacheBytes: number;
  prefetch: boolean;
  background: boolean;
  /** The background fill starts this long after the last on-demand request (default 5 s). */
  backgroundQuietMs?: number;
  /** Background bytes per second at most (default 0: paced to the measured link only). */
  backgroundRate?: number;
  /** Absolute paths inside the image to fetch first (instead of the eStargz landmark prefix). */
  prefetchList?: string[];
  /** The prefetch profile to fetch first (with the landmark or the list): a name, or 'none'; default the newest. Looked up only with `prefetch`. */
  profile?: string;
  mode: MountMode;
  upper?: string;
  /** FUSE per-operation timeout in ms. */
  fuseTimeoutMs: number;
  log(message: string): void;
  /** Told what is known before the mount is usable: the manifest, then each layer's outcome as its TOC is opened. */
  progress?(progress: MountProgress): void;
}

/** What a mount knows before it is usable (a layer is lazy once its TOC verified, before anything is mounted). */
export type MountProgress = { manifest: Digest; layers: Digest[] } | { layer: number; lazy: boolean; reason?: string };

export interface MountedLayer {
  index: number;
  digest: Digest;
  mediaType: string;
  size: number;
  format: string;
  lazy: boolean;
  reason?: string;
  /** Its entries, whiteouts and opaque dirs (the entries as a table: see entry-table.ts). */
  contents: LayerIndex;
  prefetchEnd?: number;
  decodeChunk: StoreLayer['decodeChunk'];
  /** The blob in the registry, or the local file of a layer fetched whole. */
  blob: BlobSource;
  metrics: LayerMetrics;
}

export interface StatsReport {
  ref: string;
  mountpoint: string;
  mode: MountMode;
  pid: number;
  /** The platform manifest mounted: a restart pins the reference to it. */
  manifest: Digest;
  timings: MountTimings;
  /** The prefetch profile: which one, found how, or why none is used. */
  profile: ProfileStatus;
  layers: Array<{
    digest: Digest;
    mediaType: string;
    format: string;
    lazy: boolean;
    reason: string | null;
    size: number;
    fetchedBytes: number;
    requests: number;
    verificationFailures: number;
    /** The layer's neighbourhood window now (compressed bytes a miss may bring); null for a layer fetched whole. */
    windowBytes: number | null;
    prefetch: { state: string; total: number; done: number };
    background: { state: string; total: number; done: number };
  }>;
  totals: {
    fetchedBytes: number;
    metadataBytes: number;
    servedBytes: number;
    requests: number;
    /** Chunk requests by the priority they went at (the rest of `requests`: footers, TOCs, whole layers, metadata). */
    chunkRequests: { read: number; readAhead: number; prefetch: number; speculative: number; background: number };
    cache: { memoryHits: number; memoryMisses: number; diskHits: number; diskMisses: number; diskBytes: number };
    fetchLatencyMs: { p50: number; p95: number; p99: number; count: number };
    verificationFailures: number;
    /** Files fetched ahead of the dynamic loader (libraries of programs being started). */
    filesAhead: number;
    /** Python modules fetched ahead of the importer (the imports of modules being imported). */
    modulesAhead: number;
    /** C and C++ headers fetched ahead of the compiler (the includes of sources and headers being read). */
    headersAhead: number;
    /** Directories fetched at once, their files having missed one by one. */
    dirsAhead: number;
    /** Files of the image's command (Entrypoint + Cmd) fetched at mount: its program, the files its arguments name. */
    commandFiles: number;
  };
}

/**
 * A full garbage collection, for a mount's owner to run once the mount is up and reported ready
 * (on a later turn of the loop, when setUp's frames no longer reach the decompressed TOCs), and for
 * a small image once it is quiet too (`ImageMount.quiet`): it takes ~50 ms of the thread that serves
 * every FUSE request (a python image's), which came just as the container's first reads did.
 * Parsing a large TOC and building the tree leave several times their final size in garbage
 * (decompressed TOC, JSON text, raw objects: ~150 MB for 100k entries); an idle daemon would keep
 * that RSS for minutes, and every later GC while serving would walk it (measured: 277 MiB RSS after
 * mount against 212). Not before the mount is reported ready: that full GC was on the path of every
 * `starling mount`. Without `--expose-gc` on the command line (`starling mount --foreground` started
 * by hand or by a service manager) the flag is turned on now and `gc` taken from a new context,
 * where V8 installs it: a mount that skipped this collection held 275 MiB instead of 175 MiB after
 * mounting a 100k-file image.
 */
export function collectGarbage(): void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed();
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Milliseconds from the start of ImageMount.open to the end of each step. */
export interface MountTimings {
  /** Reference resolved to the platform manifest. */
  manifestMs: number;
  /** Every layer's footer and TOC fetched and parsed (or the layer fetched whole), and the config. */
  layersMs: number;
  /** Trees built, FUSE (and overlay) mounted: the mount is usable. */
  mountedMs: number;
}

/** The chunk decoder of a layer that is not served (a layer left to containerd in 'layers' mode): never called. */
const notServed: StoreLayer['decodeChunk'] = () => {
  throw new Error('this layer is not served by the mount');
};

export class ImageMount {
  readonly timings: MountTimings = { manifestMs: 0, layersMs: 0, mountedMs: 0 };
  private readonly mounts = new PlanMounts();
  private prefetcher?: Prefetcher;
  private profile = profileStatus('off');
  private closed = false;
  private source?: ImageSource;
  readonly layers: MountedLayer[] = [];
  readonly metrics = new MountMetrics();
  private cache?: ChunkCache;
  private store?: ChunkStore;
  private scheduler?: FetchScheduler;
  private manifest?: Digest;

  private constructor(readonly opts: ImageMountOptions) {}

  /** Mounts the image; on any failure, whatever was mounted is unmounted before the error is thrown. */
  static async open(opts: ImageMountOptions): Promise<ImageMount> {
    const m = new ImageMount(opts);
    try {
      await m.setUp();
      return m;
    } catch (err) {
      await m.close().catch((e) => opts.log(`cleanup after failed mount: ${(e as Error).message}`));
      throw err;
    }
  }

  private async setUp(): Promise<void> {
    const { opts } = this;
    const t0 = performance.now();
    // fuse-native (a native addon and its JS) loads while the manifest and TOCs are on their way.
    const fuse = import('../fs/fuse.js');
    fuse.catch(() => {}); // awaited before mounting
    const lap = (step: keyof MountTimings) => (this.timings[step] = Math.round(performance.now() - t0));
    const { source: imageSource, image, tocReads } = await (opts.image ?? openMountImage({ ...opts, tocCacheDir: opts.cacheDir }));
    this.source = imageSource;
    this.manifest = image.manifestDescriptor.digest;
    lap('manifestMs');
    opts.progress?.({ manifest: this.manifest, layers: image.manifest.layers.map((l) => l.digest) });
    // The profile comes while the layers' TOCs do; the prefetch waits for it, the mount does not.
    const profile = opts.prefetch && opts.profile !== 'none' ? findPrefetchProfile(this.source, image, opts.profile) : undefined;
    if (profile) this.profile = profileStatus('pending');
    const cache = await ChunkCache.open({ dir: opts.cacheDir, diskBytes: opts.cacheBytes, memoryBytes: opts.memoryCacheBytes, counters: this.metrics.cache });
    this.cache = cache;
    const source = this.source;
    // Gzip indexes (referrers of the manifest) come while the layers' TOCs do, looked for only when a layer may use one.
    const gzipIndexes = image.manifest.layers.some(mayUseGzipIndex) ? findGzipIndexes(source, image) : undefined;
    void gzipIndexes?.all.then((f) => opts.log(`gzip indexes: ${f.indexes.size} found${f.digest ? ` in ${f.digest} (via ${f.via})` : ''}${f.problems.length ? `; ${f.problems.join('; ')}` : ''}`));
    // The config comes while the layers' footers and TOCs do.
    const config = image.config.then((c) => {
      this.metrics.metadataBytes = image.manifestDescriptor.size + c.configBytes.length + (image.index?.size ?? 0);
      this.metrics.metadataRequests = image.index ? 3 : 2;
      return c.config;
    });
    config.catch(() => {}); // awaited below; a layer failing first must not leave it unhandled
    const opened = await Promise.all(
      image.manifest.layers.map(async (desc, index): Promise<MountedLayer> => {
        const metrics = new LayerMetrics();
        const remote = new CountingBlob(new EarlyReadBlob(await source.openBlobSource(desc), tocReads.get(desc.digest)), metrics, this.metrics.latency);
        const tl = performance.now();
        const lazy = await this.openToc(remote, desc, gzipIndexes?.layer(desc.digest)).catch((err: unknown) => {
          // For containerd a layer whose TOC does not verify is one to unpack, not a failed mount.
          if (opts.mode === 'layers' && err instanceof TocError) return { ok: false as const, reason: `its TOC was refused: ${err.message}` };
          throw err;
        });
        const base = { index, digest: desc.digest, mediaType: desc.mediaType, size: desc.size, metrics };
        if (lazy.ok) {
          // Told before indexing (40 ms of a 9k-entry layer, on containerd's pull): the TOC verified
          // and its parser checked what indexing checks again (paths, the root a directory).
          opts.progress?.({ layer: index, lazy: true });
          const ti = performance.now();
          const contents = indexLayer(lazy.toc.entries, `layer ${desc.digest}`);
          opts.log(`layer ${index}: TOC at ${Math.round(ti - t0)} ms after ${Math.round(ti - tl)} ms (${metrics.requests} requests, ${metrics.fetchedBytes} bytes, ${lazy.toc.entries.length} entries), indexed in ${Math.round(performance.now() - ti)} ms`);
          return { ...base, format: lazy.toc.format, lazy: true, contents, prefetchEnd: lazy.toc.prefetchEnd, decodeChunk: lazy.toc.decodeChunk, blob: remote };
        }
        await remote.close();
        opts.progress?.({ layer: index, lazy: false, reason: lazy.reason });
        const format = layerCompression(desc.mediaType) ?? 'unknown';
        const notLazy = { ...base, format: format === 'none' ? 'tar' : format, lazy: false, reason: lazy.reason };
        // containerd unpacks such a layer itself: it is neither fetched nor mounted here.
        if (opts.mode === 'layers') return { ...notLazy, contents: indexLayer([], `layer ${desc.digest}`), decodeChunk: notServed, blob: remote };
        const whole = await openWholeLayer(source, desc, opts.cacheDir);
        if (whole.fetched) {
          metrics.fetchedBytes += desc.size;
          metrics.requests++;
        }
        return { ...notLazy, contents: indexLayer(whole.entries, `layer ${desc.digest}`), decodeChunk: whole.decodeChunk, blob: whole.blob };
      }),
    );
    this.layers.push(...opened);
    tocReads.clear(); // their bytes, read or not, are not kept with the image for the life of the mount
    const command = containerCommand(await config);
    // The gzip index referrer (listing, manifest, index blobs) is image metadata, as the manifest
    // and config are; the layers that use an index have awaited it already.
    const fetched = (await gzipIndexes?.all)?.fetched;
    if (fetched) {
      this.metrics.metadataBytes += fetched.bytes;
      this.metrics.metadataRequests += fetched.requests;
    }
    lap('layersMs');
    const indexes = opened.map((l) => l.contents);
    const scheduler = new FetchScheduler({ ...DEFAULT_SCHEDULER, quietMs: opts.backgroundQuietMs ?? DEFAULT_SCHEDULER.quietMs, backgroundRate: opts.backgroundRate ?? 0 });
    this.scheduler = scheduler;
    const store = new ChunkStore(
      cache,
      scheduler,
      opened.map((l) => ({ name: l.digest, decodeChunk: l.decodeChunk, blob: l.blob, metrics: l.metrics, entries: l.contents.entries, remote: l.lazy })),
      opts.log,
    );
    this.store = store;
    const fsname = `starling:${opts.ref}`.replace(/[,\s]/g, '_');
    const plan = planImageMount({ mode: opts.mode, mountpoint: opts.mountpoint, workDir: opts.workDir, layers: opened, ...(opts.upper ? { upper: opts.upper } : {}) });
    await fuse; // a failure to load fuse-native is reported as such, before any mount
    const fsOf = (tree: Tree) => new LazyFs(tree, store, this.metrics, { libraries: opts.prefetch, modules: opts.prefetch, includes: opts.prefetch, directories: opts.prefetch });
    // The merged tree now (the prefetch uses it); a layer's own tree at its mount's first request:
    // under containerd a container on the whole image uses only the merged mount, and building the
    // per-layer trees first held its Prepare up (~30 ms for the python image).
    const mergedTree = plan.fuse.some((f) => f.layer === 'merged') ? buildMergedTree(indexes, opts.log) : undefined;
    const mergedFs = mergedTree && fsOf(mergedTree);
    const fsFor = (layer: 'merged' | number) => (layer === 'merged' ? mergedFs! : fsOf(buildLayerTree(indexes[layer]!, layer, opts.log)));
    await this.mounts.apply(plan, { fsFor, fsname, timeoutMs: opts.fuseTimeoutMs, log: opts.log });
    mergedFs?.libraries?.fetchLoader();
    if (opts.prefetch) mergedFs?.commands.fetch(command);
    lap('mountedMs');
    const t = this.timings;
    opts.log(`process up ${Math.round(t0)} ms before; mounted in ${t.mountedMs} ms: manifest ${t.manifestMs} ms, layers (footers, TOCs, config) ${t.layersMs - t.manifestMs} ms, trees and FUSE ${t.mountedMs - t.layersMs} ms`);
    if (!profile) return this.startPrefetch(store, mergedTree);
    void profile.then(({ status, profile: chosen }) => {
      this.profile = status;
      opts.log(`prefetch profile: ${status.state}${status.name ? ` ${status.name}` : ''}${status.digest ? ` (${status.digest}, via ${status.via})` : ''}${status.reason ? `: ${status.reason}` : ''}`);
      if (!this.closed) this.startPrefetch(store, mergedTree, chosen);
    });
  }

  /** openLayerToc through the TOC range cache; cached bytes that fail verification are dropped and refetched. */
  private async openToc(remote: BlobSource, desc: Descriptor, gzipIndex: GzipIndexLookup | undefined): ReturnType<typeof openLayerToc> {
    const cached = new TocRangeCache(remote, this.opts.cacheDir, desc.digest);
    try {
      return await openLayerToc(cached, desc, gzipIndex);
    } catch (err) {
      if (!(err instanceof TocError)) throw err;
      await cached.drop();
      this.opts.log(`layer ${desc.digest}: cached TOC did not verify (${err.message}); reading it again`);
      return openLayerToc(remote, desc, gzipIndex);
    }
  }

  /**
   * Fetches first, per layer: the profile's files (in the layer the profile names: the top-most
   * with that digest), then the --prefetch-list's (in the top-most layer holding each), or else
   * the eStargz landmark prefix.
   */
  private startPrefetch(store: ChunkStore, mergedTree: Tree | undefined, profile?: PrefetchProfile): void {
    const { opts } = this;
    const files = this.layers.map((): PrefetchFile[] => []);
    for (const pl of profile?.layers ?? []) {
      let i = this.layers.length - 1;
      while (i >= 0 && this.layers[i]!.digest !== pl.digest) i--;
      if (i >= 0) files[i]!.push(...pl.files);
    }
    for (const p of opts.prefetchList ?? []) {
      const found = this.findListed(p, mergedTree);
      if (found) files[found.layer]!.push({ path: found.path });
      else opts.log(`prefetch list: ${p}: not in the image`);
    }
    this.prefetcher = new Prefetcher(
      this.layers.map((l, i) => ({
        priority: [...chunksOfFiles(l.contents.entries, files[i]!), ...(!opts.prefetchList && l.lazy && l.prefetchEnd !== undefined ? l.contents.entries.chunksBefore(l.prefetchEnd) : [])],
        background: l.lazy,
        prefetch: l.metrics.prefetch,
        backgroundProgress: l.metrics.background,
      })),
      store,
      { prefetch: opts.prefetch, background: opts.background },
    );
    this.prefetcher.start();
  }

  /** The file a --prefetch-list path names: its path and the top-most layer holding it (merged tree when there is one). */
  private findListed(p: string, tree: Tree | undefined): { layer: number; path: string } | undefined {
    const parts = p.split('/').filter((x) => x !== '' && x !== '.');
    const path = parts.join('/');
    if (tree) {
      let node = tree.root;
      for (const part of parts) {
        const next = node.children?.get(part);
        if (!next) return undefined;
        node = next;
      }
      return node.table.typeOf(node.row) === 'reg' ? { layer: node.layer, path } : undefined;
    }
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const table = this.layers[i]!.contents.entries;
      for (let row = 0; row < table.length; row++) {
        if (table.path(row) === path && table.typeOf(row) === 'reg') return { layer: i, path };
      }
    }
    return undefined;
  }

  /** Resolves once no read has had to fetch for `ms` (at once for a mount that is not up or is closed). */
  quiet(ms: number): Promise<void> {
    return this.scheduler?.quiet(ms) ?? Promise.resolve();
  }

  stats(): StatsReport {
    const layers = this.layers.map((l) => ({
      digest: l.digest,
      mediaType: l.mediaType,
      format: l.format,
      lazy: l.lazy,
      reason: l.reason ?? null,
      size: l.size,
      fetchedBytes: l.metrics.fetchedBytes,
      requests: l.metrics.requests,
      verificationFailures: l.metrics.verificationFailures,
      windowBytes: l.lazy && this.store ? this.store.windowOf(l.index) : null,
      prefetch: { ...l.metrics.prefetch },
      background: { ...l.metrics.background },
    }));
    const sum = (f: (l: (typeof layers)[number]) => number) => layers.reduce((n, l) => n + f(l), 0);
    return {
      ref: this.opts.ref,
      mountpoint: this.opts.mountpoint,
      mode: this.opts.mode,
      pid: process.pid,
      manifest: this.manifest!,
      timings: { ...this.timings },
      profile: { ...this.profile },
      layers,
      totals: {
        fetchedBytes: this.metrics.metadataBytes + sum((l) => l.fetchedBytes),
        metadataBytes: this.metrics.metadataBytes,
        servedBytes: this.metrics.servedBytes,
        requests: this.metrics.metadataRequests + sum((l) => l.requests),
        chunkRequests: chunkRequests(this.scheduler?.sent ?? []),
        cache: { ...this.metrics.cache, diskBytes: this.cache?.diskBytesUsed ?? 0 },
        fetchLatencyMs: this.metrics.latency.percentiles(),
        verificationFailures: sum((l) => l.verificationFailures),
        filesAhead: this.metrics.filesAhead,
        modulesAhead: this.metrics.modulesAhead,
        headersAhead: this.metrics.headersAhead,
        dirsAhead: this.metrics.dirsAhead,
        commandFiles: this.metrics.commandFiles,
      },
    };
  }

  /** Unmounts in reverse order (overlay, then FUSE), stops prefetch, waits for cache writes, closes blobs. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    this.prefetcher?.stop();
    await this.store?.close();
    const errors = await this.mounts.unmount();
    for (const l of this.layers.splice(0)) await l.blob.close().catch(() => {});
    await this.source?.close().catch(() => {});
    this.source = undefined;
    if (errors.length === 0) await rm(join(this.opts.workDir, 'layers'), { recursive: true, force: true }).catch(() => {});
    if (errors.length) throw new Error(`unmount: ${errors.join('; ')}`);
  }
}

/** The scheduler's requests by priority, named. */
function chunkRequests(sent: readonly number[]): StatsReport['totals']['chunkRequests'] {
  const n = (p: Priority) => sent[p] ?? 0;
  return { read: n(Priority.Read), readAhead: n(Priority.ReadAhead), prefetch: n(Priority.Prefetch), speculative: n(Priority.Speculative), background: n(Priority.Background) };
}
