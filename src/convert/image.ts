// Whole-image conversion: index → selected platform manifests → layers (DESIGN.md "Convert").
// First a plan (every manifest and config fetched and validated, so bad input fails before any
// heavy work), then layers are converted one at a time (each writer already uses the cores) and
// the new configs, manifests and index are written; the destination's root is set last.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { claimedCodec, claimsFormat, keepOwnFormatAnnotations, seekableCodec, withoutFormatAnnotations } from '../format/codecs.js';
import { openLayerToc } from '../format/open.js';
import { configPlatform, walkImage, type ImageManifestNode, type IndexNode } from '../image/manifest-walk.js';
import type { LayerFormat } from '../format/toc.js';
import type { Digest } from '../oci/digest.js';
import { OciLayoutDestination } from '../oci/layout.js';
import { Annotation, layerCompression, MediaType } from '../oci/mediatypes.js';
import { formatPlatform, isAttestationManifest, normalizePlatform } from '../oci/platform.js';
import type { ImageDestination, ImageSource } from '../oci/store.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import { ValidationError } from '../oci/validate.js';
import { jsonBytes, putJSONBlob, putManifestBytes } from './blobs.js';
import { convertLayer, ConvertError } from './layer.js';
import { ByteCounter } from '../oci/byte-counter.js';

export interface ConvertImageOptions {
  format: LayerFormat;
  /** 'all', or the platforms to keep (exact match after normalisation); the others are left out. */
  platforms: 'all' | Platform[];
  /** Convert layers already in the target format too. */
  force?: boolean;
  chunkSize?: number;
  level?: number;
  prioritizedFiles?: string[];
  onProgress?: (event: ConvertProgress) => void;
  /** Where temporary layer files go (default: inside an OCI layout destination, else the OS temp dir). */
  tmpDir?: string;
  /** Aborts the conversion (e.g. on SIGINT): the current blob stream is destroyed, temp files removed, no root set. */
  signal?: AbortSignal;
}

export type ConvertProgress =
  | { type: 'plan'; layers: number; bytes: number }
  | { type: 'layer-start'; digest: Digest; size: number }
  | { type: 'bytes'; bytes: number }
  | { type: 'layer-done'; digest: Digest; action: LayerAction };

export type LayerAction = 'converted' | 'passed-through';

export interface LayerSummary {
  source: Digest;
  digest: Digest;
  mediaType: string;
  size: number;
  diffID: Digest;
  action: LayerAction;
  tocDigest?: string;
}

export interface ManifestSummary {
  platform?: string;
  source: Digest;
  digest: Digest;
  config: Digest;
  layers: LayerSummary[];
}

export interface ConvertSummary {
  source: string;
  destination: string;
  format: LayerFormat;
  root: Descriptor;
  manifests: ManifestSummary[];
  /** Manifests copied untouched (attestations, non-image artifacts). */
  carried: Digest[];
  /** Things accepted that a user may want to know about (e.g. a source layer missing its tar padding). */
  warnings: string[];
  layersConverted: number;
  layersPassedThrough: number;
  /** Compressed bytes of the layers converted, read and written. */
  bytesIn: number;
  bytesOut: number;
  seconds: number;
}

type Plan =
  | { kind: 'index'; desc: Descriptor; index: ImageIndex; entries: Array<{ entry: Descriptor; plan: Plan }> }
  | { kind: 'image'; desc: Descriptor; manifest: ImageManifest; config: ImageConfig; platform: Platform; label: string }
  | { kind: 'carry'; desc: Descriptor };

/** OCI media type for a Docker one (same bytes); OCI types unchanged. */
function ociType(mediaType: string): string {
  switch (mediaType) {
    case MediaType.dockerLayerGzip:
      return MediaType.ociLayerGzip;
    case MediaType.dockerLayerForeignGzip:
      return MediaType.ociLayerNondistributableGzip;
    case MediaType.dockerConfig:
      return MediaType.ociConfig;
    case MediaType.dockerManifest:
      return MediaType.ociManifest;
    case MediaType.dockerManifestList:
      return MediaType.ociIndex;
    default:
      return mediaType;
  }
}

