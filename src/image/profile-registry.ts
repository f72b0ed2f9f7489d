// Prefetch profiles in a registry: an artifact per profile, a referrer of the image's platform
// manifest (docs/prefetch-profile.md). Pushed, listed and removed for the CLI; found, fetched and
// checked for a mount, where any problem is a reason to report, never a failed mount.
import { sha256, type Digest } from '../oci/digest.js';
import { Annotation, MediaType } from '../oci/mediatypes.js';
import type { ImageDestination, ImageSource } from '../oci/store.js';
import type { Descriptor, ImageManifest, Platform } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryImageDestination, RegistryImageSource } from '../registry/image.js';
import { resolveManifest } from '../registry/resolve.js';
import { openImageSource } from '../registry/transport.js';
import { checkProfileLayers, checkProfileName, MAX_PROFILE_BYTES, parseProfile, ProfileError, rankProfiles, serializeProfile, type PrefetchProfile } from './profile.js';
import { deleteReferrer, EMPTY_CONFIG, listReferrers, pushReferrer, type Artifact } from './referrers.js';

/** Profiles a mount tries, newest first, before it gives up. */
const MAX_PROFILES_TRIED = 3;
/** An artifact manifest with one blob is a few hundred bytes; anything much larger is not ours. */
const MAX_PROFILE_MANIFEST_BYTES = 64 << 10;

/** The image a profile belongs to: its registry, repository and resolved platform manifest. */
export interface ProfileTarget {
  client: RegistryClient;
  repository: string;
  subject: Descriptor;
  manifest: ImageManifest;
}

/**
 * The target of `ref` (a docker:// reference): its registry and repository, and the platform
 * manifest a profile refers to. `close` releases the connection.
 */
export async function openProfileTarget(ref: string, opts: { platform?: Platform; plainHttp?: boolean } = {}): Promise<ProfileTarget & { close(): Promise<void> }> {
  const source = await openImageSource(ref, opts);
  try {
    const registry = registryOf(source);
    if (!registry) throw new ProfileError(`${ref}: prefetch profiles live in registries: use a docker:// reference`);
    const image = await resolveManifest(source, opts.platform);
    const { mediaType, digest, size } = image.manifestDescriptor;
    return { ...registry, subject: { mediaType, digest, size }, manifest: image.manifest, close: () => source.close() };
  } catch (err) {
    await source.close();
    throw err;
  }
}

/** The registry side of a source or destination, when it is a registry (oci: layouts hold no referrers here). */
export function registryOf(image: ImageSource | ImageDestination): { client: RegistryClient; repository: string } | undefined {
  return image instanceof RegistryImageSource || image instanceof RegistryImageDestination ? { client: image.client, repository: image.ref.repository } : undefined;
}

export interface ProfileInfo {
  digest: Digest;
  name: string | null;
  created: string | null;
  command: string[] | null;
}

/** What a referrers list says of a profile (its annotations), for `profile ls`. */
export function describeProfile(d: Descriptor): ProfileInfo {
  const a = d.annotations ?? {};
  let command: string[] | null = null;
  try {
    const parsed: unknown = JSON.parse(a[Annotation.starlingProfileCommand] ?? 'null');
    if (Array.isArray(parsed) && parsed.every((s) => typeof s === 'string')) command = parsed;
  } catch {
    // not ours to fix: shown as unknown
  }
  return { digest: d.digest, name: a[Annotation.starlingProfileName] ?? null, created: a[Annotation.ociCreated] ?? null, command };
}

/** Pushes `profile` as a referrer of the target's manifest. The image itself is not touched. */
export async function pushProfile(target: ProfileTarget, profile: PrefetchProfile, meta: ProfileMeta): Promise<{ descriptor: Descriptor; via: 'api' | 'tag' }> {
  checkProfileName(meta.name);
  checkProfileLayers(profile, target.manifest);
  return pushReferrer(target.client, target.repository, profileArtifact(target.subject, serializeProfile(profile), meta));
}

export interface ProfileMeta {
  name: string;
  command?: string[];
  created?: Date;
}

/** The artifact that carries a profile blob: empty config, the blob, `subject`, annotations. */
export function profileArtifact(subject: Descriptor, blob: Buffer, meta: ProfileMeta): Artifact {
  const layer: Descriptor = { mediaType: MediaType.starlingPrefetchProfile, digest: sha256(blob), size: blob.length };
  const { mediaType, digest, size } = subject;
  return {
    manifest: {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: MediaType.starlingPrefetchProfile,
      config: EMPTY_CONFIG,
      layers: [layer],
      subject: { mediaType, digest, size },
      annotations: {
        [Annotation.ociCreated]: (meta.created ?? new Date()).toISOString(),
        [Annotation.starlingProfileName]: meta.name,
        ...(meta.command ? { [Annotation.starlingProfileCommand]: JSON.stringify(meta.command) } : {}),
      },
    },
    blobs: [
      { descriptor: EMPTY_CONFIG, bytes: Buffer.from('{}') },
      { descriptor: layer, bytes: blob },
    ],
  };
}

/** The target's profiles, newest first. */
export async function listProfiles(target: ProfileTarget): Promise<{ via: 'api' | 'tag'; profiles: ProfileInfo[] }> {
  const { via, manifests } = await listReferrers(target.client, target.repository, target.subject.digest, MediaType.starlingPrefetchProfile);
  return { via, profiles: rankProfiles(manifests).map(describeProfile) };
}

