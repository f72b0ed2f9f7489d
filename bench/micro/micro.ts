// Micro-benchmarks of the lazy-read hot paths with tinybench, against the real modules:
// TOC parse of a 100k-entry TOC, chunk decompress + verify, memory-LRU hit, range coalescing.
// Usage: node --import tsx bench/micro/micro.ts [--out FILE.json] [--time MS]
// Writes FILE.json and FILE.md (the table, with date and machine; bench/micro/latest.md goes in the README).
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { pack } from 'tar-stream';
import { Bench } from 'tinybench';
import { BufferBlob } from '../../src/blob/source.js';
import { coalesceRanges, type Span } from '../../src/blob/coalesce.js';
import { openEstargz, buildEntries } from '../../src/format/estargz/reader.js';
import { tocJson } from '../../src/format/estargz/toc-json.js';
import { writeEstargz } from '../../src/format/estargz/writer.js';
import type { Toc, TocEntry } from '../../src/format/toc.js';
import { ChunkCache } from '../../src/fs/chunk-cache.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { Annotation } from '../../src/oci/mediatypes.js';

/** A TOC of `n` entries shaped like a real layer: a directory per 50 files, every file one chunk. */
export function syntheticToc(n: number): { json: Buffer; tocOffset: number } {
  const entries: TocEntry[] = [];
  let offset = 512; // the first member starts after a tar header
  let dir = '';
  const digest = sha256('x');
  for (let i = 0; entries.length < n; i++) {
    if (i % 50 === 0) {
      dir = `usr/lib/pkg${i / 50}`;
      entries.push({ name: `${dir}/`, type: 'dir', mode: 0o755, modtime: '2024-01-02T03:04:05Z' });
      continue;
    }
    const size = 1000 + (i % 7) * 300;
    entries.push({ name: `${dir}/module_${i}.py`, type: 'reg', size, mode: 0o644, modtime: '2024-01-02T03:04:05Z', offset, digest, chunkDigest: digest });
    offset += 200 + size;
  }
  const toc: Toc = { version: 1, entries };
  return { json: tocJson(toc), tocOffset: offset };
}

/** The first `bytes` of real files of this machine, so compression ratios are realistic. */
async function realBytes(bytes: number): Promise<Buffer> {
  const files = ['/usr/bin/python3.11', '/usr/lib/gcc/x86_64-linux-gnu/12/cc1', '/usr/bin/x86_64-linux-gnu-ld.bfd'];
  const parts: Buffer[] = [];
  let have = 0;
  for (const f of files) {
    if (have >= bytes) break;
    const b = await readFile(f);
    parts.push(b);
    have += b.length;
  }
  if (have < bytes) throw new Error(`micro-bench: need ${bytes} bytes of real files, found ${have}`);
  return Buffer.concat(parts).subarray(0, bytes);
}

async function estargzOf(content: Buffer): Promise<{ blob: Buffer; tocDigest: Digest }> {
  const p = pack();
  p.entry({ name: 'data.bin', size: content.length, mode: 0o644 }, content);
  p.finalize();
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  const res = await writeEstargz(Readable.from(p), out, {});
  return { blob: Buffer.concat(parts), tocDigest: res.annotations[Annotation.estargzTocDigest] as Digest };
}

export interface MicroResult {
  name: string;
  /** Mean and median time per operation, ms. */
  meanMs: number;
  p50Ms: number;
  opsPerSecond: number;
  samples: number;
  /** Throughput where the operation has a byte size. */
  mbPerSecond?: number;
}

