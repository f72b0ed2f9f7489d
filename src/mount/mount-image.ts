// The image a mount serves, opened and resolved to its platform manifest: the first network step of
// a mount. A module of its own, with only the registry client behind it, so that a mount daemon can
// send the manifest request before it compiles the formats, chunk store and FUSE code (~60 ms here),
// and the layers' TOC requests as soon as the manifest is in: the two overlap instead of adding up.
import { readEarly, type EarlyRange } from '../blob/early-read.js';
import { hintedTocRead } from '../format/estargz/first-read.js';
import { TocRangeCache } from '../fs/toc-cache.js';
import type { Digest } from '../oci/digest.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, Platform } from '../oci/types.js';
import { resolveManifest } from '../registry/resolve.js';
import { openImageSource } from '../registry/transport.js';

export interface MountImage {
  source: ImageSource;
  image: Awaited<ReturnType<typeof resolveManifest>>;
  /** The TOC reads already on their way, by layer digest (see `MountImageOptions.tocCacheDir`). */
  tocReads: Map<Digest, EarlyRange>;
}

export interface MountImageOptions {
  ref: string;
  platform?: Platform;
  plainHttp?: boolean;
  /**
   * The mount's cache directory. With it, every layer whose descriptor says where its TOC is
   * (eStargz converted by Starling) has that range asked for at once, unless this cache holds it.
   */
  tocCacheDir?: string;
}

/**
 * Connections dialled while the manifest is on its way: the manifest request takes one, and the
 * layers' TOC requests and the config request (five for a four-layer image) the others.
 */
const PRECONNECT = 5;

/** Opens the reference (blob sizes from the manifest: no HEAD per layer) and resolves it; the source is closed if that fails. */
export async function openMountImage(opts: MountImageOptions): Promise<MountImage> {
  const source = await openImageSource(opts.ref, { ...(opts.platform ? { platform: opts.platform } : {}), ...(opts.plainHttp !== undefined ? { plainHttp: opts.plainHttp } : {}), blob: { sizeFromDescriptor: true } });
  try {
    // The TOC and config requests all leave once the manifest is in: their connections are dialled now.
    source.preconnect?.(PRECONNECT);
    const image = await resolveManifest(source, opts.platform);
    const tocReads = new Map<Digest, EarlyRange>();
    if (opts.tocCacheDir !== undefined) await askForTocs(source, image.manifest.layers, opts.tocCacheDir, tocReads);
    return { source, image, tocReads };
  } catch (err) {
    await source.close().catch(() => {});
    throw err;
  }
}

/** Sends the TOC requests (once per blob); a layer whose request cannot start is left to its reader. */
async function askForTocs(source: ImageSource, layers: readonly Descriptor[], cacheDir: string, into: Map<Digest, EarlyRange>): Promise<void> {
  const blobs = new Map(layers.map((desc) => [desc.digest, desc]));
  await Promise.all(
    [...blobs.values()].map(async (desc) => {
      const range = hintedTocRead(desc);
      if (!range || (await TocRangeCache.holds(cacheDir, desc.digest, range))) return;
      const blob = await source.openBlobSource(desc).catch(() => undefined);
      if (blob) into.set(desc.digest, readEarly(blob, range));
    }),
  );
}
