// What GCC runs and reads after its compiler proper. The driver runs cc1 (cc1plus for C++), then the
// assembler, then collect2, which runs the linker; the linker loads the LTO plugin and reads the C
// runtime's start files and libraries. Each is a cold miss in turn once cc1 is done, the link mostly
// idle between them (a gcc compile and link at 20 ms / 100 Mbit: ~15 misses, 0.8 s of a 2.9 s run),
// while cc1 itself runs for a while first (headers, compiling). Nothing in a program names the
// programs it will run: these are GCC's and binutils' own paths (Debian's /usr/lib/gcc, other
// distributions' /usr/libexec/gcc), looked up in the image; what it lacks is skipped.

/** cc1 or cc1plus in GCC's directory for a target and version. */
const COMPILER = /^(\/usr\/(?:lib|libexec)\/gcc\/([^/]+)\/([^/]+))\/cc1(?:plus)?$/;

export interface ToolchainFiles {
  /** ELF programs and the linker's plugin: fetched, and their libraries followed. */
  programs: string[];
  /** Link inputs: object files, archives, linker scripts. */
  inputs: string[];
}

/** What follows the compiler proper at `path`, or undefined when `path` is not one. */
export function gccNextFiles(path: string): ToolchainFiles | undefined {
  const m = COMPILER.exec(path);
  if (!m) return undefined;
  const [, dir, triplet, version] = m as unknown as [string, string, string, string];
  const lib = `/usr/lib/gcc/${triplet}/${version}`;
  const multiarch = `/usr/lib/${triplet}`;
  return {
    programs: [
      `${dir}/collect2`,
      `/usr/bin/${triplet}-as`,
      '/usr/bin/as',
      `/usr/bin/${triplet}-ld.bfd`,
      '/usr/bin/ld.bfd',
      `/usr/bin/${triplet}-ld`,
      '/usr/bin/ld',
      `${dir}/liblto_plugin.so`,
      `${lib}/liblto_plugin.so`,
    ],
    inputs: [
      ...['crtbeginS.o', 'crtendS.o', 'crtbegin.o', 'crtend.o', 'libgcc.a', 'libgcc_s.so'].map((f) => `${lib}/${f}`),
      ...['Scrt1.o', 'crt1.o', 'crti.o', 'crtn.o', 'libc.so', 'libc_nonshared.a', 'libgcc_s.so.1'].map((f) => `${multiarch}/${f}`),
    ],
  };
}
