// Test helper: real ELF files for the library prefetch: a program and two shared libraries built by
// the machine's gcc (the program finds libfoo through its RUNPATH, libfoo finds libbar through its
// own), and what readelf says of any ELF file.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface BuiltPrograms {
  dir: string;
  prog: Buffer;
  libfoo: Buffer;
  libbar: Buffer;
  /** The program's RUNPATH as given to the linker. */
  runpath: string;
}

export async function buildPrograms(runpath = '$ORIGIN/../lib:/loop'): Promise<BuiltPrograms> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-elf-'));
  await writeFile(join(dir, 'bar.c'), 'int bar(void) { return 2; }\n');
  await writeFile(join(dir, 'foo.c'), 'int bar(void);\nint foo(void) { return bar() + 1; }\n');
  await writeFile(join(dir, 'prog.c'), 'int foo(void);\nint main(void) { return foo(); }\n');
  const gcc = (args: string[]) => run('gcc', args, { cwd: dir });
  await gcc(['-shared', '-fPIC', '-o', 'libbar.so', 'bar.c']);
  await gcc(['-shared', '-fPIC', '-o', 'libfoo.so', 'foo.c', '-L.', '-lbar', '-Wl,-rpath,$ORIGIN']);
  await gcc(['-o', 'prog', 'prog.c', '-L.', '-lfoo', `-Wl,--enable-new-dtags,-rpath,${runpath}`]);
  const [prog, libfoo, libbar] = await Promise.all(['prog', 'libfoo.so', 'libbar.so'].map((f) => readFile(join(dir, f))));
  return { dir, prog: prog!, libfoo: libfoo!, libbar: libbar!, runpath };
}

export interface ReadelfView {
  interp?: string;
  needed: string[];
  runpath?: string;
}

/** The interpreter, DT_NEEDED names and run path of `file` as binutils' readelf reads them. */
export async function readelf(file: string): Promise<ReadelfView> {
  const { stdout: dynamic } = await run('readelf', ['-d', '-W', file], { maxBuffer: 64 << 20 });
  const { stdout: headers } = await run('readelf', ['-l', '-W', file], { maxBuffer: 64 << 20 });
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]!);
  const runpath = /\((?:RUNPATH)\)\s+Library runpath: \[(.*)\]/.exec(dynamic)?.[1] ?? /\((?:RPATH)\)\s+Library rpath: \[(.*)\]/.exec(dynamic)?.[1];
  const interp = /\[Requesting program interpreter: (.*)\]/.exec(headers)?.[1];
  return { needed, ...(runpath !== undefined ? { runpath } : {}), ...(interp !== undefined ? { interp } : {}) };
}

/** cc1 of the machine's gcc: a 30 MB program whose string table is megabytes long. */
export async function cc1Path(): Promise<string> {
  return (await run('gcc', ['-print-prog-name=cc1'])).stdout.trim();
}
