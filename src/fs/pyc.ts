// Just enough of CPython's marshal format to find what a compiled module's top-level code imports:
// the IMPORT_NAME and IMPORT_FROM instructions of its code object (Python 3.8-3.12, whose opcodes
// are known here), or all the names that code uses (co_names, where the imports are among them:
// 3.13 and 3.14). Other pyc files give undefined. Every byte is untrusted: a length or reference
// that does not fit, or too many or too deeply nested objects, give undefined, never an exception
// or a read out of bounds.

import type { ImportName } from './python-imports.js';

/** Bounds for a hostile file: objects read, and their nesting (real modules: thousands, under 20). */
const MAX_OBJECTS = 1 << 20;
const MAX_DEPTH = 64;
const HEADER = 16;

/** A code object, as far as it is read. */
class Code {
  constructor(
    readonly bytecode: unknown,
    readonly consts: unknown,
    readonly names: unknown,
  ) {}
}
/** Opcodes of 3.8-3.12 (renumbered in 3.13). */
const LOAD_CONST = 100;
const IMPORT_NAME = 108;
const IMPORT_FROM = 109;
const EXTENDED_ARG = 144;
/** The first magic number of 3.13. */
const MAGIC_3_13 = 3550;
/** Marks the end of a dict, and values whose content is not needed. */
const NULL = Symbol('null');

class Malformed extends Error {}

/** The int32 fields before a code object's co_code, by the pyc's magic number; 0: not a layout we know. */
function codeIntFields(magic: number): number {
  if (magic >= 3413 && magic <= 3439) return 6; // 3.8-3.10: argcount, posonly, kwonly, nlocals, stacksize, flags
  if (magic >= 3495 && magic < 3700) return 5; // 3.11-3.14: nlocals left the marshalled form
  return 0;
}

/** What the module's top-level code imports, or undefined if the file is not a pyc read here. */
export function compiledImports(pyc: Buffer): ImportName[] | undefined {
  if (pyc.length < HEADER + 1 || pyc[2] !== 0x0d || pyc[3] !== 0x0a) return undefined;
  const magic = pyc.readUInt16LE(0);
  const ints = codeIntFields(magic);
  if (ints === 0) return undefined;
  let code: unknown;
  try {
    code = new MarshalReader(pyc, ints).object(0);
  } catch (err) {
    if (err instanceof Malformed) return undefined;
    throw err;
  }
  if (!(code instanceof Code) || !Array.isArray(code.names)) return undefined;
  const names = code.names as unknown[];
  if (magic < MAGIC_3_13 && code.bytecode instanceof Buffer && Array.isArray(code.consts)) return importInstructions(code.bytecode, code.consts as unknown[], names);
  // Opcodes not known here: every name, absolute and as a sibling.
  return names.filter((n): n is string => typeof n === 'string').flatMap((name) => [{ level: 0, name }, { level: 1, name }]);
}

/**
 * The imports of 3.8-3.12 bytecode: `LOAD_CONST level; LOAD_CONST fromlist; IMPORT_NAME name`, then
 * `IMPORT_FROM a` for each name of a `from name import a` (a may be a submodule).
 */
function importInstructions(bytecode: Buffer, consts: readonly unknown[], names: readonly unknown[]): ImportName[] {
  const out: ImportName[] = [];
  let arg = 0;
  let lastConsts: number[] = [];
  /** The module of the last IMPORT_NAME, if a `from` list followed it (`import a.b as c` has IMPORT_FROM b without one). */
  let module: ImportName | undefined;
  for (let i = 0; i + 1 < bytecode.length; i += 2) {
    const op = bytecode[i]!;
    arg = (arg << 8) | bytecode[i + 1]!;
    if (op === EXTENDED_ARG) continue;
    if (op === LOAD_CONST) lastConsts = [lastConsts[lastConsts.length - 1] ?? -1, arg];
    else if (op === IMPORT_NAME || op === IMPORT_FROM) {
      const name = names[arg];
      if (typeof name === 'string') {
        if (op === IMPORT_NAME) {
          const level = consts[lastConsts[0] ?? -1];
          const imported = { level: typeof level === 'number' && level >= 0 ? level : 0, name };
          if (name !== '') out.push(imported);
          module = Array.isArray(consts[lastConsts[1] ?? -1]) ? imported : undefined;
        } else if (module) {
          out.push({ level: module.level, name: module.name === '' ? name : `${module.name}.${name}` });
        }
      }
    }
    if (op !== LOAD_CONST && op !== 0) lastConsts = []; // CACHE entries (0, 3.11+) sit between instructions
    arg = 0;
  }
  return out;
}