export async function runMicroBenchmarks(timeMs: number): Promise<MicroResult[]> {
  const bench = new Bench({ time: timeMs, iterations: 8, warmupIterations: 2 });
  const sizes = new Map<string, number>();

  const { json, tocOffset } = syntheticToc(100_000);
  const tocName = `TOC parse + validate (100k entries, ${(json.length / 1e6).toFixed(1)} MB JSON)`;
  bench.add(tocName, () => {
    const { entries } = buildEntries(JSON.parse(json.toString('utf8')), tocOffset, 'bench TOC');
    if (entries.length < 99_000) throw new Error('TOC lost entries');
  });

  const chunkSize = 4 << 20;
  const { blob, tocDigest } = await estargzOf(await realBytes(chunkSize));
  const layer = await openEstargz(new BufferBlob(blob, 'bench layer'), { tocDigest });
  const chunk = layer.entries.find((e) => e.path === 'data.bin')!.chunks[0]!;
  const compressed = blob.subarray(chunk.start, chunk.end);
  const chunkName = `eStargz chunk decompress + verify (4 MiB real binaries, ${(compressed.length / 1e6).toFixed(2)} MB gzip)`;
  sizes.set(chunkName, chunk.size);
  bench.add(chunkName, async () => {
    const data = await layer.decodeChunk(chunk, compressed);
    if (data.length !== chunk.size) throw new Error('short chunk');
  });

  const cacheDir = await mkdtemp(join(tmpdir(), 'starling-micro-'));
  const cache = await ChunkCache.open({ dir: cacheDir, diskBytes: 1 << 30, memoryBytes: 256 << 20 });
  const keys: Digest[] = [];
  const piece = Buffer.alloc(64 << 10, 7);
  for (let i = 0; i < 2000; i++) {
    const d = sha256(`chunk ${i}`);
    keys.push(d);
    cache.putMemory(d, piece);
  }
  let k = 0;
  bench.add('chunk cache memory-LRU hit (2000 × 64 KiB resident)', () => {
    if (!cache.getMemory(keys[(k = (k + 7919) % keys.length)]!)) throw new Error('LRU miss');
  });

  // 5,000 chunk ranges of a 1 GB blob as a cold start asks for them: clustered, with small gaps.
  const spans: Span[] = [];
  let pos = 0;
  for (let i = 0; i < 5000; i++) {
    pos += i % 20 === 0 ? 3_000_000 : (i * 37) % 4000;
    const len = 2000 + ((i * 7919) % 60_000);
    spans.push({ start: pos, end: pos + len });
    pos += len;
  }
  spans.reverse();
  bench.add('range coalescing (5,000 ranges, 64 KiB max gap, 4 MiB max group)', () => {
    const groups = coalesceRanges(spans, { maxGap: 64 << 10, maxSize: 4 << 20 });
    if (groups.length === 0) throw new Error('no groups');
  });

  try {
    await bench.run();
  } finally {
    await rm(cacheDir, { recursive: true, force: true });
  }
  return bench.tasks.map((t) => {
    const r = t.result;
    if (r.state !== 'completed') throw new Error(`micro-bench ${t.name}: ${r.state}${'error' in r ? `: ${String(r.error)}` : ''}`);
    const bytes = sizes.get(t.name);
    return {
      name: t.name,
      meanMs: r.latency.mean,
      p50Ms: r.latency.p50,
      opsPerSecond: r.throughput.mean,
      samples: r.latency.samplesCount,
      ...(bytes ? { mbPerSecond: bytes / 1e6 / (r.latency.mean / 1000) } : {}),
    };
  });
}

export function microTable(results: MicroResult[]): string {
  const lines = ['| benchmark | mean | p50 | ops/s | MB/s |', '| --- | ---: | ---: | ---: | ---: |'];
  const ms = (v: number) => (v >= 1 ? `${v.toFixed(2)} ms` : `${(v * 1000).toFixed(2)} µs`);
  for (const r of results) {
    lines.push(`| ${r.name} | ${ms(r.meanMs)} | ${ms(r.p50Ms)} | ${r.opsPerSecond < 10 ? r.opsPerSecond.toFixed(2) : Math.round(r.opsPerSecond).toLocaleString('en')} | ${r.mbPerSecond ? r.mbPerSecond.toFixed(0) : '—'} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'bench/out/micro.json' }, time: { type: 'string', default: '2000' } } });
  const results = await runMicroBenchmarks(Number(values.time));
  const table = microTable(results);
  process.stdout.write(`${table}\n`);
  await mkdir(dirname(values.out!), { recursive: true });
  const date = new Date().toISOString();
  await writeFile(values.out!, JSON.stringify({ date, machine: `${cpus().length} × ${cpus()[0]?.model.trim()}`, node: process.version, results, table }, null, 2));
  const load = loadavg()[0]!.toFixed(1);
  const md = `Run ${date.slice(0, 16).replace('T', ' ')} UTC on ${cpus().length} × ${cpus()[0]?.model.trim()} (load average ${load} at the end), Node ${process.version} (\`node --import tsx bench/micro/micro.ts\`):\n\n${table}\n`;
  await writeFile(values.out!.replace(/\.json$/, '') + '.md', md);
}
