// docker:// images as ImageSource / ImageDestination (src/oci/store.ts), on RegistryClient.
import type { Readable } from 'node:stream';
import type { BlobSource } from '../blob/source.js';
import { RegistryBlob, type RegistryBlobOptions } from '../blob/registry-blob.js';
import { sha256, type Digest } from '../oci/digest.js';
import { INDEX_TYPES, MANIFEST_TYPES } from '../oci/mediatypes.js';
import type { ImageDestination, ImageSource } from '../oci/store.js';
import type { Descriptor, Platform } from '../oci/types.js';
import { registryBlobStream } from './blob-stream.js';
import { readLimited, RegistryClient, type RegistryClientOptions } from './client.js';
import type { CredentialStore } from './credentials.js';
import { RegistryError } from './errors.js';
import { formatDockerReference, parseDockerReference, type DockerReference } from './reference.js';
import { uploadBlobFile, type UploadOptions } from './upload.js';

export interface RegistryOptions {
  /** Platform to pick from an index when a single image is wanted (default: the host). */
  platform?: Platform;
  /** Use http:// (default for localhost and 127.0.0.1, as Docker does). */
  plainHttp?: boolean;
  /** Accept TLS certificates that do not verify. */
  insecure?: boolean;
  /** Credentials (default: docker's config.json lookup). */
  credentials?: CredentialStore;
  /** Retries, timeouts, connections, a shared dispatcher. */
  client?: Omit<RegistryClientOptions, 'plainHttp' | 'insecure' | 'credentials'>;
  /** Range-read behaviour of the RegistryBlobs that openBlobSource returns. */
  blob?: RegistryBlobOptions;
  /** Upload chunking (destinations). */
  upload?: Pick<UploadOptions, 'chunkSize'>;
}

// JSON blobs (configs) read whole are capped: a config is kilobytes.
const MAX_JSON_BLOB = 16 << 20;

/**
 * Which repositories of a registry are known to hold a blob, learnt from what this process read
 * or wrote. A destination on the same registry tries a cross-repository mount from them.
 */
const knownLocations = new Map<string, Set<string>>();

function remember(domain: string, repository: string, digest: Digest): void {
  const key = `${domain} ${digest}`;
  let repos = knownLocations.get(key);
  if (!repos) knownLocations.set(key, (repos = new Set()));
  repos.add(repository);
}

function knownRepositories(domain: string, digest: Digest): string[] {
  return [...(knownLocations.get(`${domain} ${digest}`) ?? [])];
}

