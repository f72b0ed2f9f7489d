// From a reference's root (manifest or index) to one platform's image: picks the best match by
// containerd's ordered platform rules, skips attestation manifests, refuses artifacts that are not
// images. Works on any ImageSource (docker:// or oci:), on the shared descent of manifest-walk.ts.
import { formatPlatform, hostPlatform, isAttestationManifest, normalizePlatform, platformMatcher } from '../oci/platform.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, ImageConfig, ImageManifest, Platform } from '../oci/types.js';
import { parseConfig } from '../oci/validate.js';
import { configPlatform, hasImageConfig, ResolveError, walkManifests, type IndexNode } from './manifest-walk.js';

export interface ResolvedManifest {
  /** The index the manifest was picked from, when the reference named one. */
  index?: Descriptor;
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
}

export interface ImageConfigOf {
  config: ImageConfig;
  configBytes: Buffer;
}

export type ResolvedImage = ResolvedManifest & ImageConfigOf;

/**
 * Resolves `source`'s root to the manifest for `platform`. Without a platform the host's picks
 * from an index and a single manifest is taken whatever its platform; with one, a single
 * manifest whose config names another platform is refused.
 */
export async function resolveImage(source: ImageSource, platform?: Platform): Promise<ResolvedImage> {
  const { config, ...img } = await resolveManifest(source, platform);
  return { ...img, ...(await config) };
}

/**
 * resolveImage, with the config still on its way: a caller can start on the layers (a mount's TOCs)
 * while it comes. The config promise carries every check that needs the config (its diff_ids, the
 * platform of a single manifest); it is marked handled, so a caller that fails first leaves no
 * unhandled rejection.
 */
export async function resolveManifest(source: ImageSource, platform?: Platform): Promise<ResolvedManifest & { config: Promise<ImageConfigOf> }> {
  const want = normalizePlatform(platform ?? hostPlatform());
  const img = await walkManifests<ResolvedManifest>(
    source,
    {
      select: (node) => [bestMatch(source, node, want)],
      manifest: ({ descriptor, manifest }) => {
        const artifact = manifest.artifactType ?? (hasImageConfig(manifest) ? undefined : manifest.config.mediaType);
        if (artifact !== undefined) throw new ResolveError(`${source.description}: ${descriptor.digest} is an artifact of type ${artifact}, not a container image`);
        return { manifestDescriptor: descriptor, manifest };
      },
      // Folded from the inside out: the outermost index is the one named last.
      index: (node, [chosen]) => ({ ...chosen!.value, index: node.descriptor }),
    },
    { field: (node) => `${source.description} ${node.descriptor.digest}` },
  );
  const config = fetchConfig(source, img).then((c) => {
    if (platform && !img.index) {
      const have = configPlatform(c.config);
      if (!platformMatcher(want).matches(have)) {
        throw new ResolveError(`${source.description}: the image is for ${formatPlatform(normalizePlatform(have))}, not ${formatPlatform(want)}`);
      }
    }
    return c;
  });
  config.catch(() => {});
  return { ...img, config };
}

async function fetchConfig(source: ImageSource, img: ResolvedManifest): Promise<ImageConfigOf> {
  const m = img.manifest;
  const configBytes = await source.fetchJSONBytes(m.config);
  const config = parseConfig(configBytes, `${source.description} config ${m.config.digest}`);
  if (config.rootfs.diff_ids.length !== m.layers.length) {
    throw new ResolveError(`${source.description}: manifest ${img.manifestDescriptor.digest} has ${m.layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff_ids`);
  }
  return { config, configBytes };
}

/** The entry of an index that serves `platform` best, attestations aside. */
function bestMatch(source: ImageSource, node: IndexNode, platform: Platform): Descriptor {
  const entries = node.index.manifests;
  const matcher = platformMatcher(platform);
  const candidates = entries.filter((d) => !isAttestationManifest(d) && d.platform && matcher.matches(d.platform));
  candidates.sort((a, b) => matcher.rank(a.platform!) - matcher.rank(b.platform!));
  const chosen = candidates[0];
  if (chosen) return chosen;
  const available = entries.filter((d) => !isAttestationManifest(d) && d.platform).map((d) => formatPlatform(d.platform!));
  const artifacts = entries.filter((d) => d.artifactType).map((d) => d.artifactType);
  throw new ResolveError(
    `${source.description}: no image for platform ${formatPlatform(platform)} (available: ${available.length ? available.join(', ') : 'none'}${artifacts.length ? `; artifacts: ${[...new Set(artifacts)].join(', ')}` : ''})`,
  );
}
