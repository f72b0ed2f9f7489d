// What `starling inspect` and `inspect-layer` report: an image's index → platform manifests →
// layers with their seekable format, TOC digest and entry count, and (in a registry) the gzip
// indexes beside the image; one layer blob with its TOC.
import { FileBlob, type BlobSource } from '../blob/source.js';
import { describeLayerFormat, mayUseGzipIndex, openLayerBlob, openLayerToc, type LayerBlobInfo, type LayerKind } from '../format/open.js';
import { TocError, type FileEntry, type LayerToc } from '../format/toc.js';
import { configPlatform, walkImage, type ImageManifestNode } from '../image/manifest-walk.js';
import { registryOf } from '../image/profile-registry.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { LayerCompression } from '../oci/mediatypes.js';
import { formatPlatform } from '../oci/platform.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor } from '../oci/types.js';
import { hashFile } from './blobs.js';
import { inspectGzipIndexes, type GzipIndexSummary, type LayerGzipIndexReport } from './inspect-gzip-index.js';

export interface TocSummary {
  tocDigest: Digest;
  tocOffset: number;
  /** Filesystem entries (chunk entries and landmarks not counted). */
  entries: number;
  files: number;
  chunks: number;
  /** eStargz prioritised prefix, when there is a `.prefetch.landmark`. */
  prefetchEnd?: number;
}

export interface LayerReport {
  digest: Digest;
  mediaType: string;
  size: number;
  format: LayerKind;
  /** The manifest authenticates the TOC: the layer can be mounted lazily. */
  lazy: boolean;
  detail: string;
  toc?: TocSummary;
  /** The TOC is there but failed to open or verify. */
  error?: string;
  /** From a registry, for a layer that has a gzip index or could be lazy through one. */
  gzipIndex?: LayerGzipIndexReport;
}

export interface ManifestReport {
  platform?: string;
  descriptor: Descriptor;
  /** For attestation manifests: the image manifest they describe. */
  attestationFor?: string;
  config?: Descriptor;
  annotations?: Record<string, string>;
  layers: LayerReport[];
  /** From a registry, for an image with a layer that could be lazy through a gzip index. */
  gzipIndexes?: GzipIndexSummary;
}

export interface ImageReport {
  reference: string;
  root: Descriptor;
  annotations?: Record<string, string>;
  manifests: ManifestReport[];
}

function summarize(toc: LayerToc): TocSummary {
  const files = toc.entries.filter((e) => e.type === 'reg');
  return {
    tocDigest: toc.tocDigest,
    tocOffset: toc.tocOffset,
    entries: toc.entries.length,
    files: files.length,
    chunks: files.reduce((n, e) => n + e.chunks.length, 0),
    ...(toc.prefetchEnd !== undefined ? { prefetchEnd: toc.prefetchEnd } : {}),
  };
}

async function inspectLayer(src: ImageSource, desc: Descriptor): Promise<LayerReport> {
  const blob = await src.openBlobSource(desc);
  try {
    const info = await describeLayerFormat(blob, desc);
    const report: LayerReport = { digest: desc.digest, mediaType: desc.mediaType, size: desc.size, format: info.kind, lazy: info.lazy, detail: info.detail };
    if (info.lazy) {
      try {
        const opened = await openLayerToc(blob, desc);
        if (opened.ok) report.toc = summarize(opened.toc);
        else report.error = opened.reason;
      } catch (err) {
        report.error = (err as Error).message;
      }
    }
    return report;
  } finally {
    await blob.close();
  }
}

/** Walks the image `src` names; layers shared by several manifests are opened once. */
export async function inspectImage(src: ImageSource): Promise<ImageReport> {
  const layers = new Map<string, Promise<LayerReport>>();
  const layer = (d: Descriptor) => {
    let p = layers.get(d.digest);
    if (!p) layers.set(d.digest, (p = inspectLayer(src, d)));
    return p;
  };
  const manifests: ManifestReport[] = [];
  const inspectManifest = async (node: ImageManifestNode): Promise<Doc> => {
    const m = node.manifest;
    const report: ManifestReport = { descriptor: node.descriptor, config: m.config, layers: [] };
    if (m.annotations) report.annotations = m.annotations;
    if (node.attestationFor !== undefined) {
      report.attestationFor = node.attestationFor;
    } else {
      let platform = node.descriptor.platform;
      if (!platform && node.isImage) platform = configPlatform(await node.readConfig());
      if (platform) report.platform = formatPlatform(platform);
      const [layerReports, gzipIndexes] = await Promise.all([Promise.all(m.layers.map(layer)), lookForGzipIndexes(src, node) ? inspectGzipIndexes(src, { manifestDescriptor: node.descriptor, manifest: m }) : undefined]);
      // Copies: a layer's report is shared by the manifests that have the layer, an index is of one manifest.
      report.layers = layerReports.map((l) => {
        const gzipIndex = gzipIndexes?.layers.get(l.digest);
        return gzipIndex ? { ...l, gzipIndex } : l;
      });
      if (gzipIndexes) report.gzipIndexes = gzipIndexes.summary;
    }
    manifests.push(report);
    return { descriptor: node.descriptor, annotations: m.annotations };
  };
  const root = await walkImage<Doc>(src, { manifest: inspectManifest, index: (node) => ({ descriptor: node.descriptor, annotations: node.index.annotations }) });
  return { reference: src.description, root: root.descriptor, ...(root.annotations ? { annotations: root.annotations } : {}), manifests };
}

/** Gzip indexes are referrers in a registry, of images with a layer that could be lazy through one (as a mount looks for them). */
function lookForGzipIndexes(src: ImageSource, node: ImageManifestNode): boolean {
  return registryOf(src) !== undefined && node.isImage && node.manifest.layers.some(mayUseGzipIndex);
}

/** What the report keeps of a document: the root's descriptor and annotations. */
interface Doc {
  descriptor: Descriptor;
  annotations: Record<string, string> | undefined;
}

export interface LayerFileReport {
  file: string;
  size: number;
  digest: Digest;
  compression: LayerCompression;
  format: LayerBlobInfo['kind'];
  detail: string;
  toc?: TocSummary;
  /** Whether the TOC was checked against a digest given by the caller (--toc-digest). */
  tocVerified: boolean;
  entries?: FileEntry[];
}

/**
 * Opens a layer blob file and reads its TOC from the footer. `tocDigest` (an eStargz TOC digest or
 * a zstd:chunked manifest checksum) is checked when given; otherwise the TOC is shown unverified.
 */
export async function inspectLayerFile(file: string, opts: { tocDigest?: string; withEntries?: boolean } = {}): Promise<LayerFileReport> {
  const { tocDigest } = opts;
  if (tocDigest !== undefined && !isDigest(tocDigest)) throw new TocError(`--toc-digest: not a sha256 digest: ${JSON.stringify(tocDigest)}`);
  const blob: BlobSource = await FileBlob.open(file);
  try {
    const { compression, kind, detail, toc } = await openLayerBlob(blob, tocDigest);
    const { digest } = await hashFile(file);
    if (!toc && tocDigest !== undefined) throw new TocError(`${file}: --toc-digest given, but the blob has no TOC (${detail})`);
    return {
      file,
      size: blob.size,
      digest,
      compression,
      tocVerified: false,
      format: kind,
      detail,
      ...(toc ? { toc: summarize(toc), tocVerified: tocDigest !== undefined } : {}),
      ...(toc && opts.withEntries ? { entries: toc.entries } : {}),
    };
  } finally {
    await blob.close();
  }
}
