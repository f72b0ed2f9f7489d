// What the fuzz harness feeds: every parser of untrusted bytes, each with seeds cut from real blobs
// (written by our writers from the checked-in real-file tars in corpus/) and the error classes it
// may throw. Anything else thrown — a TypeError/RangeError from deep inside, a non-Error, a bare
// Error — is a finding, as is a hang or a memory jump (checked by the engine).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { decompress } from '@mongodb-js/zstd';
import { BufferBlob } from '../../src/blob/source.js';
import { estargzFooter, legacyStargzFooter, parseFooter as parseEstargzFooter } from '../../src/format/estargz/footer.js';
import { buildEntries, openEstargz, readFileRange } from '../../src/format/estargz/reader.js';
import { TarFormatError as EstargzTarFormatError, TarReader } from '../../src/format/estargz/tar-reader.js';
import { writeEstargz } from '../../src/format/estargz/writer.js';
import { TarEntryError } from '../../src/format/tar-entry.js';
import { ChunkVerifyError, TocError, type LayerToc } from '../../src/format/toc.js';
import {
  FOOTER_FRAME_SIZE,
  FooterError,
  parseFooter as parseZstdFooter,
  parseManifestPosition,
  parseTarSplitPosition,
} from '../../src/format/zstdchunked/footer.js';
import { RawTarParser, TarFormatError as RawTarFormatError } from '../../src/format/zstdchunked/rawtar.js';
import { openZstdChunked } from '../../src/format/zstdchunked/reader.js';
import { readTarSplit, TarSplitError } from '../../src/format/zstdchunked/tarsplit.js';
import { writeZstdChunked } from '../../src/format/zstdchunked/writer.js';
import { indexLayer } from '../../src/fs/layer-index.js';
import type { ChunkStore } from '../../src/fs/chunk-store.js';
import { LazyFs } from '../../src/fs/lazyfs.js';
import { MountMetrics } from '../../src/fs/metrics.js';
import { buildLayerTree, buildMergedTree } from '../../src/fs/tree.js';
import { DigestError, type Digest } from '../../src/oci/digest.js';
import { Annotation } from '../../src/oci/mediatypes.js';
import { parseConfig, parseIndex, parseManifest, parseManifestOrIndex, ValidationError } from '../../src/oci/validate.js';
import { parseDockerReference, ReferenceError as DockerReferenceError } from '../../src/registry/reference.js';
import { parseImageReference, TransportError } from '../../src/registry/transport.js';
import { estargzBlob, zstdChunkedBlob } from '../hardening/blobs.js';

type ErrorClass = abstract new (...args: never[]) => Error;

export interface Target {
  name: string;
  seeds: Buffer[];
  /** Mutate structurally as JSON half of the time. */
  json?: boolean;
  /** Recompute tar header checksums after mutating most of the time (to get past them). */
  tar?: boolean;
  /** The only error classes the target may throw. */
  allowed: ErrorClass[];
  run(input: Buffer): unknown;
}

export const CORPUS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'corpus');

class Sink extends Writable {
  parts: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.parts.push(chunk);
    cb();
  }
}

async function writeToBuffer(write: (tar: Readable, out: Writable) => Promise<{ annotations: Record<string, string>; tocDigest: Digest }>, tar: Buffer) {
  const sink = new Sink();
  const res = await write(Readable.from([tar]), sink);
  return { blob: Buffer.concat(sink.parts), annotations: res.annotations, tocDigest: res.tocDigest };
}

/**
 * What a mount does with an opened layer: index it and build its inode tree (merged, and as an
 * overlay lower layer), then read every regular file (the first and last 256 KiB of big ones).
 */
async function readFiles(layer: LayerToc, blob: BufferBlob): Promise<void> {
  const index = indexLayer(layer.entries, 'fuzzed layer');
  buildMergedTree([index, index]);
  buildLayerTree(index, 0);
  for (const e of layer.entries.slice(0, 64)) {
    if (e.type !== 'reg') continue;
    const window = 256 << 10;
    await readFileRange(layer, blob, e, 0, window);
    if (e.size > window) await readFileRange(layer, blob, e, e.size - window, window);
  }
}

/** A tar entry's payload from an uncompressed tar member (ustar header + data). */
function tarPayload(tar: Buffer): Buffer {
  const size = parseInt(tar.toString('latin1', 124, 136).replace(/\0.*$/, '').trim(), 8);
  return tar.subarray(512, 512 + size);
}