function makeClient(ref: DockerReference, opts: RegistryOptions): RegistryClient {
  return new RegistryClient(
    ref.domain,
    {
      ...opts.client,
      ...(opts.plainHttp !== undefined ? { plainHttp: opts.plainHttp } : {}),
      ...(opts.insecure !== undefined ? { insecure: opts.insecure } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    },
    ref.host,
  );
}

function isManifestType(mediaType: string): boolean {
  return MANIFEST_TYPES.includes(mediaType) || INDEX_TYPES.includes(mediaType);
}

export class RegistryImageSource implements ImageSource {
  readonly description: string;

  constructor(
    readonly ref: DockerReference,
    readonly client: RegistryClient,
    private readonly opts: RegistryOptions = {},
  ) {
    this.description = formatDockerReference(ref);
  }

  /** HEAD the tag for its digest, then GET by digest (verified); GET by tag if HEAD gives no digest. */
  /**
   * The manifest or index the reference names. A tag is resolved with one GET, not a HEAD for the
   * digest and then a GET by it: a round trip less before a mount can start, and just as safe, since
   * the body is hashed and checked against Docker-Content-Digest (getManifest).
   */
  async resolveRoot(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const m = await this.client.getManifest(this.ref.repository, this.ref.digest ?? this.ref.tag ?? 'latest');
    return { descriptor: { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length }, bytes: m.bytes };
  }

  async fetchJSONBytes(desc: Descriptor): Promise<Buffer> {
    const { repository } = this.ref;
    if (isManifestType(desc.mediaType)) {
      const m = await this.client.getManifest(repository, desc.digest, desc.digest);
      if (m.bytes.length !== desc.size) throw new RegistryError(this.client.context(repository, `manifest ${desc.digest}`), `size ${m.bytes.length} does not match the descriptor's ${desc.size}`);
      return m.bytes;
    }
    const object = `blob ${desc.digest}`;
    const ctx = this.client.context(repository, object);
    if (desc.size > MAX_JSON_BLOB) throw new RegistryError(ctx, `${desc.mediaType} of ${desc.size} bytes is too large to read as JSON`);
    const bytes = await this.client.fetch({ method: 'GET', repository, path: `blobs/${desc.digest}`, object }, (res) => readLimited(res.body, MAX_JSON_BLOB, ctx));
    const actual = sha256(bytes);
    if (actual !== desc.digest || bytes.length !== desc.size) throw new RegistryError(ctx, `blob (${bytes.length} bytes) hashes to ${actual}; expected ${desc.size} bytes`);
    remember(this.client.domain, repository, desc.digest);
    return bytes;
  }

  async openBlobStream(desc: Descriptor): Promise<Readable> {
    remember(this.client.domain, this.ref.repository, desc.digest);
    return registryBlobStream(this.client, this.ref.repository, desc);
  }

  async openBlobSource(desc: Descriptor): Promise<BlobSource> {
    const blob = await RegistryBlob.open(this.client, this.ref.repository, desc, this.opts.blob);
    remember(this.client.domain, this.ref.repository, desc.digest);
    return blob;
  }

  preconnect(connections: number): void {
    this.client.preconnect(connections);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export class RegistryImageDestination implements ImageDestination {
  readonly description: string;
  private readonly manifests = new Map<Digest, { mediaType: string; bytes: Buffer }>();
  /** How each blob got there (tests and progress read it). */
  readonly uploads: Array<{ digest: Digest; how: 'present' | 'mounted' | 'monolithic' | 'chunked' }> = [];

  constructor(
    readonly ref: DockerReference,
    readonly client: RegistryClient,
    private readonly opts: RegistryOptions = {},
  ) {
    this.description = formatDockerReference(ref);
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return (await this.client.blobSize(this.ref.repository, desc.digest)) !== undefined;
  }

  async putBlobFile(desc: Descriptor, file: string): Promise<void> {
    const { repository } = this.ref;
    if (await this.hasBlob(desc)) {
      this.uploads.push({ digest: desc.digest, how: 'present' });
    } else {
      const r = await uploadBlobFile(this.client, repository, desc, file, { ...this.opts.upload, mountFrom: knownRepositories(this.client.domain, desc.digest) });
      this.uploads.push({ digest: desc.digest, how: r.how });
    }
    remember(this.client.domain, repository, desc.digest);
  }

  async putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    await this.client.putManifest(this.ref.repository, desc.digest, desc.mediaType, bytes);
    this.manifests.set(desc.digest, { mediaType: desc.mediaType, bytes });
  }

  /** Tags the root; a by-digest reference only checks that the root is the digest it names. */
  async setRoot(desc: Descriptor): Promise<void> {
    const { repository, tag, digest } = this.ref;
    if (digest && digest !== desc.digest) {
      throw new RegistryError(this.client.context(repository, `manifest ${desc.digest}`), `the destination reference names ${digest}, but the image pushed is ${desc.digest}`);
    }
    if (!tag || digest) return;
    let m = this.manifests.get(desc.digest);
    if (!m) {
      const fetched = await this.client.getManifest(repository, desc.digest);
      m = { mediaType: fetched.mediaType, bytes: fetched.bytes };
    }
    await this.client.putManifest(repository, tag, m.mediaType, m.bytes);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export async function openRegistrySource(ref: string, opts: RegistryOptions = {}): Promise<ImageSource> {
  const parsed = parseDockerReference(ref);
  return new RegistryImageSource(parsed, makeClient(parsed, opts), opts);
}

export async function openRegistryDestination(ref: string, opts: RegistryOptions = {}): Promise<ImageDestination> {
  const parsed = parseDockerReference(ref);
  return new RegistryImageDestination(parsed, makeClient(parsed, opts), opts);
}