function samePlatform(a: Platform, b: Platform): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  return x.os === y.os && x.architecture === y.architecture && (x.variant ?? '') === (y.variant ?? '');
}


class Converter {
  private readonly started = Date.now();
  private readonly layerCache = new Map<string, Promise<LayerSummary & { descriptor: Descriptor }>>();
  private readonly summaries: ManifestSummary[] = [];
  private readonly carried: Digest[] = [];
  private readonly warnings: string[] = [];
  /** Per converted layer, the prioritised files it did not hold. */
  private readonly missedPrioritized: string[][] = [];
  private bytesIn = 0;
  private layersConverted = 0;
  private layersPassedThrough = 0;
  private bytesOut = 0;
  private tmp = '';

  constructor(
    private readonly src: ImageSource,
    private readonly dst: ImageDestination,
    private readonly opts: ConvertImageOptions,
  ) {}

  private progress(e: ConvertProgress): void {
    this.opts.onProgress?.(e);
  }

  // ---- plan -------------------------------------------------------------------------------

  /** The whole source image, every manifest and config read and validated. */
  private plan(): Promise<Plan> {
    return walkImage<Plan>(this.src, {
      // Attestations are decided by planIndex, once it is known which images stay.
      select: (node) => node.index.manifests.filter((m) => !isAttestationManifest(m)),
      manifest: (node) => this.planManifest(node),
      index: (node, children) => this.planIndex(node, children),
    });
  }

  private planIndex(node: IndexNode, children: Array<{ entry: Descriptor; value: Plan }>): Plan {
    const entries = children
      .filter(({ value: plan }) => !(plan.kind === 'image' && !this.wanted(plan.platform)) && !(plan.kind === 'index' && plan.entries.length === 0))
      .map(({ entry, value }) => ({ entry, plan: value }));
    const selected = new Set<string>(entries.map((e) => e.entry.digest));
    // Attestations follow the image they describe: dropped with it when it is not selected, kept
    // when it is (or when they name nothing in this index).
    const manifests = node.index.manifests;
    const images = new Set(manifests.filter((m) => !isAttestationManifest(m)).map((m) => m.digest));
    const out = manifests
      .map((child) => {
        if (isAttestationManifest(child)) {
          const subject = child.annotations?.[Annotation.dockerReferenceDigest];
          const keep = subject === undefined || selected.has(subject) || !images.has(subject as Digest);
          return keep ? { entry: child, plan: { kind: 'carry', desc: child } as Plan } : undefined;
        }
        return entries.find((e) => e.entry === child);
      })
      .filter((e): e is { entry: Descriptor; plan: Plan } => e !== undefined);
    return { kind: 'index', desc: node.descriptor, index: node.index, entries: out };
  }

  private async planManifest(node: ImageManifestNode): Promise<Plan> {
    const { descriptor: desc, manifest } = node;
    if (!node.isImage) {
      if (node.entry === undefined) throw new ConvertError(`${this.src.description} is not a container image (config media type ${manifest.config.mediaType})`);
      return { kind: 'carry', desc };
    }
    const config = await node.readConfig();
    const platform = node.entry?.platform ?? configPlatform(config);
    const name = `manifest[${formatPlatform(platform)}]`;
    manifest.layers.forEach((layer, i) => {
      if (layerCompression(layer.mediaType) === undefined) {
        throw new ValidationError(`${name}.layers[${i}].mediaType`, `unsupported layer media type ${JSON.stringify(layer.mediaType)}`);
      }
    });
    if (config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw new ValidationError(`${name}.config.rootfs.diff_ids`, `has ${config.rootfs.diff_ids.length} entries but the manifest has ${manifest.layers.length} layers`);
    }
    return { kind: 'image', desc, manifest, config, platform, label: name };
  }

  private wanted(p: Platform): boolean {
    return this.opts.platforms === 'all' || this.opts.platforms.some((want) => samePlatform(want, p));
  }

  private images(plan: Plan): Array<Extract<Plan, { kind: 'image' }>> {
    if (plan.kind === 'image') return [plan];
    if (plan.kind === 'index') return plan.entries.flatMap((e) => this.images(e.plan));
    return [];
  }

