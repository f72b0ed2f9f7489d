// Helpers of the gzip index tests: deterministic data that makes deflate blocks of every kind and
// size, the three compressors real layers come from (GNU gzip, pigz, Go's compress/gzip), GNU gzip
// as the reference decompressor, and a whole-blob scan through the addon.
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { GzipScanner, type GzipScan } from '../../../src/format/gzipindex/scan.js';

export const REPO = new URL('../../../', import.meta.url).pathname;
/** test/interop/gzip, built by scripts/build-interop.sh (setup.sh). */
export const GO_GZIP = `${REPO}.interop-bin/gzip`;

/** A small deterministic PRNG (xorshift32), so every run compresses the same bytes. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const WORDS = 'lazy pulling gzip checkpoint window deflate block inflate span layer tar entry index registry referrer manifest'.split(' ');

/**
 * `size` bytes mixing text, random bytes (stored or poorly compressed blocks), long runs and copies
 * of earlier data (matches reaching back across block boundaries), in pieces of random length.
 */
export function variedData(size: number, seed: number): Buffer {
  const rnd = prng(seed);
  const out = Buffer.alloc(size);
  let pos = 0;
  while (pos < size) {
    const n = Math.min(size - pos, 1 + Math.floor(rnd() * 40_000));
    const kind = Math.floor(rnd() * 4);
    for (let i = 0; i < n; ) {
      if (kind === 0) {
        const w = Buffer.from(`${WORDS[Math.floor(rnd() * WORDS.length)]}${rnd() < 0.1 ? '\n' : ' '}`);
        i += w.copy(out, pos + i, 0, Math.min(w.length, n - i));
      } else if (kind === 1) out[pos + i++] = Math.floor(rnd() * 256);
      else if (kind === 2) {
        out.fill(Math.floor(rnd() * 4), pos + i, pos + n);
        i = n;
      } else {
        const from = Math.floor(rnd() * Math.max(1, pos));
        i += out.copy(out, pos + i, from, Math.min(from + (n - i), pos));
        if (pos === 0) out[pos + i++] = 0x61;
      }
    }
    pos += n;
  }
  return out;
}

function runTool(cmd: string, args: string[], input: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString().trim()}`);
  return r.stdout;
}

export const gnuGzip = (data: Buffer, ...args: string[]) => runTool('gzip', ['-c', '-n', ...args], data);
export const pigz = (data: Buffer, ...args: string[]) => runTool('pigz', ['-c', '-n', ...args], data);
export const goGzip = (data: Buffer, ...args: string[]) => runTool(GO_GZIP, args, data);
/** The reference decompressor: `gzip -dc`. */
export const gunzipCli = (blob: Buffer) => runTool('gzip', ['-dc'], blob);

/** The whole blob through GzipScanner, fed in pieces of `piece` bytes: its output and its scan. */
export async function scanBlob(blob: Buffer, span: number, piece = 100_000): Promise<{ output: Buffer; scan: GzipScan }> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < blob.length; i += piece) pieces.push(blob.subarray(i, i + piece));
  const scanner = new GzipScanner(span);
  const out: Buffer[] = [];
  for await (const o of scanner.inflate(Readable.from(pieces))) out.push(o);
  return { output: Buffer.concat(out), scan: scanner.scan };
}