/** Removes the profiles named `name`, or the one whose manifest is `digest`; resolves to what was done to each. */
export async function removeProfiles(target: ProfileTarget, which: { name: string } | { digest: Digest }): Promise<Array<{ digest: Digest; untagged: boolean; manifest: 'deleted' | 'absent' | 'refused' }>> {
  const { manifests } = await listReferrers(target.client, target.repository, target.subject.digest, MediaType.starlingPrefetchProfile);
  const chosen = manifests.filter((d) => ('name' in which ? d.annotations?.[Annotation.starlingProfileName] === which.name : d.digest === which.digest));
  const out = [];
  for (const d of chosen) out.push({ digest: d.digest, ...(await deleteReferrer(target.client, target.repository, target.subject.digest, d.digest)) });
  return out;
}

/** What a mount did about profiles, for `starling stats`. */
export interface ProfileStatus {
  /** off: not asked for; pending: being looked up; none: the image has none (of that name); used; ignored: the chosen one is bad; unavailable: could not look. */
  state: 'off' | 'pending' | 'none' | 'used' | 'ignored' | 'unavailable';
  name: string | null;
  digest: Digest | null;
  via: 'api' | 'tag' | null;
  reason: string | null;
}

export function profileStatus(state: ProfileStatus['state'], more: Partial<ProfileStatus> = {}): ProfileStatus {
  return { state, name: null, digest: null, via: null, reason: null, ...more };
}

/**
 * The profile a mount of `image` uses: the newest of the image's platform manifest (of those named
 * `name`, when given), fetched and checked. Never throws: a problem is the status's reason.
 */
export async function findPrefetchProfile(source: ImageSource, image: { manifestDescriptor: Descriptor; manifest: ImageManifest }, name?: string): Promise<{ status: ProfileStatus; profile?: PrefetchProfile }> {
  const registry = registryOf(source);
  if (!registry) return { status: profileStatus('unavailable', { reason: 'profiles are found in registries only (docker:// references)' }) };
  const subject = image.manifestDescriptor.digest;
  let found;
  try {
    found = await listReferrers(registry.client, registry.repository, subject, MediaType.starlingPrefetchProfile);
  } catch (err) {
    return { status: profileStatus('unavailable', { reason: `listing the referrers of ${subject}: ${(err as Error).message}` }) };
  }
  const ranked = rankProfiles(found.manifests, name);
  if (ranked.length === 0) return { status: profileStatus('none', { via: found.via, reason: name === undefined ? `no prefetch profile refers to ${subject}` : `no prefetch profile named ${JSON.stringify(name)} refers to ${subject}` }) };
  // A bad profile is skipped for the next newest, so that a broken push does not hide good ones; a few at most.
  const skipped: string[] = [];
  let first: Partial<ProfileStatus> | undefined;
  for (const desc of ranked.slice(0, MAX_PROFILES_TRIED)) {
    const seen = { digest: desc.digest, via: found.via, name: desc.annotations?.[Annotation.starlingProfileName] ?? null };
    first ??= seen;
    try {
      const { profile, name: named } = await fetchProfile(source, registry, desc, image);
      if (name !== undefined && named !== name) throw new ProfileError(`the referrers list calls it ${JSON.stringify(name)}, its manifest ${JSON.stringify(named)}`);
      return { status: profileStatus('used', { ...seen, name: named, reason: skipped.length ? `skipped newer: ${skipped.join('; ')}` : null }), profile };
    } catch (err) {
      // Whatever went wrong (registry, digest, content), the mount goes on without this profile.
      skipped.push(`${desc.digest}${seen.name ? ` (${seen.name})` : ''}: ${(err as Error).message}`);
    }
  }
  return { status: profileStatus('ignored', { ...first, reason: skipped.join('; ') }) };
}

/** Fetches a profile artifact and checks it against the image: subject, type, one bounded blob, valid content, the image's layers. */
export async function fetchProfile(source: ImageSource, registry: { client: RegistryClient; repository: string }, desc: Descriptor, image: { manifestDescriptor: Descriptor; manifest: ImageManifest }): Promise<{ profile: PrefetchProfile; name: string | null }> {
  if (desc.size > MAX_PROFILE_MANIFEST_BYTES) throw new ProfileError(`its manifest is ${desc.size} bytes, more than the ${MAX_PROFILE_MANIFEST_BYTES} allowed`);
  const fetched = await registry.client.getManifest(registry.repository, desc.digest);
  if (fetched.bytes.length !== desc.size) throw new ProfileError(`its manifest is ${fetched.bytes.length} bytes, the referrers list says ${desc.size}`);
  const m = parseManifest(fetched.bytes, undefined, `profile manifest ${desc.digest}`);
  if (m.artifactType !== MediaType.starlingPrefetchProfile) throw new ProfileError(`artifactType ${JSON.stringify(m.artifactType)} is not ${MediaType.starlingPrefetchProfile}`);
  if (m.subject?.digest !== image.manifestDescriptor.digest) {
    throw new ProfileError(`its subject is ${m.subject?.digest ?? 'missing'}, not the image's manifest ${image.manifestDescriptor.digest} (a profile of another platform or image)`);
  }
  const blobs = m.layers.filter((l) => l.mediaType === MediaType.starlingPrefetchProfile);
  if (blobs.length !== 1) throw new ProfileError(`expected one ${MediaType.starlingPrefetchProfile} blob, found ${blobs.length}`);
  const blob = blobs[0]!;
  if (blob.size > MAX_PROFILE_BYTES) throw new ProfileError(`its blob is ${blob.size} bytes, more than the ${MAX_PROFILE_BYTES} allowed`);
  // fetchJSONBytes checks the blob against its digest and size.
  const profile = parseProfile(await source.fetchJSONBytes(blob));
  checkProfileLayers(profile, image.manifest);
  return { profile, name: m.annotations?.[Annotation.starlingProfileName] ?? null };
}