const DOCKER_REFS = [
  'docker://127.0.0.1:5000/library/alpine:3.19',
  'docker://registry.example.com/team/app@sha256:' + 'ab'.repeat(32),
  'ubuntu',
  'docker://[::1]:5000/a/b/c:v1.2-rc_3',
  'localhost/x:latest@sha256:' + '01'.repeat(32),
  'docker.io/library/busybox',
];
const TREE_SEED = [
  { name: './', type: 'dir', mode: 0o755 },
  { name: 'etc/', type: 'dir', mode: 0o755 },
  { name: 'etc/hosts', type: 'reg', size: 0, mode: 0o644, uid: 1000, gid: 1000, modtime: '2024-01-02T03:04:05Z' },
  { name: 'etc/hard', type: 'hardlink', linkName: 'etc/hosts' },
  { name: 'etc/rel', type: 'symlink', linkName: '../usr/bin/true' },
  { name: 'etc/abs', type: 'symlink', linkName: '/etc/shadow' },
  { name: 'etc/.wh.old', type: 'reg', size: 0 },
  { name: 'var/', type: 'dir' },
  { name: 'var/cache/', type: 'dir', xattrs: { 'user.x': 'eQ==' } },
  { name: 'var/cache/.wh..wh..opq', type: 'reg', size: 0 },
  { name: 'var/cache/keep', type: 'reg', size: 0 },
  { name: 'dev/', type: 'dir' },
  { name: 'dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
  { name: 'dev/fifo', type: 'fifo' },
  { name: 'etc/hosts', type: 'reg', size: 0, mode: 0o600 },
];
const IMAGE_REFS = ['oci:/tmp/layout:v1', 'oci:relative/dir', 'oci:/data/a:b:', 'docker://alpine', 'oci:C:\\x:tag', 'containers-storage:x'];

function ociSeeds() {
  const d = (n: number) => 'sha256:' + n.toString(16).padStart(2, '0').repeat(32);
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d(1), size: 1234 },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: d(2),
        size: 5678,
        annotations: { [Annotation.estargzTocDigest]: d(3), [Annotation.estargzUncompressedSize]: '10240' },
      },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: d(4), size: 99, annotations: { [Annotation.zstdChunkedManifestPosition]: '10:20:30:1' } },
    ],
    subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(5), size: 10 },
    annotations: { 'org.opencontainers.image.created': '2024-01-02T03:04:05Z' },
  };
  const docker = {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: d(6), size: 1 },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: d(7), size: 2, urls: ['https://example.com/x'] }],
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(8), size: 500, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(9), size: 501, platform: { architecture: 'arm64', os: 'linux', variant: 'v8', 'os.features': ['x'] } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(10), size: 502, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' }, data: 'e30=' },
    ],
  };
  const config = {
    architecture: 'amd64',
    os: 'linux',
    created: '2024-01-02T03:04:05Z',
    config: { Env: ['PATH=/usr/bin'], Cmd: ['/bin/sh'], WorkingDir: '/', User: '0:0', Labels: { a: 'b' } },
    rootfs: { type: 'layers', diff_ids: [d(11), d(12)] },
    history: [{ created: '2024-01-02T03:04:05Z', created_by: 'x' }, { empty_layer: true }],
  };
  return [manifest, docker, index, config].map((x) => Buffer.from(JSON.stringify(x)));
}

