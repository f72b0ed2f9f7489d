// Memory bound of the eStargz writer: converts a ≥ 2 GB real-content layer (big directories of this
// machine, streamed from `tar`) in its own process and reports its peak RSS (target: well under
// 500 MB). Level 1 by default: memory does not depend on the level, time does.
//
//   npx tsx bench/convert/estargz-memory.ts [--level N]
//
// Writes bench/out/convert-estargz-memory.txt.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureCommand, MiB, writeReport } from './measure.js';

const BIG_DIRS = ['usr/lib/google-cloud-sdk', 'usr/lib/x86_64-linux-gnu', 'usr/lib/jvm'];
const MIN_BYTES = 2 * 1024 * MiB;

const repo = new URL('../../', import.meta.url).pathname;
const { values } = parseArgs({ options: { level: { type: 'string', default: '1' } } });
const tsx = join(repo, 'node_modules/.bin/tsx');
// tar streams straight into the converter; wait4's max RSS of the shell is the largest of its children.
const script = `tar -C / --sort=name --format=pax -cf - ${BIG_DIRS.join(' ')} 2>/dev/null | ${tsx} ${join(repo, 'bench/convert/run-estargz.ts')} /dev/stdin /dev/null ${4 << 20} ${values.level}`;
const m = await measureCommand('bash', ['-c', script]);
const result = JSON.parse(m.stdout) as { size: number; uncompressedSize: number; entryCount: number };
if (result.uncompressedSize < MIN_BYTES) throw new Error(`layer is only ${result.uncompressedSize} bytes; need ${MIN_BYTES}`);
const summary =
  `eStargz writer memory: ${(result.uncompressedSize / MiB).toFixed(0)} MiB layer (${BIG_DIRS.join(', ')}), ${result.entryCount} TOC entries, level ${values.level}\n` +
  `wall ${(m.wallMs / 1000).toFixed(1)} s, peak RSS ${(m.peakRssBytes / MiB).toFixed(0)} MiB (target < 500 MiB), blob ${(result.size / MiB).toFixed(0)} MiB\n`;
process.stdout.write(summary);
await writeReport(join(repo, 'bench/out/convert-estargz-memory.txt'), summary);
