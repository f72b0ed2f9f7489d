// The image a mount serves, opened and resolved to its platform manifest: the first network step of
// a mount. A module of its own, with only the registry client behind it, so that a mount daemon can
// send the manifest request before it compiles the formats, chunk store and FUSE code (~60 ms here):
// the two overlap instead of adding up.
import type { ImageSource } from '../oci/store.js';
import type { Platform } from '../oci/types.js';
import { resolveManifest } from '../registry/resolve.js';
import { openImageSource } from '../registry/transport.js';

export interface MountImage {
  source: ImageSource;
  image: Awaited<ReturnType<typeof resolveManifest>>;
}

export interface MountImageOptions {
  ref: string;
  platform?: Platform;
  plainHttp?: boolean;
}

/** Opens the reference (blob sizes from the manifest: no HEAD per layer) and resolves it; the source is closed if that fails. */
export async function openMountImage(opts: MountImageOptions): Promise<MountImage> {
  const source = await openImageSource(opts.ref, { ...(opts.platform ? { platform: opts.platform } : {}), ...(opts.plainHttp !== undefined ? { plainHttp: opts.plainHttp } : {}), blob: { sizeFromDescriptor: true } });
  try {
    return { source, image: await resolveManifest(source, opts.platform) };
  } catch (err) {
    await source.close().catch(() => {});
    throw err;
  }
}
