// `starling index REF`: gzip checkpoint indexes of an unconverted image's layers (docs/gzip-index.md),
// written to files and/or pushed as a referrer of the image's platform manifest. The image never changes.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MIN_LAYER_SIZE, indexImageLayers, type LayerIndexResult } from '../convert/gzip-index.js';
import { MAX_SPAN_SIZE } from '../format/gzipindex/encoding.js';
import { pushGzipIndexes } from '../image/gzip-index-registry.js';
import { registryOf } from '../image/profile-registry.js';
import { digestHex } from '../oci/digest.js';
import { parsePlatform } from '../oci/platform.js';
import { resolveManifest } from '../registry/resolve.js';
import { openImageSource } from '../registry/transport.js';
import { formatBytes } from './_progress.js';
import { parseCommandArgs, parseSize } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const MIN_SPAN = 64 << 10;

const usage = `usage: starling index REF [options]

Builds a gzip checkpoint index of each gzip layer of REF's image (one pass per layer: file table,
a checkpoint every span of uncompressed bytes, span digests), so that the unconverted image can be
mounted lazily. REF is oci:DIR[:TAG] or docker://[HOST[:PORT]/]NAME[:TAG]; the image is not changed.

options:
  --span N             uncompressed bytes between checkpoints (default 4MiB, ${MIN_SPAN >> 10}KiB to ${MAX_SPAN_SIZE >> 20}MiB)
  --min-layer-size N   smaller layers get ${MAX_SPAN_SIZE >> 20}MiB spans (one, mostly): fetched whole, but on their
                       first read instead of before mounting (default 10MiB)
  --push               push the indexes as an OCI referrer of REF's platform manifest (docker:// only)
  --out DIR            write each index to DIR/<layer digest hex>.gzindex
  --platform P         os/arch[/variant] of REF's index (default: this machine's)
  --plain-http         talk http:// to the registry (default only for localhost)
  --json               print one JSON summary line`;

function layerLine(r: LayerIndexResult): string {
  if (!r.indexed) return `  ${r.layer.digest}  skipped: ${r.reason}`;
  const pct = ((100 * r.stored.length) / r.layer.size).toFixed(2);
  return `  ${r.layer.digest}  ${formatBytes(r.layer.size)}: index ${formatBytes(r.stored.length)} (${pct} %), ${r.index.entries.length} entries, ${r.index.checkpoints.length} spans, ${r.seconds.toFixed(1)} s`;
}

export const command: Command = {
  summary: 'build gzip checkpoint indexes of an unconverted image (files or an OCI referrer)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { span: { type: 'string' }, 'min-layer-size': { type: 'string' }, push: { type: 'boolean' }, out: { type: 'string' }, platform: { type: 'string' }, 'plain-http': { type: 'boolean' }, json: { type: 'boolean' } },
      usage,
    );
    if (positionals.length !== 1) throw new UserError(`expected REF\n\n${usage}`, 2);
    const ref = positionals[0]!;
    const span = values.span === undefined ? 4 << 20 : parseSize(values.span, '--span');
    if (span < MIN_SPAN || span > MAX_SPAN_SIZE) throw new UserError(`--span must be ${MIN_SPAN >> 10}KiB to ${MAX_SPAN_SIZE >> 20}MiB`, 2);
    const minLayerSize = values['min-layer-size'] === undefined ? DEFAULT_MIN_LAYER_SIZE : parseSize(values['min-layer-size'], '--min-layer-size');
    let platform;
    try {
      platform = values.platform ? parsePlatform(values.platform) : undefined;
    } catch (err) {
      throw new UserError(`--platform: ${(err as Error).message}`, 2);
    }

    const source = await openImageSource(ref, { plainHttp: values['plain-http'] }).catch((err) => Promise.reject(asUserError(err)));
    try {
      const registry = registryOf(source);
      if (values.push && !registry) throw new UserError(`--push: ${ref} is not in a registry (use a docker:// reference)`, 2);
      const image = await resolveManifest(source, platform);
      const results = await indexImageLayers(source, image.manifest.layers, {
        span,
        minLayerSize,
        onLayer: (layer, i) => process.stderr.isTTY && process.stderr.write(`indexing layer ${i + 1}/${image.manifest.layers.length} (${formatBytes(layer.size)})\n`),
      });
      const indexed = results.flatMap((r) => (r.indexed ? [{ layer: r.layer, stored: r.stored }] : []));
      if (values.out !== undefined) {
        await mkdir(values.out, { recursive: true });
        for (const { layer, stored } of indexed) await writeFile(join(values.out, `${digestHex(layer.digest)}.gzindex`), stored);
      }
      const pushed = values.push ? await pushGzipIndexes(registry!, image.manifestDescriptor, indexed) : undefined;
      if (values.json) {
        const layers = results.map((r) => (r.indexed ? { digest: r.layer.digest, size: r.layer.size, indexSize: r.stored.length, entries: r.index.entries.length, spans: r.index.checkpoints.length, seconds: r.seconds } : { digest: r.layer.digest, size: r.layer.size, skipped: r.reason }));
        process.stdout.write(`${JSON.stringify({ manifest: image.manifestDescriptor.digest, layers, referrer: pushed ? { digest: pushed.descriptor.digest, via: pushed.via } : null })}\n`);
      } else {
        const lines = [`indexed ${indexed.length} of ${results.length} layers of ${image.manifestDescriptor.digest}`, ...results.map(layerLine)];
        if (pushed) lines.push(`  pushed ${pushed.descriptor.digest} (referrer via ${pushed.via === 'api' ? 'the referrers API' : 'the referrers tag'})`);
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      return 0;
    } catch (err) {
      throw asUserError(err);
    } finally {
      await source.close();
    }
  },
};
