// The command an image's containers run, fetched as soon as the mount is up. A runtime takes
// ~0.2 s to set a process up on a fresh mount (runc: namespaces, mounts, cgroups) while the link
// idles; then the program, its libraries and, for Python, each level of its imports are misses one
// after another. The image config says what its containers run unless told otherwise (Entrypoint +
// Cmd, PATH from Env, WorkingDir): this fetches that program whole and hands its first chunk to
// the library prefetch, tells the module prefetch what a Python interpreter will import (`-c`
// code, `-m` module, script), follows a shell's `-c` commands to their programs, and fetches
// every argument that names a small file of the image, as if just read (a script, a C source: the
// module and include prefetches follow them). Only a guess: a container started with another
// command costs some bytes fetched at read-ahead priority, never a wrong byte.
import { InFlight } from './in-flight.js';
import type { ImageFiles } from './library-prefetch.js';

/** The image's files as the command prefetch needs them. */
export interface CommandFiles<F> extends ImageFiles<F> {
  /** The path of the file itself (its symlinks followed: python3 → /usr/bin/python3.11). */
  pathOf(file: F): string;
}

/** What a container runs: argv in `workingDir` (absolute), with `env` (its PATH finds the program). */
export interface Command {
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  workingDir: string;
}

/** What the other prefetches are told. */
export interface CommandReaders<F> {
  /** The program's first chunk has come (its loader and libraries follow). */
  program(file: F, path: string, head: Buffer): void;
  /** A file the command names, as if read whole from offset 0 (`whole`: its bytes). */
  read(file: F, path: string, whole: Buffer): void;
  /** A Python interpreter at `path` will run `args` in `cwd`. */
  python(file: F, path: string, args: readonly string[], cwd: string): void;
}

/** A program larger than this (uncompressed) is fetched in part: its first chunk; the rest as it runs. */
const PROGRAM_MAX = 32 << 20;
/** An argument naming a file larger than this is left to its reader (`sha256sum /data/blob`). */
const ARGUMENT_MAX = 1 << 20;
/** Shells whose `-c` script is followed to its commands' programs (a level each, DEPTH levels). */
const SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'ksh', 'zsh']);
const DEPTH = 2;
/** Commands of one script followed. */
const MAX_COMMANDS = 16;
/** Words before a command's program: shell keywords and the wrappers that run the next word. */
const PREFIXES = new Set(['if', 'then', 'else', 'elif', 'do', 'while', 'until', '!', '{', 'exec', 'time', 'env', 'nohup', 'command']);

export class CommandPrefetch<F> {
  private readonly seen = new Set<F>();
  private readonly inFlight = new InFlight();

  constructor(
    private readonly files: CommandFiles<F>,
    private readonly readers: CommandReaders<F>,
    /** `commandFiles` counts the programs and argument files fetched. */
    private readonly counters: { commandFiles: number },
  ) {}

  /** Resolves once nothing it sent is on its way (tests). */
  idle(): Promise<void> {
    return this.inFlight.idle();
  }

  fetch(command: Command, depth = 0): void {
    const [name, ...args] = command.argv;
    if (name === undefined || name === '' || depth > DEPTH) return;
    const program = this.which(name, command);
    if (program === undefined) return;
    const path = this.files.pathOf(program);
    this.fetchProgram(program, path);
    const base = path.slice(path.lastIndexOf('/') + 1);
    if (/^python3(\.\d+)?$/.test(base)) this.readers.python(program, path, args, command.workingDir);
    const script = SHELLS.has(base) || SHELLS.has(name.slice(name.lastIndexOf('/') + 1)) ? shellScript(args) : undefined;
    if (script !== undefined) for (const argv of shellCommands(script)) this.fetch({ ...command, argv }, depth + 1);
    for (const arg of args) if (!arg.startsWith('-')) this.fetchArgument(arg, command.workingDir);
  }

  /** The program as a shell or execvp finds it: a path with a slash as it is (relative to the working directory), else along PATH. */
  private which(name: string, command: Command): F | undefined {
    if (name.includes('/')) return this.files.resolve(absolute(name, command.workingDir));
    for (const dir of (command.env.PATH ?? '').split(':')) {
      if (!dir.startsWith('/')) continue;
      const file = this.files.resolve(`${dir}/${name}`);
      if (file !== undefined) return file;
    }
    return undefined;
  }

  private fetchProgram(file: F, path: string): void {
    if (this.seen.has(file)) return;
    this.seen.add(file);
    this.counters.commandFiles++;
    const size = this.files.size(file);
    const head = this.files.firstChunkEnd(file);
    this.inFlight.track(this.files.bytes(file, 0, head).then((bytes) => this.readers.program(file, path, bytes)));
    if (size <= PROGRAM_MAX && head < size) this.inFlight.track(this.files.bytes(file, head, size));
  }

  private fetchArgument(arg: string, cwd: string): void {
    const path = absolute(arg, cwd);
    const file = this.files.resolve(path);
    if (file === undefined || this.seen.has(file) || this.files.size(file) > ARGUMENT_MAX) return;
    this.seen.add(file);
    this.counters.commandFiles++;
    const [whole] = this.files.many([{ file, from: 0, to: this.files.size(file) }]);
    this.inFlight.track(whole!.then((bytes) => this.readers.read(file, path, bytes)));
  }
}

function absolute(path: string, cwd: string): string {
  return path.startsWith('/') ? path : `${cwd.replace(/\/+$/, '')}/${path}`;
}

/** The script of `sh [options] -c SCRIPT`: the first operand after options that include c. */
function shellScript(args: readonly string[]): string | undefined {
  let c = false;
  for (const arg of args) {
    if (/^[-+][A-Za-z]+$/.test(arg)) {
      if (arg.startsWith('-') && arg.includes('c')) c = true;
      continue;
    }
    return c ? arg : undefined;
  }
  return undefined;
}

/**
 * The words of each simple command of `script`, from its program on: split at operators and
 * substitutions, quotes dropped, assignments and PREFIXES skipped; a program named through a
 * variable is left out. A guess at what a shell runs, not a parser.
 */
function shellCommands(script: string): string[][] {
  const commands: string[][] = [];
  for (const part of script.split(/&&|\|\||\$\(|[;&|()`\n]/)) {
    const words = part
      .trim()
      .split(/\s+/)
      .map((w) => w.replace(/^(['"])(.*)\1$/, '$2'))
      .filter((w) => w !== '');
    while (words.length > 0 && (PREFIXES.has(words[0]!) || /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0]!))) words.shift();
    if (words.length > 0 && !words[0]!.includes('$')) commands.push(words);
    if (commands.length >= MAX_COMMANDS) break;
  }
  return commands;
}
