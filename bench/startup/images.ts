// The benchmark images, built from real files of this machine (no internet), and their workloads.
import type { LazyTargets } from './report.js';
import type { LayerFiles } from './rootfs.js';

/** Content a layer gets from a staging directory the harness writes (not from `/`). */
export interface GeneratedLayer {
  /** Files to write: path relative to the image root → content. */
  files?: Record<string, string>;
  /** One file made of real files of the machine concatenated in name order, cut at `bytes`. */
  concatenated?: { path: string; roots: string[]; bytes: number };
  /** Debian packages from the apt mirror, unpacked (bench/startup/debs.ts): what this machine has not installed. */
  debs?: string[];
  /** Symlinks to make (path relative to the image root → target): what the debs' maintainer scripts would. */
  symlinks?: Record<string, string>;
}

export type LayerRecipe = { name: string } & ({ host: LayerFiles } | { generated: GeneratedLayer });

export interface Workload {
  /** argv run in the image root (through chroot), with the image's Env and WorkingDir. */
  cmd: string[];
  /** The run phase ends when stdout has a line containing this (or at exit); the run must print it. */
  readyLine: string;
}

export interface ImageRecipe {
  name: string;
  description: string;
  layers: LayerRecipe[];
  env: string[];
  workingDir: string;
  workload: Workload;
  /** Issue 13's bounds for the lazy mode on this image (not image content: not in the cache key). */
  lazyTargets?: LazyTargets;
}

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A minimal Debian userland every image starts from: libc, coreutils, a shell, merged-/usr links. */
const base: LayerRecipe = {
  name: 'base',
  host: {
    packages: ['base-files', 'libc6', 'coreutils', 'dash', 'libc-bin'],
    paths: ['/bin', '/lib', '/lib64', '/sbin', '/usr/bin/sh', '/etc/ld.so.cache', '/etc/passwd', '/etc/group', '/etc/nsswitch.conf'],
    libraries: true,
  },
};

/** python3.11 with its standard library and the libraries its modules load. */
const python: LayerRecipe = {
  name: 'python',
  // (Not /usr/lib/python3/dist-packages: this machine's sandbox rewrites files there.)
  host: { paths: ['/usr/bin/python3', '/usr/bin/python3.11', '/usr/lib/python3.11'], libraries: true },
};

const MB = 1000 * 1000;

/** The python image's layers: python3.11 plus real headers and libraries as a full python image carries. */
const pythonImage: LayerRecipe[] = [
  base,
  python,
  { name: 'headers', host: { paths: ['/usr/include'] } },
  { name: 'libs', host: { fill: { roots: ['/usr/lib/x86_64-linux-gnu'], bytes: 60 * MB } } },
];

export const IMAGES: readonly ImageRecipe[] = [
  {
    name: 'python',
    description: 'python3.11 with its standard library and the libraries its modules load, plus real headers and libraries as a full python image carries (~300 MB)',
    layers: pythonImage,
    env: [PATH_ENV, 'LANG=C.UTF-8'],
    workingDir: '/',
    workload: { cmd: ['python3', '-c', 'import json, sqlite3, email; print(1)'], readyLine: '1' },
    lazyTargets: { requests: 40, fetchedOverRead: 2 },
  },
  {
    name: 'pydata',
    description: "the python image plus Debian bookworm's numpy 1.24 and pandas 1.5, their dependencies and tzdata: the import reads hundreds of small files",
    layers: [
      ...pythonImage,
      // What the packages below load from this machine: the C++ and Fortran runtimes' libraries, and
      // the time zones pandas' pytz lists at import (it opens every zone file).
      { name: 'runtime', host: { packages: ['libstdc++6', 'libgcc-s1', 'libquadmath0', 'tzdata'] } },
      {
        name: 'pydata',
        generated: {
          debs: ['python3-numpy', 'python3-pandas', 'python3-pandas-lib', 'python3-dateutil', 'python3-tz', 'python3-six', 'libblas3', 'liblapack3', 'libgfortran5'],
          // The links update-alternatives makes when libblas3 and liblapack3 are installed.
          symlinks: { 'usr/lib/x86_64-linux-gnu/libblas.so.3': 'blas/libblas.so.3', 'usr/lib/x86_64-linux-gnu/liblapack.so.3': 'lapack/liblapack.so.3' },
        },
      },
    ],
    env: [PATH_ENV, 'LANG=C.UTF-8'],
    workingDir: '/',
    workload: { cmd: ['python3', '-c', 'import numpy, pandas; print(1)'], readyLine: '1' },
    lazyTargets: { requests: 40, fetchedOverRead: 2 },
  },
  {
    name: 'gcc',
    description: 'gcc 12, cc1, binutils and libc headers, plus padding layers of other real /usr content (≥ 1 GB)',
    layers: [
      base,
      {
        name: 'toolchain',
        host: {
          packages: ['gcc-12', 'cpp-12', 'binutils', 'binutils-x86-64-linux-gnu', 'libbinutils', 'libgcc-12-dev', 'libc6-dev', 'linux-libc-dev', 'libcrypt-dev', 'libc-dev-bin'],
          paths: ['/usr/bin/gcc', '/usr/bin/cc', '/usr/bin/cpp'],
          libraries: true,
        },
      },
      { name: 'go', host: { paths: ['/usr/lib/go-1.19'] } },
      { name: 'llvm', host: { paths: ['/usr/lib/llvm-14'] } },
      { name: 'jvm', host: { fill: { roots: ['/usr/lib/jvm'], bytes: 100 * MB } } },
      {
        name: 'app',
        generated: {
          files: {
            'src/hello.c': '#include <stdio.h>\n#include <string.h>\n\nint main(void) {\n  char msg[64];\n  strcpy(msg, "hello from starling");\n  printf("%s (%zu)\\n", msg, strlen(msg));\n  return 0;\n}\n',
          },
        },
      },
    ],
    env: [PATH_ENV],
    workingDir: '/src',
    workload: { cmd: ['/bin/sh', '-c', 'gcc -O2 -o /tmp/hello hello.c && /tmp/hello'], readyLine: 'hello from starling' },
  },
  {
    name: 'data',
    description: 'one 1 GiB data file (real machine files concatenated) read sequentially with sha256sum',
    layers: [
      base,
      {
        name: 'data',
        generated: { concatenated: { path: 'data/blob', roots: ['/usr/lib/x86_64-linux-gnu', '/usr/lib/jvm', '/usr/lib/llvm-14', '/usr/lib/go-1.19'], bytes: 1024 * 1024 * 1024 } },
      },
    ],
    env: [PATH_ENV],
    workingDir: '/data',
    workload: { cmd: ['sha256sum', '/data/blob'], readyLine: '/data/blob' },
  },
];

export function imageRecipe(name: string): ImageRecipe {
  const r = IMAGES.find((i) => i.name === name);
  if (!r) throw new Error(`unknown benchmark image ${JSON.stringify(name)} (known: ${IMAGES.map((i) => i.name).join(', ')})`);
  return r;
}