  private needsConversion(layer: Descriptor): boolean {
    return this.opts.force === true || !claimsFormat(layer, this.opts.format);
  }

  // ---- execute ----------------------------------------------------------------------------

  async run(): Promise<ConvertSummary> {
    const plan = await this.plan();
    const descriptor = plan.desc;
    const images = this.images(plan);
    if (this.opts.platforms !== 'all') {
      for (const want of this.opts.platforms) {
        if (!images.some((img) => samePlatform(want, img.platform))) {
          const has = this.listPlatforms(plan);
          throw new ConvertError(`${this.src.description} has no image for platform ${formatPlatform(want)}${has ? ` (it has ${has})` : ''}`);
        }
      }
    }
    if (images.length === 0) throw new ConvertError(`${this.src.description} has no container image to convert`);
    const todo = new Map<string, number>();
    for (const img of images) for (const l of img.manifest.layers) if (this.needsConversion(l)) todo.set(l.digest, l.size);
    this.progress({ type: 'plan', layers: todo.size, bytes: [...todo.values()].reduce((a, b) => a + b, 0) });

    this.tmp = await mkdtemp(join(this.opts.tmpDir ?? (this.dst instanceof OciLayoutDestination ? this.dst.dir : tmpdir()), '.starling-convert-'));
    try {
      // The root's entry in the source (e.g. its ref.name in index.json) is not carried over: setRoot names it.
      const root = await this.write(plan, { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size });
      this.opts.signal?.throwIfAborted();
      // A prioritised file no converted layer holds is a mistake in the list (Go's Build fails too).
      const nowhere = (this.opts.prioritizedFiles ?? []).filter((p) => this.missedPrioritized.length > 0 && this.missedPrioritized.every((m) => m.includes(p)));
      if (nowhere.length > 0) throw new ConvertError(`prioritized files in none of the converted layers: ${nowhere.map((p) => JSON.stringify(p)).join(', ')}`);
      await this.dst.setRoot(root);
      return {
        source: this.src.description,
        destination: this.dst.description,
        format: this.opts.format,
        root,
        manifests: this.summaries,
        carried: this.carried,
        warnings: this.warnings,
        layersConverted: this.layersConverted,
        layersPassedThrough: this.layersPassedThrough,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        seconds: (Date.now() - this.started) / 1000,
      };
    } finally {
      await rm(this.tmp, { recursive: true, force: true });
    }
  }

  private listPlatforms(plan: Plan): string {
    if (plan.kind !== 'index') return plan.kind === 'image' ? formatPlatform(plan.platform) : '';
    return plan.index.manifests
      .filter((m) => m.platform && !isAttestationManifest(m))
      .map((m) => formatPlatform(m.platform!))
      .join(', ');
  }

