// Helpers of the zstd:chunked tests: convert a tar into a blob in memory and run the Go reference
// program (containers/storage 1.43). Reading source tars reuses the eStargz tests' tar-stream reader.
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { writeZstdChunked, type ZstdChunkedWriteOptions } from '../../../src/format/zstdchunked/writer.js';
import type { LayerWriteResult } from '../../../src/format/writer.js';
import { MemorySink, REPO } from '../estargz/helpers.js';

const run = promisify(execFile);
export const GO_ZSTDCHUNKED = `${REPO}.interop-bin/zstdchunked`;

export async function convertZstd(input: string | Buffer, opts?: ZstdChunkedWriteOptions): Promise<{ blob: Buffer; result: LayerWriteResult }> {
  const sink = new MemorySink();
  const src = typeof input === 'string' ? createReadStream(input) : Readable.from([input]);
  const result = await writeZstdChunked(src, sink, opts);
  return { blob: sink.data, result };
}

const converted = new Map<string, Promise<{ blob: Buffer; result: LayerWriteResult }>>();

/** convertZstd of a tar file with default options, once per test process (the conversions dominate test time). */
export function convertZstdCached(path: string): Promise<{ blob: Buffer; result: LayerWriteResult }> {
  let p = converted.get(path);
  if (!p) {
    p = convertZstd(path);
    converted.set(path, p);
  }
  return p;
}

/** Builds the Go interop programs (a no-op when the cached binaries match their sources). */
export async function ensureGoZstdChunked(): Promise<void> {
  await run(`${REPO}scripts/build-interop.sh`, [], { cwd: REPO, maxBuffer: 16 << 20 });
  await access(GO_ZSTDCHUNKED);
}

export async function goZstdChunked(args: string[]): Promise<string> {
  const { stdout } = await run(GO_ZSTDCHUNKED, args, { maxBuffer: 256 << 20 });
  return stdout;
}

export { MemorySink };