class MarshalReader {
  private pos = HEADER;
  private readonly refs: unknown[] = [];
  private budget = MAX_OBJECTS;

  constructor(
    private readonly buf: Buffer,
    private readonly codeInts: number,
  ) {}

  object(depth: number): unknown {
    if (depth > MAX_DEPTH || --this.budget < 0) throw new Malformed();
    const code = this.byte();
    // FLAG_REF: the object takes the next reference slot, numbered before its contents are read.
    const slot = code & 0x80 ? this.refs.push(undefined) - 1 : -1;
    const value = this.body(String.fromCharCode(code & 0x7f), depth + 1);
    if (slot >= 0) this.refs[slot] = value;
    return value;
  }

  private body(type: string, depth: number): unknown {
    switch (type) {
      case '0':
        return NULL;
      case 'N':
      case 'F':
      case 'T':
      case 'S':
      case '.':
        return null;
      case 'i':
        return this.int32();
      case 'I':
      case 'g':
        return this.skip(8);
      case 'y':
        return this.skip(16);
      case 'f':
        return this.skip(this.byte());
      case 'x':
        this.skip(this.byte());
        return this.skip(this.byte());
      case 'l':
        return this.skip(2 * Math.abs(this.int32()));
      case 's':
        return this.bytes(this.length());
      case 't':
      case 'u':
        return this.text(this.length(), 'utf8');
      case 'a':
      case 'A':
        return this.text(this.length(), 'latin1');
      case 'z':
      case 'Z':
        return this.text(this.byte(), 'latin1');
      case '(':
      case '[':
      case '<':
      case '>':
        return this.items(this.length(), depth);
      case ')':
        return this.items(this.byte(), depth);
      case '{':
        while (this.object(depth) !== NULL) this.object(depth);
        return NULL;
      case 'r': {
        const at = this.int32();
        if (at < 0 || at >= this.refs.length) throw new Malformed();
        return this.refs[at];
      }
      case 'c':
        return this.code(depth);
      default:
        throw new Malformed();
    }
  }

  /** A code object: co_code, co_consts and co_names are kept; the fields after them are read to keep references numbered right. */
  private code(depth: number): Code {
    this.skip(4 * this.codeInts);
    const bytecode = this.object(depth);
    const consts = this.object(depth); // nested functions and classes are code objects in here
    const names = this.object(depth);
    // 3.11+: localsplusnames, localspluskinds, filename, name, qualname, firstlineno, linetable, exceptiontable
    // 3.8-3.10: varnames, freevars, cellvars, filename, name, firstlineno, lnotab
    for (let i = 0; i < 5; i++) this.object(depth);
    this.skip(4);
    for (let i = 0; i < (this.codeInts === 5 ? 2 : 1); i++) this.object(depth);
    return new Code(bytecode, consts, names);
  }

  private items(n: number, depth: number): unknown[] {
    if (n > this.buf.length - this.pos) throw new Malformed(); // every item takes a byte at least
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(this.object(depth));
    return out;
  }

  private byte(): number {
    if (this.pos >= this.buf.length) throw new Malformed();
    return this.buf[this.pos++]!;
  }

  private int32(): number {
    if (this.pos + 4 > this.buf.length) throw new Malformed();
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  private length(): number {
    const n = this.int32();
    if (n < 0) throw new Malformed();
    return n;
  }

  private skip(n: number): typeof NULL {
    if (n > this.buf.length - this.pos) throw new Malformed();
    this.pos += n;
    return NULL;
  }

  private bytes(n: number): Buffer {
    if (n > this.buf.length - this.pos) throw new Malformed();
    this.pos += n;
    return this.buf.subarray(this.pos - n, this.pos);
  }

  private text(n: number, encoding: BufferEncoding): string {
    if (n > this.buf.length - this.pos) throw new Malformed();
    const s = this.buf.toString(encoding, this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}
