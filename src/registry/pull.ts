// A full (non-lazy) pull: resolve the platform's image, download every layer in parallel, verify
// digests and diffIDs, and extract the layers in order into a rootfs. The baseline lazy pulling
// is measured against, so it streams: the layer being extracted is decompressed and applied as its
// bytes arrive, while later layers download in parallel to spool files; layer order is kept.
//
// The rootfs is built in a temporary sibling of DIR and renamed to DIR only when every layer has
// been extracted and verified: a failed pull leaves no DIR that looks complete.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompressedTar } from '../format/compression.js';
import { DigestingStream } from '../oci/digest.js';
import { extractLayer, type ExtractResult } from '../oci/extract.js';
import { layerCompression } from '../oci/mediatypes.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, Platform } from '../oci/types.js';
import { resolveImage } from './resolve.js';
import { ByteCounter } from '../oci/byte-counter.js';
import { limiter } from '../blob/limiter.js';

export class PullError extends Error {}

export interface PullOptions {
  platform?: Platform;
  /** Layers downloading at once (default 4). */
  concurrency?: number;
  /** Called with compressed bytes as they arrive. */
  onBytes?: (n: number) => void;
  /** Called once the image is resolved, with the sum of its layer sizes. */
  onTotal?: (bytes: number) => void;
  /** Aborts the pull (e.g. on SIGINT): downloads stop, the temporary tree is removed, DIR is not created. */
  signal?: AbortSignal;
}

export interface PullSummary {
  manifestDigest: string;
  platform: string;
  layers: number;
  /** Compressed layer bytes received. */
  bytesTransferred: number;
  /** Uncompressed tar bytes applied. */
  bytesExtracted: number;
  /** Regular-file bytes written. */
  fileBytes: number;
  entries: number;
  skippedDevices: number;
  seconds: number;
}


/** `stream` through a ByteCounter, errors and destruction passed along both ways. */
function counted(stream: Readable, count: (n: number) => void): Readable {
  const c = new ByteCounter(count);
  stream.once('error', (err) => c.destroy(err));
  c.once('close', () => stream.destroy());
  return stream.pipe(c);
}

/** Extraction target: DIR must not exist or be an empty directory. */
async function checkTarget(dir: string): Promise<boolean> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new PullError(`${dir} exists and is not a directory`);
    if ((await readdir(dir)).length > 0) throw new PullError(`${dir} exists and is not empty`);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

export async function pullImage(source: ImageSource, dir: string, opts: PullOptions = {}): Promise<PullSummary> {
  const started = Date.now();
  const target = resolve(dir);
  const targetExists = await checkTarget(target);
  const img = await resolveImage(source, opts.platform);
  const layers = img.manifest.layers;
  for (const [i, l] of layers.entries()) {
    if (layerCompression(l.mediaType) === undefined) throw new PullError(`${source.description}: layer ${i} (${l.digest}) has media type ${l.mediaType}, which is not a layer type Starling can extract`);
  }
  opts.onTotal?.(layers.reduce((n, l) => n + l.size, 0));
  await mkdir(dirname(target), { recursive: true });
  const work = await mkdtemp(join(dirname(target), `.${basename(target)}.pull-`));
  const rootfs = join(work, 'rootfs');
  let transferred = 0;
  const count = (n: number) => {
    transferred += n;
    opts.onBytes?.(n);
  };
  const cancel = new AbortController();
  const onAbort = () => cancel.abort(new PullError(`${source.description}: pull interrupted`));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  let spools: Array<Promise<string> | undefined> = [];
  try {
    await mkdir(rootfs, { mode: 0o755 });
    // Layer 0 streams straight into extraction; later layers spool to files, `concurrency` at a time.
    const slot = limiter(Math.max(1, opts.concurrency ?? 4));
    spools = layers.map((l, i) => (i === 0 ? undefined : slot(() => spool(source, l, join(work, `layer-${i}`), count, cancel.signal))));
    for (const p of spools) p?.catch(() => undefined); // awaited in order below; a failure surfaces there
    const totals = { bytesExtracted: 0, fileBytes: 0, entries: 0, skippedDevices: 0 };
    for (const [i, layer] of layers.entries()) {
      cancel.signal.throwIfAborted();
      const blob = i === 0 ? counted(await source.openBlobStream(layer), count) : createReadStream(await spools[i]!);
      const stop = () => blob.destroy(cancel.signal.reason as Error);
      cancel.signal.addEventListener('abort', stop, { once: true });
      let r;
      try {
        r = await applyLayer(source, layer, img.config.rootfs.diff_ids[i]!, i, blob, rootfs);
      } finally {
        cancel.signal.removeEventListener('abort', stop);
      }
      cancel.signal.throwIfAborted();
      totals.bytesExtracted += r.tarBytes;
      totals.fileBytes += r.bytes;
      totals.entries += r.entries;
      totals.skippedDevices += r.skippedDevices;
      if (i > 0) await rm(join(work, `layer-${i}`), { force: true });
    }
    if (targetExists) await rmdir(target);
    try {
      await rename(rootfs, target);
    } catch (err) {
      if (targetExists) await mkdir(target).catch(() => undefined); // give back the empty DIR we removed
      throw err;
    }
    const p = img.config;
    return {
      manifestDigest: img.manifestDescriptor.digest,
      platform: [p.os, p.architecture, p.variant].filter(Boolean).join('/'),
      layers: layers.length,
      bytesTransferred: transferred,
      ...totals,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    cancel.abort();
    await Promise.allSettled(spools); // no download may still write into `work` while it goes
    await rm(work, { recursive: true, force: true });
  }
}

/** Downloads a layer blob to `file` (the source's stream verifies size and digest at its end). */
async function spool(source: ImageSource, layer: Descriptor, file: string, count: (n: number) => void, signal: AbortSignal): Promise<string> {
  signal.throwIfAborted();
  await pipeline(await source.openBlobStream(layer), new ByteCounter(count), createWriteStream(file), { signal });
  return file;
}

/** Decompresses and extracts one layer, checking the uncompressed bytes against its diffID. */
async function applyLayer(source: ImageSource, layer: Descriptor, diffID: string, index: number, blob: Readable, rootfs: string): Promise<ExtractResult & { tarBytes: number }> {
  const { tar } = await decompressedTar(blob);
  const hashed = new DigestingStream();
  tar.once('error', (err) => hashed.destroy(err));
  const input = tar.pipe(hashed);
  // The extractor stops at the end-of-archive blocks; what follows must still be read and hashed.
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const view = { [Symbol.asyncIterator]: () => it } as unknown as Readable;
  let result: ExtractResult;
  try {
    result = await extractLayer(view, rootfs);
    while (!(await it.next()).done);
  } catch (err) {
    blob.destroy();
    tar.destroy();
    throw new PullError(`${source.description}: layer ${index} (${layer.digest}): ${(err as Error).message}`, { cause: err });
  }
  if (hashed.digest !== diffID) {
    throw new PullError(`${source.description}: layer ${index} (${layer.digest}) decompresses to ${hashed.digest}, but the config's diff_id is ${diffID}`);
  }
  return { ...result, tarBytes: hashed.bytes };
}