  /** Writes what `plan` describes and returns the descriptor of the written document. */
  private async write(plan: Plan, entry: Descriptor): Promise<Descriptor> {
    switch (plan.kind) {
      case 'carry':
        await this.carry(plan.desc);
        this.carried.push(plan.desc.digest);
        return entry;
      case 'image':
        return this.writeImage(plan, entry);
      case 'index': {
        const written = new Map<Descriptor, Descriptor>();
        const renamed = new Map<string, Digest>();
        for (const e of plan.entries) {
          if (isAttestationManifest(e.entry)) continue;
          const desc = await this.write(e.plan, e.entry);
          written.set(e.entry, desc);
          renamed.set(e.entry.digest, desc.digest);
        }
        // An attestation's bytes stay untouched; its index entry is re-pointed at the converted image
        // (same files, new digest), so tools that map attestations to platforms still find it.
        for (const e of plan.entries) {
          if (!isAttestationManifest(e.entry)) continue;
          const desc = await this.write(e.plan, e.entry);
          const subject = desc.annotations?.[Annotation.dockerReferenceDigest];
          const to = subject === undefined ? undefined : renamed.get(subject);
          written.set(e.entry, to === undefined ? desc : { ...desc, annotations: { ...desc.annotations, [Annotation.dockerReferenceDigest]: to } });
        }
        const manifests = plan.entries.map((e) => written.get(e.entry)!);
        const { mediaType: _m, manifests: _old, ...rest } = plan.index;
        const index: ImageIndex = { ...rest, schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
        return this.withEntryFields(await putManifestBytes(this.dst, MediaType.ociIndex, jsonBytes(index)), entry);
      }
    }
  }

  /** A new document's descriptor keeps what the index entry said about it (platform, annotations). */
  private withEntryFields(desc: Descriptor, entry: Descriptor): Descriptor {
    const out: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (entry.platform) out.platform = entry.platform;
    if (entry.annotations) out.annotations = entry.annotations;
    if (entry.artifactType) out.artifactType = entry.artifactType;
    return out;
  }

  private async writeImage(plan: Extract<Plan, { kind: 'image' }>, entry: Descriptor): Promise<Descriptor> {
    const layers: Array<LayerSummary & { descriptor: Descriptor }> = [];
    for (const [i, layer] of plan.manifest.layers.entries()) {
      layers.push(await this.layer(layer, plan.config.rootfs.diff_ids[i]!, `${plan.label}.layers[${i}]`));
    }
    const unchanged =
      plan.desc.mediaType === MediaType.ociManifest &&
      plan.manifest.config.mediaType === MediaType.ociConfig &&
      layers.every((l, i) => JSON.stringify(l.descriptor) === JSON.stringify(plan.manifest.layers[i]));
    let written: Descriptor;
    let configDigest: Digest;
    if (unchanged) {
      // Nothing to change: keep the original bytes, so converting a converted image is a no-op.
      await this.carry(plan.desc);
      written = this.withEntryFields(plan.desc, entry);
      configDigest = plan.manifest.config.digest;
    } else {
      const config: ImageConfig = { ...plan.config, rootfs: { ...plan.config.rootfs, diff_ids: layers.map((l) => l.diffID) } };
      const configDesc = await putJSONBlob(this.dst, MediaType.ociConfig, jsonBytes(config));
      configDigest = configDesc.digest;
      const { mediaType: _m, config: _c, layers: _l, schemaVersion: _s, ...rest } = plan.manifest;
      const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: layers.map((l) => l.descriptor), ...rest };
      written = this.withEntryFields(await putManifestBytes(this.dst, MediaType.ociManifest, jsonBytes(manifest)), entry);
    }
    this.summaries.push({
      platform: formatPlatform(plan.platform),
      source: plan.desc.digest,
      digest: written.digest,
      config: configDigest,
      layers: layers.map(({ descriptor: _d, ...summary }) => summary),
    });
    return written;
  }

  private layer(layer: Descriptor, diffID: Digest, label: string): Promise<LayerSummary & { descriptor: Descriptor }> {
    const key = `${layer.digest} ${diffID}`;
    let p = this.layerCache.get(key);
    if (!p) {
      p = this.needsConversion(layer) ? this.convertOne(layer, diffID, label) : this.passThroughIfValid(layer, diffID, label);
      this.layerCache.set(key, p);
    }
    return p;
  }

  /** A layer that claims the target format is passed through only if its TOC verifies; otherwise it is converted. */
  private async passThroughIfValid(layer: Descriptor, diffID: Digest, label: string): Promise<LayerSummary & { descriptor: Descriptor }> {
    const blob = await this.src.openBlobSource(layer);
    let problem: string | undefined;
    try {
      const opened = await openLayerToc(blob, layer);
      if (!opened.ok) problem = opened.reason;
    } catch (err) {
      problem = (err as Error).message;
    } finally {
      await blob.close();
    }
    if (problem === undefined) return this.passThrough(layer, diffID);
    this.warnings.push(`${label} (${layer.digest}): claims ${this.opts.format} but its TOC does not verify (${problem}); converted again`);
    return this.convertOne(layer, diffID, label);
  }

  private async passThrough(layer: Descriptor, diffID: Digest): Promise<LayerSummary & { descriptor: Descriptor }> {
    await this.copyBlob(layer);
    const format = this.opts.format;
    const annotations = keepOwnFormatAnnotations(layer.annotations, format);
    const descriptor: Descriptor = { ...layer, mediaType: ociType(layer.mediaType) };
    if (Object.keys(annotations).length > 0) descriptor.annotations = annotations;
    else delete descriptor.annotations;
    this.layersPassedThrough++;
    this.progress({ type: 'layer-done', digest: layer.digest, action: 'passed-through' });
    return { source: layer.digest, digest: layer.digest, mediaType: descriptor.mediaType, size: layer.size, diffID, action: 'passed-through', tocDigest: annotations[seekableCodec(format).tocDigestKey], descriptor };
  }