export async function buildTargets(): Promise<Target[]> {
  const pax = readFileSync(join(CORPUS_DIR, 'small-pax.tar'));
  const gnu = readFileSync(join(CORPUS_DIR, 'small-gnu.tar'));

  // eStargz seeds: a real blob with small chunks (several per file), its footer, TOC member, TOC JSON.
  const esgz = await writeToBuffer((t, o) => writeEstargz(t, o, { chunkSize: 4096, level: 6 }), pax);
  const esgzLayer = await openEstargz(new BufferBlob(esgz.blob));
  const esgzData = esgz.blob.subarray(0, esgzLayer.tocOffset);
  const esgzTail = esgz.blob.subarray(esgzLayer.tocOffset);
  const esgzToc = tarPayload(gunzipSync(esgz.blob.subarray(esgzLayer.tocOffset, esgz.blob.length - 51)));

  // zstd:chunked seeds: real blobs, the tail after the data, the TOC JSON and the tar-split.
  const zc = await writeToBuffer((t, o) => writeZstdChunked(t, o, { level: 3 }), pax);
  const zcGnu = await writeToBuffer((t, o) => writeZstdChunked(t, o, { level: 3 }), gnu);
  const footer = parseZstdFooter(zc.blob.subarray(zc.blob.length - FOOTER_FRAME_SIZE))!;
  const zcData = zc.blob.subarray(0, footer.manifest.offset - 8);
  const zcTail = zc.blob.subarray(footer.manifest.offset - 8);
  const zcToc = await decompress(zc.blob.subarray(footer.manifest.offset, footer.manifest.offset + footer.manifest.length));
  const ts = footer.tarSplit!;
  const zcTarSplitCompressed = zc.blob.subarray(ts.offset, ts.offset + ts.length);
  const zcTarSplit = await decompress(zcTarSplitCompressed);

  const layerErrors = [TocError, ChunkVerifyError];
  return [
    {
      name: 'estargz-footer',
      seeds: [esgz.blob.subarray(-51), estargzFooter(123456), legacyStargzFooter(0x7fffffff), esgz.blob.subarray(-80)],
      allowed: [TocError],
      run: (b) => parseEstargzFooter(b),
    },
    {
      name: 'estargz-tail',
      seeds: [esgzTail],
      allowed: layerErrors,
      async run(b) {
        const blob = new BufferBlob(Buffer.concat([esgzData, b]));
        await readFiles(await openEstargz(blob), blob);
      },
    },
    {
      name: 'estargz-toc',
      seeds: [esgzToc],
      json: true,
      allowed: layerErrors,
      async run(b) {
        const blob = new BufferBlob(estargzBlob(esgzData, b).blob);
        await readFiles(await openEstargz(blob), blob);
      },
    },
    {
      // Metadata-only layers (no content to check), so mutated names, types and links get past the
      // reader and reach the overlay rules, the inode trees and LazyFs; stacked on a fixed lower layer.
      name: 'layer-tree',
      seeds: [Buffer.from(JSON.stringify({ version: 1, entries: TREE_SEED }))],
      json: true,
      allowed: [TocError],
      run(b) {
        let doc: unknown;
        try {
          doc = JSON.parse(b.toString('utf8'));
        } catch {
          return;
        }
        const upper = indexLayer(buildEntries(doc, 1 << 30, 'fuzzed TOC').entries, 'upper');
        const lower = indexLayer(buildEntries({ version: 1, entries: TREE_SEED }, 1 << 30, 'lower TOC').entries, 'lower');
        for (const tree of [buildMergedTree([lower, upper]), buildLayerTree(upper, 1)]) {
          // Metadata only: no read reaches the chunk store.
          const fs = new LazyFs(tree, {} as ChunkStore, new MountMetrics());
          const walk = (path: string, depth: number): void => {
            if (depth > 64) return;
            for (const name of fs.readdir(path).names.slice(2)) {
              const child = `${path === '/' ? '' : path}/${name}`;
              const st = fs.getattr(child);
              if ((st.mode & 0o170000) === 0o040000) walk(child, depth + 1);
              else if ((st.mode & 0o170000) === 0o120000) fs.readlink(child);
              fs.listxattr(child);
            }
          };
          walk('/', 0);
          fs.statfs();
        }
      },
    },
    {
      name: 'zstd-footer',
      seeds: [zc.blob.subarray(-FOOTER_FRAME_SIZE), zcGnu.blob.subarray(-40), zc.blob.subarray(-100)],
      allowed: [FooterError],
      run: (b) => parseZstdFooter(b),
    },
    {
      name: 'zstd-position',
      seeds: Object.entries(zc.annotations).filter(([k]) => k.endsWith('position')).map(([, v]) => Buffer.from(v)),
      allowed: [FooterError],
      run(b) {
        const s = b.toString('utf8');
        if (s.split(':').length === 4) parseManifestPosition(s, 'manifest-position');
        else parseTarSplitPosition(s, 'tarsplit-position');
      },
    },
    {
      name: 'zstd-annotations',
      seeds: [Buffer.from(JSON.stringify(zc.annotations))],
      json: true,
      allowed: [...layerErrors, FooterError],
      async run(b) {
        let ann: unknown;
        try {
          ann = JSON.parse(b.toString('utf8'));
        } catch {
          return; // the registry layer hands annotations over as a parsed object; only objects matter
        }
        if (typeof ann !== 'object' || ann === null || Array.isArray(ann)) return;
        const strings = Object.fromEntries(Object.entries(ann).map(([k, v]) => [k, String(v)]));
        const blob = new BufferBlob(zc.blob);
        await readFiles(await openZstdChunked(blob, strings), blob);
      },
    },
    {
      name: 'zstd-tail',
      seeds: [zcTail],
      allowed: layerErrors,
      async run(b) {
        const blob = new BufferBlob(Buffer.concat([zcData, b]));
        await readFiles(await openZstdChunked(blob, {}), blob);
      },
    },
    {
      name: 'zstd-toc',
      // With the tar-split digest (cross-checked) and without (mutations then reach chunk decoding).
      seeds: [zcToc, Buffer.from(JSON.stringify({ ...JSON.parse(zcToc.toString()), tarSplitDigest: undefined }))],
      json: true,
      allowed: layerErrors,
      async run(b) {
        const built = await zstdChunkedBlob(zcData, b, { tarSplit: { compressed: zcTarSplitCompressed, uncompressedLength: zcTarSplit.length } });
        const blob = new BufferBlob(built.blob);
        await readFiles(await openZstdChunked(blob, built.annotations), blob);
      },
    },
    {
      name: 'zstd-tarsplit',
      seeds: [zcTarSplit],
      allowed: [TarSplitError],
      run: (b) => readTarSplit(b),
    },
    {
      name: 'tar-reader',
      seeds: [pax, gnu],
      tar: true,
      allowed: [EstargzTarFormatError, TarEntryError],
      async run(b) {
        const reader = new TarReader(Readable.from([b]));
        for (let e = await reader.next(); e; e = await reader.next()) {
          while (await reader.readPayload(64 << 10));
        }
      },
    },
    {
      name: 'rawtar',
      seeds: [pax, gnu],
      tar: true,
      allowed: [RawTarFormatError],
      run(b) {
        const parser = new RawTarParser({ entry() {}, payload() {}, entryEnd() {}, end() {}, trailing() {} });
        // Odd piece sizes: header and payload boundaries fall inside pieces.
        for (let off = 0; off < b.length; off += 777) parser.feed(b.subarray(off, off + 777));
        parser.finish();
      },
    },
    {
      // Refused as a tar, or written as a blob our reader opens and reads back (TocError is a finding).
      name: 'estargz-writer',
      seeds: [pax, gnu],
      tar: true,
      allowed: [EstargzTarFormatError, TarEntryError],
      async run(b) {
        const out = await writeToBuffer((t, o) => writeEstargz(t, o, { chunkSize: 8192, level: 1 }), b);
        const blob = new BufferBlob(out.blob);
        await readFiles(await openEstargz(blob, { tocDigest: out.tocDigest }), blob);
      },
    },
    {
      name: 'zstd-writer',
      seeds: [pax, gnu],
      tar: true,
      allowed: [RawTarFormatError, TarEntryError],
      async run(b) {
        const out = await writeToBuffer((t, o) => writeZstdChunked(t, o, { level: 1 }), b);
        const blob = new BufferBlob(out.blob);
        await readFiles(await openZstdChunked(blob, out.annotations, { requireChecksum: true }), blob);
      },
    },
    {
      name: 'docker-reference',
      seeds: DOCKER_REFS.map((s) => Buffer.from(s)),
      allowed: [DockerReferenceError],
      run: (b) => parseDockerReference(b.toString('utf8')),
    },
    {
      name: 'image-reference',
      seeds: [...IMAGE_REFS, ...DOCKER_REFS].map((s) => Buffer.from(s)),
      allowed: [TransportError],
      run: (b) => parseImageReference(b.toString('utf8')),
    },
    {
      name: 'oci-documents',
      seeds: ociSeeds(),
      json: true,
      allowed: [ValidationError, DigestError],
      run(b) {
        // Each validator sees every document: a manifest posing as an index must be refused cleanly.
        const errors: unknown[] = [];
        for (const parse of [parseManifest, parseIndex, parseManifestOrIndex, parseConfig] as ((x: Buffer) => unknown)[]) {
          try {
            parse(b);
          } catch (err) {
            errors.push(err);
          }
        }
        const bad = errors.find((e) => !(e instanceof ValidationError || e instanceof DigestError));
        if (bad !== undefined || errors.length === 4) throw bad ?? errors[0];
      },
    },
  ];
}
