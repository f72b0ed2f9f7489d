// Media types and annotation keys of OCI, Docker v2.2, eStargz and zstd:chunked (formats.md §1c.1, §1a.7, §1b.6).
export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  /** OCI 1.1's empty blob `{}`: the config of an artifact that has none. */
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  /** A Starling prefetch profile: the artifactType of its manifest and the media type of its one blob (docs/prefetch-profile.md). */
  starlingPrefetchProfile: 'application/vnd.starling.prefetch-profile.v1+json',
} as const;

export const INDEX_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.dockerManifestList];
export const MANIFEST_TYPES: readonly string[] = [MediaType.ociManifest, MediaType.dockerManifest];

export type LayerCompression = 'none' | 'gzip' | 'zstd';

/** The compression a layer media type declares, or undefined if it is not a layer type we know. */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  switch (mediaType) {
    case MediaType.ociLayer:
    case MediaType.ociLayerNondistributable:
      return 'none';
    case MediaType.ociLayerGzip:
    case MediaType.ociLayerNondistributableGzip:
    case MediaType.dockerLayerGzip:
    case MediaType.dockerLayerForeignGzip:
      return 'gzip';
    case MediaType.ociLayerZstd:
    case MediaType.ociLayerNondistributableZstd:
      return 'zstd';
    default:
      return undefined;
  }
}

export const Annotation = {
  estargzTocDigest: 'containerd.io/snapshot/stargz/toc.digest',
  estargzUncompressedSize: 'io.containers.estargz.uncompressed-size',
  /**
   * Where the eStargz TOC member starts (decimal byte offset), written by `starling convert`: the
   * footer and TOC then come in one exact request instead of a guessed tail and a second read. Only
   * a hint: the footer still says where the TOC is, and the TOC digest authenticates it.
   */
  estargzTocOffset: 'dev.starling.estargz.toc-offset',
  zstdChunkedManifestChecksum: 'io.github.containers.zstd-chunked.manifest-checksum',
  zstdChunkedManifestPosition: 'io.github.containers.zstd-chunked.manifest-position',
  zstdChunkedTarSplitPosition: 'io.github.containers.zstd-chunked.tarsplit-position',
  /** Pre-2022-11 names, still written by stargz-snapshotter and containers/storage 1.43. */
  legacyZstdChunkedManifestChecksum: 'io.containers.zstd-chunked.manifest-checksum',
  legacyZstdChunkedManifestPosition: 'io.containers.zstd-chunked.manifest-position',
  dockerReferenceType: 'vnd.docker.reference.type',
  dockerReferenceDigest: 'vnd.docker.reference.digest',
  ociRefName: 'org.opencontainers.image.ref.name',
  ociCreated: 'org.opencontainers.image.created',
  /** Prefetch profile manifests: the workload's name and its command (a JSON array of strings). */
  starlingProfileName: 'dev.starling.profile.name',
  starlingProfileCommand: 'dev.starling.profile.command',
} as const;
