// `starling inspect REF`: index → platform manifests → layers with format, TOC digest, entry count,
// gzip indexes.
import { inspectImage, type ImageReport, type LayerReport } from '../convert/inspect.js';
import type { GzipIndexSummary, LayerGzipIndexReport } from '../convert/inspect-gzip-index.js';
import { openImageSource } from '../registry/transport.js';
import { formatBytes } from './_progress.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling inspect REF [--json] [--plain-http] [--insecure]

Shows an image: its index (if any), every manifest with its platform, and each layer's format
(estargz, zstd:chunked, gzip, …), whether it can be mounted lazily, its TOC digest and entry
count (the TOC is read and verified against the manifest's annotation). In a registry, the gzip
indexes beside an image with plain gzip layers (\`starling index --push\`): per layer whether it has
one, its spans, and whether it verifies against the layer (the referrer's subject is the manifest,
the index names the layer's digest and size), as a mount checks it.
REF is oci:DIR[:TAG] or docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]. Exit code 1 when a layer's
TOC fails verification (an index that does not verify is shown, as a mount skips it).`;

function layerLines(l: LayerReport, i: number): string[] {
  const toc = l.toc ? `  toc ${l.toc.tocDigest}  ${l.toc.entries} entries, ${l.toc.chunks} chunks` : '';
  const problem = l.error ? `  ERROR: ${l.error}` : l.lazy ? '' : `  (${l.detail})`;
  const lines = [`    #${i} ${l.digest}  ${formatBytes(l.size).padStart(10)}  ${l.format.padEnd(12)}${toc}${problem}`];
  if (l.gzipIndex) lines.push(`       ${gzipIndexText(l.gzipIndex)}`);
  return lines;
}

function gzipIndexText(g: LayerGzipIndexReport): string {
  if (g.state === 'none') return `no gzip index: ${g.reason}`;
  const blob = g.blob ? `gzip index ${g.blob.digest}  ${formatBytes(g.blob.size)}` : 'gzip index';
  if (g.state === 'refused') return `${blob}  REFUSED: ${g.reason}`;
  return `${blob}  ${g.spans} spans of ${formatBytes(g.spanSize)}, ${g.entries} entries, verified against the layer`;
}

function gzipReferrerLine(g: GzipIndexSummary): string {
  return g.referrer ? `    gzip index referrer ${g.referrer} (via the referrers ${g.via === 'api' ? 'API' : 'tag'})` : '    gzip index referrer: none';
}

function human(r: ImageReport): string {
  const lines = [`${r.reference}`, `  ${r.root.mediaType} ${r.root.digest} (${r.root.size} bytes)`];
  for (const [k, v] of Object.entries(r.annotations ?? {})) lines.push(`  ${k}=${v}`);
  for (const m of r.manifests) {
    if (m.attestationFor !== undefined) {
      lines.push(`  attestation ${m.descriptor.digest} for ${m.attestationFor || '(no subject)'}`);
      continue;
    }
    lines.push(`  ${m.platform ?? 'unknown platform'}  ${m.descriptor.digest}  config ${m.config?.digest ?? '-'}  ${m.layers.length} layers`);
    if (m.gzipIndexes) lines.push(gzipReferrerLine(m.gzipIndexes));
    m.layers.forEach((l, i) => lines.push(...layerLines(l, i)));
  }
  return lines.join('\n');
}

export const command: Command = {
  summary: 'show an image: platforms, layers, their format and TOC, gzip indexes',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { json: { type: 'boolean' }, 'plain-http': { type: 'boolean' }, insecure: { type: 'boolean' } }, usage);
    if (positionals.length !== 1) throw new UserError(`expected one REF, got ${positionals.length} argument(s)\n\n${usage}`, 2);
    let report: ImageReport;
    try {
      const src = await openImageSource(positionals[0]!, { plainHttp: values['plain-http'], insecure: values.insecure });
      try {
        report = await inspectImage(src);
      } finally {
        await src.close();
      }
    } catch (err) {
      throw asUserError(err);
    }
    process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : `${human(report)}\n`);
    return report.manifests.some((m) => m.layers.some((l) => l.error !== undefined)) ? 1 : 0;
  },
};
