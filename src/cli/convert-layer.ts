// `starling convert-layer IN OUT --format estargz|zstd:chunked`: one layer blob, for pipelines.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { FileBlob } from '../blob/source.js';
import { convertLayer } from '../convert/layer.js';
import { hasEstargzFooter } from '../convert/strip-estargz.js';
import { parseFormat, parseLayerOptions } from './convert.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling convert-layer IN OUT --format estargz|zstd:chunked [options]

Converts one layer blob (tar, tar.gz or tar.zst; IN may be - for stdin) and prints
{mediaType, digest, size, diffID, tocDigest, annotations} as one JSON line. OUT appears only
when the conversion succeeded. An eStargz input converted to zstd:chunked loses its TOC entry
and landmarks (they are eStargz's, not the image's).

options:
  --format F            estargz or zstd:chunked (required)
  --chunk-size N        estargz: uncompressed bytes per chunk (default 4MiB)
  --level N             compression level (gzip 0-9 for estargz, zstd 1-22 for zstd:chunked)
  --prioritize A,B      estargz: files to place first (before the prefetch landmark)
  --prioritize-file F   estargz: a file listing such paths, one per line`;

export const command: Command = {
  summary: 'convert one layer blob to eStargz or zstd:chunked',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        format: { type: 'string' },
        'chunk-size': { type: 'string' },
        level: { type: 'string' },
        prioritize: { type: 'string', multiple: true },
        'prioritize-file': { type: 'string' },
      },
      usage,
    );
    if (positionals.length !== 2) throw new UserError(`expected IN and OUT, got ${positionals.length} argument(s)\n\n${usage}`, 2);
    const [inPath, outPath] = positionals as [string, string];
    const format = parseFormat(values.format);
    const layerOpts = await parseLayerOptions(format, values);
    try {
      let input: Readable;
      let stripEstargz = false;
      if (inPath === '-') input = process.stdin;
      else {
        const blob = await FileBlob.open(inPath);
        try {
          stripEstargz = await hasEstargzFooter(blob);
        } finally {
          await blob.close();
        }
        input = createReadStream(inPath);
      }
      const r = await convertLayer(input, outPath, { format, ...layerOpts, stripEstargz });
      const out = { mediaType: r.mediaType, digest: r.digest, size: r.size, diffID: r.diffID, tocDigest: r.tocDigest, annotations: r.annotations };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } catch (err) {
      throw asUserError(err);
    }
    return 0;
  },
};
