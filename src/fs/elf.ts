// Just enough of ELF to know which shared libraries a program or library will have the dynamic
// loader open next: its program interpreter (PT_INTERP) and its DT_NEEDED names, plus DT_RUNPATH /
// DT_RPATH. Little-endian ELF64 only (x86-64, aarch64, riscv64: what container images run).
// Every byte is untrusted: a field that points outside what it may gives "not an ELF we follow",
// never an exception or a read out of bounds.

/** A byte range of the file [offset, offset + size). */
export interface FileRange {
  offset: number;
  size: number;
}

export interface ElfHead {
  /** e_machine (62 x86-64, 183 aarch64, 243 riscv). */
  machine: number;
  /** Where the interpreter's path is (PT_INTERP), if the file names one. */
  interp?: FileRange;
  /** The dynamic section (PT_DYNAMIC), if the file has one. */
  dynamic?: FileRange;
  /** PT_LOAD segments: how the dynamic section's addresses map to file offsets. */
  loads: Array<{ vaddr: number; offset: number; filesz: number }>;
}

export interface DynamicInfo {
  /** The part of the string table (DT_STRTAB, DT_STRSZ) that holds the names below, as a file range. */
  names: FileRange;
  /** Offsets into `names`: DT_NEEDED entries, in order. */
  needed: number[];
  /** Offset into `names` of DT_RUNPATH, else DT_RPATH. */
  runpath?: number;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const PHDR_SIZE = 56;
const DYN_SIZE = 16;
/** Bounds on what a real file has, so a hostile header cannot make us fetch or scan much. */
const MAX_PHDRS = 256;
export const MAX_DYNAMIC = 64 << 10;
/** Bytes of the string table read for the names (they sit together; the table may be megabytes). */
export const MAX_NAMES_SPAN = 256 << 10;
/** Longest library name or run path read. */
const MAX_NAME = 4096;
const MAX_NEEDED = 128;

/** A 64-bit field as a number; undefined beyond 2^53 (no real file offset or address is). */
function u64(buf: Buffer, at: number): number | undefined {
  const v = buf.readBigUInt64LE(at);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}

/** The program headers of an ELF64 LE file whose first bytes are `head`, or undefined. */
export function parseElfHead(head: Buffer, fileSize: number): ElfHead | undefined {
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
  if (head[4] !== 2 || head[5] !== 1) return undefined; // ELFCLASS64, ELFDATA2LSB
  const type = head.readUInt16LE(16);
  if (type !== 2 && type !== 3) return undefined; // ET_EXEC, ET_DYN
  const phoff = u64(head, 32);
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  if (phoff === undefined || phentsize !== PHDR_SIZE || phnum > MAX_PHDRS || phoff + phnum * PHDR_SIZE > head.length) return undefined;
  const out: ElfHead = { machine: head.readUInt16LE(18), loads: [] };
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * PHDR_SIZE;
    const kind = head.readUInt32LE(p);
    const offset = u64(head, p + 8);
    const vaddr = u64(head, p + 16);
    const filesz = u64(head, p + 32);
    if (offset === undefined || vaddr === undefined || filesz === undefined || offset + filesz > fileSize) continue;
    if (kind === PT_LOAD) out.loads.push({ vaddr, offset, filesz });
    else if (kind === PT_DYNAMIC && filesz <= MAX_DYNAMIC) out.dynamic = { offset, size: filesz };
    else if (kind === PT_INTERP && filesz <= 4096) out.interp = { offset, size: filesz };
  }
  return out;
}

/** The file offset of virtual address `vaddr` (+ `size` bytes inside one PT_LOAD), or undefined. */
function fileOffsetOf(head: ElfHead, vaddr: number, size: number): number | undefined {
  const seg = head.loads.find((l) => vaddr >= l.vaddr && vaddr + size <= l.vaddr + l.filesz);
  return seg ? seg.offset + (vaddr - seg.vaddr) : undefined;
}

/** What the dynamic section `dyn` (the bytes of `head.dynamic`) says about libraries, or undefined. */
export function parseDynamic(head: ElfHead, dyn: Buffer): DynamicInfo | undefined {
  const needed: number[] = [];
  let strtabAddr: number | undefined;
  let strsz: number | undefined;
  let rpath: number | undefined;
  let runpath: number | undefined;
  for (let at = 0; at + DYN_SIZE <= dyn.length; at += DYN_SIZE) {
    const tag = dyn.readBigInt64LE(at);
    if (tag === BigInt(DT_NULL)) break;
    const val = u64(dyn, at + 8);
    if (val === undefined) continue;
    if (tag === BigInt(DT_NEEDED) && needed.length < MAX_NEEDED) needed.push(val);
    else if (tag === BigInt(DT_STRTAB)) strtabAddr = val;
    else if (tag === BigInt(DT_STRSZ)) strsz = val;
    else if (tag === BigInt(DT_RPATH)) rpath = val;
    else if (tag === BigInt(DT_RUNPATH)) runpath = val;
  }
  if (strtabAddr === undefined || strsz === undefined) return undefined;
  const path = runpath ?? rpath;
  const used = [...needed, ...(path === undefined ? [] : [path])].filter((n) => n < strsz);
  if (used.length === 0) return undefined;
  const lo = Math.min(...used);
  const hi = Math.min(strsz, Math.max(...used) + MAX_NAME);
  if (hi - lo > MAX_NAMES_SPAN) return undefined;
  const offset = fileOffsetOf(head, strtabAddr + lo, hi - lo);
  if (offset === undefined) return undefined;
  const out: DynamicInfo = { names: { offset, size: hi - lo }, needed: needed.filter((n) => n < strsz).map((n) => n - lo) };
  if (path !== undefined && path < strsz) out.runpath = path - lo;
  return out;
}

/** The NUL-terminated string at `at` of `table`, or undefined if it does not end inside it (or is empty). */
export function cString(table: Buffer, at: number): string | undefined {
  const end = table.indexOf(0, at);
  if (at >= table.length || end <= at) return undefined;
  return table.toString('latin1', at, end);
}

/** Debian's multiarch directory name for an e_machine, where it has one. */
export function multiarchTriplet(machine: number): string | undefined {
  return ({ 62: 'x86_64-linux-gnu', 183: 'aarch64-linux-gnu', 243: 'riscv64-linux-gnu' } as Record<number, string>)[machine];
}