  private async convertOne(layer: Descriptor, diffID: Digest, label: string): Promise<LayerSummary & { descriptor: Descriptor }> {
    this.opts.signal?.throwIfAborted();
    this.progress({ type: 'layer-start', digest: layer.digest, size: layer.size });
    const input = await this.src.openBlobStream(layer);
    const abort = () => input.destroy(new ConvertError('interrupted'));
    this.opts.signal?.addEventListener('abort', abort, { once: true });
    const counted: Readable = input.pipe(new ByteCounter((n) => this.progress({ type: 'bytes', bytes: n })));
    input.once('error', (err) => counted.destroy(err));
    const out = join(this.tmp, `${layer.digest.slice(7)}.${this.opts.format.replace(':', '-')}`);
    let result;
    const missed: string[] = [];
    try {
      result = await convertLayer(counted, out, {
        format: this.opts.format,
        chunkSize: this.opts.chunkSize,
        level: this.opts.level,
        prioritizedFiles: this.opts.prioritizedFiles,
        // One list for the whole image: each layer prioritises the listed files it holds (as ctr-remote does).
        missedPrioritized: missed,
        stripEstargz: claimedCodec(layer)?.codec.ownTarEntries === true,
        expectedDiffID: diffID,
      });
    } catch (err) {
      throw new ConvertError(`${label} (${layer.digest}): ${(err as Error).message}`, { cause: err });
    } finally {
      this.opts.signal?.removeEventListener('abort', abort);
    }
    if (result.restoredZeros > 0) {
      this.warnings.push(`${label} (${layer.digest}): its tar lacked ${result.restoredZeros} trailing zero bytes of padding that the config's diffID includes (containers/storage ≤ 1.43 drops them); restored`);
    }
    const descriptor: Descriptor = {
      mediaType: result.mediaType,
      digest: result.digest,
      size: result.size,
      annotations: { ...withoutFormatAnnotations(layer.annotations), ...result.annotations },
    };
    await this.dst.putBlobFile(descriptor, out);
    await rm(out, { force: true });
    this.bytesIn += layer.size;
    this.bytesOut += result.size;
    this.layersConverted++;
    this.missedPrioritized.push(missed);
    this.progress({ type: 'layer-done', digest: layer.digest, action: 'converted' });
    return { source: layer.digest, digest: result.digest, mediaType: result.mediaType, size: result.size, diffID: result.diffID, action: 'converted', tocDigest: result.tocDigest, descriptor };
  }

  /** Copies a manifest or index with everything it references, byte for byte. */
  private async carry(desc: Descriptor): Promise<void> {
    const from = { descriptor: desc, bytes: await this.src.fetchJSONBytes(desc) };
    await walkImage<void>(
      this.src,
      {
        manifest: async ({ descriptor, bytes, manifest }) => {
          for (const blob of [manifest.config, ...manifest.layers]) await this.copyBlob(blob);
          await this.dst.putManifest(descriptor, bytes);
        },
        index: ({ descriptor, bytes }) => this.dst.putManifest(descriptor, bytes),
      },
      { from, field: (node) => node.descriptor.digest },
    );
  }

  private async copyBlob(desc: Descriptor): Promise<void> {
    if (await this.dst.hasBlob(desc)) return;
    const file = join(this.tmp, `copy-${desc.digest.slice(7)}`);
    try {
      await pipeline(await this.src.openBlobStream(desc), createWriteStream(file), { signal: this.opts.signal });
      await this.dst.putBlobFile(desc, file);
    } finally {
      await rm(file, { force: true });
    }
  }
}

/** Converts the image `src` names into `dst` (see ConvertImageOptions); the destination's root is set only on success. */
export async function convertImage(src: ImageSource, dst: ImageDestination, opts: ConvertImageOptions): Promise<ConvertSummary> {
  return new Converter(src, dst, opts).run();
}
