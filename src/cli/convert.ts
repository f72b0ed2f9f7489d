// `starling convert SRC DST --format estargz|zstd:chunked`: whole-image conversion.
import { readFile } from 'node:fs/promises';
import { carryProfiles } from '../convert/carry-profiles.js';
import { convertImage, type ConvertProgress, type ConvertSummary } from '../convert/image.js';
import { registryOf } from '../image/profile-registry.js';
import type { LayerFormat } from '../format/toc.js';
import { parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { openImageDestination, openImageSource } from '../registry/transport.js';
import { formatBytes, ProgressBar } from './_progress.js';
import { parseCommandArgs, parseIntArg, parseSize } from './args.js';
import { abortOnSignals, asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling convert SRC DST --format estargz|zstd:chunked [options]

Converts every layer of an image (each platform of an index, or the ones selected) to a seekable
format and writes the image with new configs and manifests (OCI media types).
SRC and DST are oci:DIR[:TAG] or docker://[HOST[:PORT]/]NAME[:TAG].

options:
  --format F            estargz or zstd:chunked (required)
  --platform P          all (default) or os/arch[/variant]; repeat or comma-separate for several
  --force               also convert layers already in the target format
  --chunk-size N        estargz: uncompressed bytes per chunk (default 4MiB)
  --level N             compression level (gzip 0-9 for estargz, zstd 1-22 for zstd:chunked)
  --prioritize A,B      estargz: files to place first (before the prefetch landmark)
  --prioritize-file F   estargz: a file listing such paths, one per line
  --referrers           also copy the source's prefetch profiles (OCI 1.1 referrers), re-targeted
                        to the converted manifests and layers (docker:// SRC and DST)
  --plain-http          talk http:// to the registries (default only for localhost)
  --insecure            accept registry TLS certificates that do not verify
  --json                print one JSON summary line instead of the human summary`;

export function parseFormat(value: string | undefined): LayerFormat {
  if (value === undefined) throw new UserError(`--format is required (estargz or zstd:chunked)\n\n${usage}`, 2);
  if (value !== 'estargz' && value !== 'zstd:chunked') throw new UserError(`--format: unknown format ${JSON.stringify(value)} (estargz or zstd:chunked)`, 2);
  return value;
}

/** Layer options shared with convert-layer: level, chunk size, prioritized files. */
export async function parseLayerOptions(
  format: LayerFormat,
  values: { level?: string; 'chunk-size'?: string; prioritize?: string[]; 'prioritize-file'?: string },
): Promise<{ level?: number; chunkSize?: number; prioritizedFiles?: string[] }> {
  const out: { level?: number; chunkSize?: number; prioritizedFiles?: string[] } = {};
  if (values.level !== undefined) out.level = format === 'estargz' ? parseIntArg(values.level, '--level', 0, 9) : parseIntArg(values.level, '--level', 1, 22);
  if (values['chunk-size'] !== undefined) {
    if (format !== 'estargz') throw new UserError('--chunk-size applies to estargz only (zstd:chunked cuts content-defined chunks)', 2);
    out.chunkSize = parseSize(values['chunk-size'], '--chunk-size');
    if (out.chunkSize < 1) throw new UserError('--chunk-size must be at least 1 byte', 2);
  }
  const prioritized = (values.prioritize ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
  if (values['prioritize-file'] !== undefined) {
    let text: string;
    try {
      text = await readFile(values['prioritize-file'], 'utf8');
    } catch (err) {
      throw new UserError(`--prioritize-file: cannot read ${values['prioritize-file']}: ${(err as Error).message}`, 2);
    }
    // One path per line, as `starling record` writes them; names are kept as they are (no trimming).
    prioritized.push(...text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '' && !l.startsWith('#')));
  }
  if (prioritized.length > 0) {
    if (format !== 'estargz') throw new UserError('--prioritize/--prioritize-file apply to estargz only', 2);
    out.prioritizedFiles = prioritized;
  }
  return out;
}

function parsePlatforms(values: string[] | undefined): 'all' | Platform[] {
  const specs = (values ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
  if (specs.length === 0 || specs.includes('all')) {
    if (specs.length > 1) throw new UserError('--platform: "all" cannot be combined with other platforms', 2);
    return 'all';
  }
  try {
    return specs.map(parsePlatform);
  } catch (err) {
    throw new UserError(`--platform: ${(err as Error).message}`, 2);
  }
}

function humanSummary(s: ConvertSummary): string {
  const lines = [
    `converted ${s.source} → ${s.destination} (${s.format})`,
    ...s.manifests.map((m) => `  ${(m.platform ?? '').padEnd(16)} ${m.digest}  ${m.layers.filter((l) => l.action === 'converted').length} converted, ${m.layers.filter((l) => l.action === 'passed-through').length} passed through`),
  ];
  if (s.carried.length > 0) lines.push(`  carried untouched: ${s.carried.length} (attestations, artifacts)`);
  lines.push(`  layers: ${s.layersConverted} converted (${formatBytes(s.bytesIn)} → ${formatBytes(s.bytesOut)}), ${s.layersPassedThrough} passed through; ${s.seconds.toFixed(1)} s`);
  lines.push(`  root: ${s.root.mediaType} ${s.root.digest}`);
  return lines.join('\n');
}

export const command: Command = {
  summary: 'convert an image to eStargz or zstd:chunked (all or selected platforms)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        format: { type: 'string' },
        platform: { type: 'string', multiple: true },
        force: { type: 'boolean' },
        'chunk-size': { type: 'string' },
        level: { type: 'string' },
        prioritize: { type: 'string', multiple: true },
        'prioritize-file': { type: 'string' },
        referrers: { type: 'boolean' },
        'plain-http': { type: 'boolean' },
        insecure: { type: 'boolean' },
        json: { type: 'boolean' },
      },
      usage,
    );
    if (positionals.length !== 2) throw new UserError(`expected SRC and DST, got ${positionals.length} argument(s)\n\n${usage}`, 2);
    const [srcRef, dstRef] = positionals as [string, string];
    const format = parseFormat(values.format);
    const layerOpts = await parseLayerOptions(format, values);
    const platforms = parsePlatforms(values.platform);
    const registry = { plainHttp: values['plain-http'], insecure: values.insecure };

    const bar = new ProgressBar('converting');
    let layersDone = 0;
    let layersTotal = 0;
    const onProgress = (e: ConvertProgress) => {
      if (e.type === 'plan') {
        layersTotal = e.layers;
        bar.setTotal(e.bytes);
      } else if (e.type === 'bytes') bar.add(e.bytes);
      else if (e.type === 'layer-start') bar.setNote(`layer ${layersDone + 1}/${layersTotal}`);
      else if (e.type === 'layer-done' && e.action === 'converted') layersDone++;
    };

    // SIGINT/SIGTERM abort the conversion cleanly: temp files go, the destination gets no new root.
    const interrupt = abortOnSignals();
    try {
      const src = await openImageSource(srcRef, registry);
      try {
        const dst = await openImageDestination(dstRef, registry);
        try {
          const registries = { from: registryOf(src), to: registryOf(dst) };
          if (values.referrers && !(registries.from && registries.to)) throw new UserError('--referrers: prefetch profiles live in registries: SRC and DST must be docker:// references', 2);
          const summary = await convertImage(src, dst, { format, platforms, force: values.force, ...layerOpts, onProgress, signal: interrupt.signal });
          bar.clear();
          const profiles = values.referrers ? await carryProfiles(src, registries.from!, registries.to!, summary) : undefined;
          for (const w of [...summary.warnings, ...(profiles?.warnings ?? [])]) process.stderr.write(`starling: warning: ${w}\n`);
          const out = profiles ? { ...summary, profiles: profiles.carried } : summary;
          process.stdout.write(values.json ? `${JSON.stringify(out)}\n` : `${humanSummary(summary)}${profiles ? `\n  prefetch profiles carried: ${profiles.carried.length}` : ''}\n`);
        } finally {
          await dst.close();
        }
      } finally {
        await src.close();
      }
    } catch (err) {
      bar.clear();
      if (interrupt.signal.aborted) throw new UserError(`interrupted: ${dstRef} was not updated`, 130);
      throw asUserError(err);
    } finally {
      interrupt.dispose();
    }
    return 0;
  },
};
