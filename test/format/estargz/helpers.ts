// Helpers of the eStargz tests: convert a tar into a blob in memory, read a tar with tar-stream (an
// implementation independent of ours), and run the Go reference program.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { extract } from 'tar-stream';
import { writeEstargz, type EstargzWriteOptions } from '../../../src/format/estargz/writer.js';
import type { LayerWriteResult } from '../../../src/format/writer.js';

const run = promisify(execFile);
export const REPO = new URL('../../../', import.meta.url).pathname;
export const GO_ESTARGZ = `${REPO}.interop-bin/estargz`;

/** Collects everything written to it. */
export class MemorySink extends Writable {
  private readonly parts: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.parts.push(chunk);
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export async function convert(input: string | Buffer, opts?: EstargzWriteOptions): Promise<{ blob: Buffer; result: LayerWriteResult }> {
  const sink = new MemorySink();
  const src = typeof input === 'string' ? createReadStream(input) : Readable.from([input]);
  const result = await writeEstargz(src, sink, opts);
  return { blob: sink.data, result };
}

export interface SourceEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtimeMs: number;
  size: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  pax: Record<string, string>;
  sha256?: string;
  content?: Buffer;
}

/** Every entry of a tar as tar-stream reads it (content kept for files up to `keepUpTo` bytes). */
export async function readSourceTar(input: string | Buffer, keepUpTo = 0): Promise<SourceEntry[]> {
  const ex = extract();
  const out: SourceEntry[] = [];
  const src = typeof input === 'string' ? createReadStream(input) : Readable.from([input]);
  src.pipe(ex);
  for await (const entry of ex) {
    const h = entry.header;
    const hash = createHash('sha256');
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      if (size <= keepUpTo) parts.push(chunk);
    }
    const pax = (h.pax ?? {}) as Record<string, string>;
    out.push({
      name: h.name,
      type: h.type ?? 'file',
      mode: h.mode ?? 0,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      uname: h.uname ?? '',
      gname: h.gname ?? '',
      // GNU tar's PAX mtime has sub-seconds; the TOC holds whole seconds rounded like Go.
      mtimeMs: pax.mtime ? Math.round(Number(pax.mtime)) * 1000 : (h.mtime?.getTime() ?? 0),
      size,
      linkname: h.linkname ?? '',
      devmajor: h.devmajor ?? 0,
      devminor: h.devminor ?? 0,
      pax,
      sha256: h.type === 'file' ? `sha256:${hash.digest('hex')}` : undefined,
      content: size <= keepUpTo && h.type === 'file' ? Buffer.concat(parts) : undefined,
    });
  }
  return out;
}

/** Builds the Go interop programs (a no-op when the cached binaries match their sources). */
export async function ensureGoEstargz(): Promise<void> {
  await run(`${REPO}scripts/build-interop.sh`, [], { cwd: REPO, maxBuffer: 16 << 20 });
  await access(GO_ESTARGZ);
}

export async function goEstargz(args: string[]): Promise<string> {
  const { stdout } = await run(GO_ESTARGZ, args, { maxBuffer: 256 << 20 });
  return stdout;
}

export interface GoVerifyEntry {
  name: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  userName: string;
  groupName: string;
  modtime: string;
  linkName: string;
  devMajor: number;
  devMinor: number;
  xattrs: Record<string, string>;
  digest: string;
  readDigest?: string;
}

export interface GoVerifyResult {
  tocDigest: string;
  entries: GoVerifyEntry[];
  regularFiles: number;
  verifiedChunks: number;
  bytesRead: number;
}
