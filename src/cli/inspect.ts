// `starling inspect REF`: index → platform manifests → layers with format, TOC digest, entry count.
import { inspectImage, type ImageReport, type LayerReport } from '../convert/inspect.js';
import { openImageSource } from '../registry/transport.js';
import { formatBytes } from './_progress.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling inspect REF [--json] [--plain-http] [--insecure]

Shows an image: its index (if any), every manifest with its platform, and each layer's format
(estargz, zstd:chunked, gzip, …), whether it can be mounted lazily, its TOC digest and entry
count (the TOC is read and verified against the manifest's annotation).
REF is oci:DIR[:TAG] or docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]. Exit code 1 when a layer's
TOC fails verification.`;

function layerLine(l: LayerReport, i: number): string {
  const toc = l.toc ? `  toc ${l.toc.tocDigest}  ${l.toc.entries} entries, ${l.toc.chunks} chunks` : '';
  const problem = l.error ? `  ERROR: ${l.error}` : l.lazy ? '' : `  (${l.detail})`;
  return `    #${i} ${l.digest}  ${formatBytes(l.size).padStart(10)}  ${l.format.padEnd(12)}${toc}${problem}`;
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
    m.layers.forEach((l, i) => lines.push(layerLine(l, i)));
  }
  return lines.join('\n');
}

export const command: Command = {
  summary: 'show an image: platforms, layers, their format and TOC',
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
