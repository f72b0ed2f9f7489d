// `starling inspect-layer BLOB [--toc] [--json]`: one layer blob file, its format and TOC.
import { inspectLayerFile, type LayerFileReport } from '../convert/inspect.js';
import type { FileEntry } from '../format/toc.js';
import { formatBytes } from './_progress.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling inspect-layer BLOB [--toc] [--toc-digest D] [--json]

Shows a layer blob file: its compression, whether it is eStargz or zstd:chunked, and its TOC
(read from the footer). A bare file carries no annotation, so the TOC is only verified when
--toc-digest gives the digest to check (the eStargz TOC digest or zstd:chunked manifest checksum).

options:
  --toc            list every TOC entry (path, type, mode, size, chunks)
  --toc-digest D   verify the TOC against D
  --json           one JSON object (with --toc, including the entries)`;

const TYPE_CHAR: Record<FileEntry['type'], string> = { dir: 'd', reg: '-', symlink: 'l', hardlink: 'h', char: 'c', block: 'b', fifo: 'p' };

function entryLine(e: FileEntry): string {
  const mode = `${TYPE_CHAR[e.type]}${(e.mode & 0o7777).toString(8).padStart(4, '0')}`;
  const link = e.type === 'symlink' ? ` -> ${e.linkName}` : e.type === 'hardlink' ? ` link to ${e.linkName}` : '';
  const dev = e.type === 'char' || e.type === 'block' ? ` ${e.devMajor},${e.devMinor}` : '';
  const chunks = e.type === 'reg' ? ` ${e.chunks.length} chunk${e.chunks.length === 1 ? '' : 's'}` : '';
  return `${mode} ${String(e.uid).padStart(5)}:${String(e.gid).padEnd(5)} ${String(e.size).padStart(10)} /${e.path}${link}${dev}${chunks}`;
}

/** FileEntry as JSON: xattr values base64, chunk digests and ranges kept. */
function entryJson(e: FileEntry): unknown {
  return { ...e, xattrs: Object.fromEntries([...e.xattrs].map(([k, v]) => [k, v.toString('base64')])) };
}

function human(r: LayerFileReport): string {
  const lines = [`${r.file}: ${r.detail}, ${formatBytes(r.size)}, ${r.digest}`];
  if (r.toc) {
    lines.push(`  TOC ${r.toc.tocDigest} at offset ${r.toc.tocOffset} (${r.tocVerified ? 'verified against --toc-digest' : 'not verified: no --toc-digest'})`);
    lines.push(`  ${r.toc.entries} entries, ${r.toc.files} regular files in ${r.toc.chunks} chunks${r.toc.prefetchEnd !== undefined ? `, prioritised prefix ${r.toc.prefetchEnd} bytes` : ''}`);
  }
  for (const e of r.entries ?? []) lines.push(`  ${entryLine(e)}`);
  return lines.join('\n');
}

export const command: Command = {
  summary: 'show a layer blob: format, TOC digest, entries',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { toc: { type: 'boolean' }, 'toc-digest': { type: 'string' }, json: { type: 'boolean' } }, usage);
    if (positionals.length !== 1) throw new UserError(`expected one BLOB, got ${positionals.length} argument(s)\n\n${usage}`, 2);
    let report: LayerFileReport;
    try {
      report = await inspectLayerFile(positionals[0]!, { tocDigest: values['toc-digest'], withEntries: values.toc });
    } catch (err) {
      throw asUserError(err);
    }
    const out = values.json ? JSON.stringify({ ...report, ...(report.entries ? { entries: report.entries.map(entryJson) } : {}) }) : human(report);
    process.stdout.write(`${out}\n`);
    return 0;
  },
};
