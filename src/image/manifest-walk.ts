// The manifest walker (DESIGN.md, image/): every manifest of an image reference through its
// indexes, with what an image adds to the document: whether it is one, the image an attestation
// describes, its config. Built on registry/'s descent (manifest-walk.ts), which resolving one
// platform's manifest shares.
import { Annotation } from '../oci/mediatypes.js';
import { isAttestationManifest } from '../oci/platform.js';
import type { ImageSource } from '../oci/store.js';
import type { ImageConfig } from '../oci/types.js';
import { parseConfig } from '../oci/validate.js';
import { hasImageConfig, walkManifests, type ManifestFold, type ManifestNode, type WalkFrom } from '../registry/manifest-walk.js';

export { configPlatform, type IndexNode } from '../registry/manifest-walk.js';

export interface ImageManifestNode extends ManifestNode {
  /** A container image (an image config), not an artifact. */
  isImage: boolean;
  /** For a Docker attestation manifest: the digest of the image it describes ('' when it names none). */
  attestationFor?: string;
  /** Its config, fetched (verified) and validated. */
  readConfig(): Promise<ImageConfig>;
}

export type ImageFold<T> = Omit<ManifestFold<T>, 'manifest'> & { manifest(node: ImageManifestNode): T | Promise<T> };

/** Folds the manifests and indexes of `source`'s image (see walkManifests), manifests seen as images. */
export function walkImage<T>(source: ImageSource, fold: ImageFold<T>, opts?: WalkFrom): Promise<T> {
  return walkManifests(source, { ...fold, manifest: (node) => fold.manifest(imageNode(source, node)) }, opts);
}

function imageNode(source: ImageSource, node: ManifestNode): ImageManifestNode {
  const attestation = isAttestationManifest(node.descriptor);
  return {
    ...node,
    isImage: hasImageConfig(node.manifest),
    ...(attestation ? { attestationFor: node.descriptor.annotations?.[Annotation.dockerReferenceDigest] ?? '' } : {}),
    readConfig: async () => parseConfig(await source.fetchJSONBytes(node.manifest.config), `${node.path}.config`),
  };
}
