// `starling convert --referrers`: the prefetch profiles of the source image come along. Conversion
// gives every platform manifest and every converted layer a new digest; the files a workload reads
// stay the same paths, so each profile is re-targeted (subject: the new manifest; layers: the new
// digests) and pushed next to the converted image, with its name, command and creation time.
import type { Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import type { RegistryClient } from '../registry/client.js';
import { ProfileError, type PrefetchProfile } from '../image/profile.js';
import { describeProfile, fetchProfile, pushProfile } from '../image/profile-registry.js';
import { listReferrers } from '../image/referrers.js';
import type { ConvertSummary } from './image.js';

export interface CarriedProfile {
  name: string | null;
  /** The profile artifact in the source repository, and the one pushed for the converted image. */
  source: Digest;
  digest: Digest;
  /** The converted platform manifest it refers to. */
  subject: Digest;
}

/** A repository of a registry: where a source image is, or a destination (`registryOf`). */
type Registry = { client: RegistryClient; repository: string };

async function manifestAt(registry: Registry, digest: Digest): Promise<{ descriptor: Descriptor; manifest: ImageManifest }> {
  const fetched = await registry.client.getManifest(registry.repository, digest, digest);
  const manifest = parseManifest(fetched.bytes, undefined, `manifest ${digest}`);
  return { descriptor: { mediaType: fetched.mediaType, digest, size: fetched.bytes.length }, manifest };
}

/** The profile with each layer digest replaced by what that layer became (layers that did not come along are left out). */
export function retarget(profile: PrefetchProfile, layerMap: ReadonlyMap<Digest, Digest>): PrefetchProfile {
  return { version: 1, layers: profile.layers.flatMap((l) => (layerMap.has(l.digest) ? [{ digest: layerMap.get(l.digest)!, files: l.files }] : [])) };
}

/**
 * Copies every usable profile of each converted platform manifest of `src` (in `from`) to the
 * converted one in `to`. A profile that does not verify against its source image is not copied; its reason is a warning.
 */
export async function carryProfiles(src: ImageSource, from: Registry, to: Registry, summary: ConvertSummary): Promise<{ carried: CarriedProfile[]; warnings: string[] }> {
  const carried: CarriedProfile[] = [];
  const warnings: string[] = [];
  for (const m of summary.manifests) {
    const { manifests: found } = await listReferrers(from.client, from.repository, m.source, MediaType.starlingPrefetchProfile);
    if (found.length === 0) continue;
    const source = await manifestAt(from, m.source);
    const target = await manifestAt(to, m.digest);
    const layerMap = new Map(m.layers.map((l) => [l.source, l.digest]));
    // Oldest first, so that the newest is also the newest for the converted image.
    for (const desc of [...found].sort((a, b) => (describeProfile(a).created ?? '').localeCompare(describeProfile(b).created ?? ''))) {
      const info = describeProfile(desc);
      let profile: PrefetchProfile;
      try {
        ({ profile } = await fetchProfile(src, from, desc, { manifestDescriptor: source.descriptor, manifest: source.manifest }));
      } catch (err) {
        warnings.push(`profile ${desc.digest}${info.name ? ` (${info.name})` : ''} of ${m.source} not carried: ${(err as Error).message}`);
        continue;
      }
      const created = info.created ? new Date(info.created) : undefined;
      const meta = { name: info.name ?? 'unnamed', ...(info.command ? { command: info.command } : {}), ...(created && !Number.isNaN(created.getTime()) ? { created } : {}) };
      let pushed;
      try {
        pushed = await pushProfile({ ...to, subject: target.descriptor, manifest: target.manifest }, retarget(profile, layerMap), meta);
      } catch (err) {
        if (!(err instanceof ProfileError)) throw err;
        warnings.push(`profile ${desc.digest} of ${m.source} not carried: ${err.message}`);
        continue;
      }
      carried.push({ name: info.name, source: desc.digest, digest: pushed.descriptor.digest, subject: m.digest });
    }
  }
  return { carried, warnings };
}
