// One eStargz conversion in its own process, so the benchmark measures its wall time and peak RSS
// alone: tsx bench/convert/run-estargz.ts IN.tar OUT.blob [chunkSize] [level]. Prints the result JSON.
import { createReadStream, createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { writeEstargz } from '../../src/format/estargz/writer.js';

const [input, output, chunkSize, level] = process.argv.slice(2);
if (!input || !output) throw new Error('usage: run-estargz.ts IN.tar OUT.blob [chunkSize] [level]');
const out = createWriteStream(output);
const result = await writeEstargz(createReadStream(input, { highWaterMark: 1 << 20 }), out, {
  chunkSize: chunkSize ? Number(chunkSize) : undefined,
  level: level ? Number(level) : undefined,
});
out.end();
await finished(out);
process.stdout.write(`${JSON.stringify(result)}\n`);
